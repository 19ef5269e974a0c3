use axum::extract::{Path, RawQuery, State};
use axum::Json;

use super::namespaces::path_namespace;
use super::{parse_id, PageParams};
use crate::auth::policy::{authorize, Action};
use crate::auth::ApiUser;
use crate::error::ApiResult;
use crate::store::{DeliveryDetail, DeliverySummary, Page};
use crate::AppState;

/// Resolves `{ns}/webhooks/{id}` and checks the webhook is in that namespace.
async fn webhook_id(state: &AppState, ns: &str, id: &str) -> ApiResult<i64> {
    let namespace = path_namespace(ns)?;
    let id = parse_id(id, "webhook")?;
    Ok(state.store.get_webhook(&namespace, id).await?.id)
}

pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<DeliverySummary>>> {
    authorize(&user, Action::ReadDeliveries)?;
    let page = PageParams::parse(query.as_deref())?;
    let webhook = webhook_id(&state, &ns, &id).await?;
    Ok(Json(
        state
            .store
            .list_deliveries(webhook, page.limit, page.cursor)
            .await?,
    ))
}

pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryDetail>> {
    authorize(&user, Action::ReadDeliveries)?;
    let webhook = webhook_id(&state, &ns, &id).await?;
    let delivery = parse_id(&delivery, "delivery")?;
    Ok(Json(state.store.get_delivery(webhook, delivery).await?))
}

/// Sends the delivery again now, with the webhook's current settings (even if it is
/// disabled), and answers with the delivery including the new attempt.
pub async fn retrigger(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryDetail>> {
    authorize(&user, Action::RetriggerDelivery)?;
    let webhook = webhook_id(&state, &ns, &id).await?;
    let delivery = parse_id(&delivery, "delivery")?;
    // Checks the delivery belongs to this webhook before sending anything.
    state.store.get_delivery(webhook, delivery).await?;
    state.dispatcher.retrigger(delivery).await?;
    tracing::info!(delivery, webhook, by = %user.username, "delivery retriggered");
    Ok(Json(state.store.get_delivery(webhook, delivery).await?))
}
