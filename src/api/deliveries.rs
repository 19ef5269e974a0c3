use axum::extract::{Path, RawQuery, State};
use axum::Json;

use super::PageParams;
use crate::app;
use crate::app::access::namespace_access;
use crate::app::access::parse_id;
use crate::auth::policy::NamespaceAction;
use crate::auth::ApiUser;
use crate::domain::names::NamespaceName;
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::store::{DeliveryDetail, DeliverySummary, Page, User};
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

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries", operation_id = "listDeliveries", tag = "deliveries", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<i64>, Query, description = "`next` of the previous page")),
    responses((status = 200, body = Page<DeliverySummary>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
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

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}", operation_id = "getDelivery", tag = "deliveries", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("delivery" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryDetail), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
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
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}/retrigger", operation_id = "retriggerDelivery", tag = "deliveries", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("delivery" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryDetail), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retrigger(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryDetail>> {
    let (_, hook, detail) = app::deliveries::retrigger(&state, &user, &ns, &id, &delivery).await?;
    tracing::info!(delivery = detail.summary.id, webhook = hook.id, by = %user.username, "delivery retriggered");
    Ok(Json(detail))
}
