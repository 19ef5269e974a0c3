use axum::extract::{Path, RawQuery, State};
use axum::Json;

use super::access::namespace_access;
use super::{parse_id, PageParams};
use crate::auth::policy::NamespaceAction;
use crate::auth::ApiUser;
use crate::error::ApiResult;
use crate::hooks::types::NamespaceName;
use crate::store::{Audit, DeliveryDetail, DeliverySummary, Page, User};
use crate::AppState;

/// Resolves `{ns}/webhooks/{id}` through the policy and checks the webhook is in that
/// namespace.
async fn webhook_id(
    state: &AppState,
    user: &User,
    ns: &str,
    id: &str,
    action: NamespaceAction,
) -> ApiResult<(NamespaceName, i64)> {
    let access = namespace_access(state, user, ns, action).await?;
    let id = parse_id(id, "webhook")?;
    let hook = state.store.get_webhook(&access.namespace.name, id).await?;
    Ok((access.namespace.name, hook.id))
}

pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<DeliverySummary>>> {
    let page = PageParams::parse(query.as_deref())?;
    let (_, webhook) = webhook_id(&state, &user, &ns, &id, NamespaceAction::Read).await?;
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
    let (_, webhook) = webhook_id(&state, &user, &ns, &id, NamespaceAction::Read).await?;
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
    let (namespace, webhook) =
        webhook_id(&state, &user, &ns, &id, NamespaceAction::Retrigger).await?;
    let delivery = parse_id(&delivery, "delivery")?;
    // Checks the delivery belongs to this webhook before sending anything.
    state.store.get_delivery(webhook, delivery).await?;
    let audit = Audit::new(&user.username, "webhook.delivery.retrigger")
        .detail(format!("delivery {delivery}"));
    state
        .store
        .record_activity(&namespace, Some(webhook), &audit)
        .await?;
    state.dispatcher.retrigger(delivery).await?;
    tracing::info!(delivery, webhook, by = %user.username, "delivery retriggered");
    Ok(Json(state.store.get_delivery(webhook, delivery).await?))
}
