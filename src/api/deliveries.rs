use axum::extract::{Path, RawQuery, State};
use axum::Json;

use super::ApiUser;
use super::PageParams;
use crate::app;
use crate::app::access::WebhookRef::Id;
use crate::domain::delivery::{DeliveryDetail, DeliverySummary};
use crate::domain::model::Page;
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::AppState;

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries", operation_id = "listDeliveries", tag = "deliveries", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("limit" = Option<i64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<i64>, Query, description = "`next` of the previous page")),
    responses((status = 200, body = Page<DeliverySummary>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<DeliverySummary>>> {
    let page = PageParams::parse(query.as_deref())?;
    let (_, list) =
        app::deliveries::list(&state, &user, &ns, Id(&id), page.limit, page.cursor).await?;
    Ok(Json(list))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}", operation_id = "getDelivery", tag = "deliveries", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("delivery" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryDetail), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, delivery)): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryDetail>> {
    let (_, detail) = app::deliveries::show(&state, &user, &ns, Id(&id), &delivery).await?;
    Ok(Json(detail))
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
    let (_, _, detail, _) =
        app::deliveries::retrigger(&state, &user, &ns, Id(&id), &delivery).await?;
    Ok(Json(detail))
}
