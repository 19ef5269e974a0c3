use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiJson, ApiUser, Items};
use crate::app;
use crate::app::access::WebhookRef::Id;
use crate::app::webhook_view::{ssrf_warnings, WebhookView};
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::hooks::input::WebhookInput;
use crate::AppState;

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks", operation_id = "listWebhooks", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")),
    responses((status = 200, body = Items<WebhookView>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<Json<Items<WebhookView>>> {
    let (access, hooks) = app::webhooks::list(&state, &user, &ns).await?;
    let items = hooks
        .into_iter()
        .map(|w| WebhookView::new(w, &state, &user, &access))
        .collect::<app::Result<Vec<_>>>()?;
    Ok(Json(Items { items }))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookView>> {
    let (access, hook) =
        app::webhooks::load(&state, &user, &ns, Id(&id), app::access::READ).await?;
    Ok(Json(WebhookView::new(hook, &state, &user, &access)?))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks", operation_id = "createWebhook", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")), request_body = WebhookInput,
    responses((status = 201, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<WebhookInput>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let new = body.into_new(&state.cipher);
    let (access, hook) = app::webhooks::create(&state, &user, &ns, new).await?;
    let mut view = WebhookView::new(hook.clone(), &state, &user, &access)?;
    view.signing_secret = app::webhooks::current_secret(&hook, &state.cipher)?;
    view.warnings.extend(ssrf_warnings(&state, &hook).await);
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(patch, path = "/api/v1/namespaces/{ns}/webhooks/{id}", operation_id = "updateWebhook", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")), request_body = WebhookInput,
    responses((status = 200, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<WebhookInput>,
) -> ApiResult<Json<WebhookView>> {
    let patch = body.into_patch(&state.cipher);
    let (access, hook, secret) =
        app::webhooks::update_showing_secret(&state, &user, &ns, Id(&id), patch).await?;
    let warnings = ssrf_warnings(&state, &hook).await;
    let mut view = WebhookView::new(hook, &state, &user, &access)?;
    view.warnings.extend(warnings);
    // Switching to `v1` made a new shared secret: shown on this answer only.
    view.signing_secret = secret;
    Ok(Json(view))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app::webhooks::delete(&state, &user, &ns, Id(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderBody {
    value: String,
}

#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}", operation_id = "setWebhookHeader", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("name" = String, Path, description = "Header name (case-insensitive)")), request_body = HeaderBody,
    responses((status = 201, description = "Added"), (status = 200, description = "Replaced"), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_header(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, name)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<HeaderBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let set = app::webhooks::set_header(&state, &user, &ns, Id(&id), &name, &body.value).await?;
    let status = if set.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "name": set.name, "value": set.value.as_str() })),
    ))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}", operation_id = "deleteWebhookHeader", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("name" = String, Path, description = "Header name (case-insensitive)")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_header(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    app::webhooks::delete_header(&state, &user, &ns, Id(&id), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown once (for a `v1a` webhook a new ed25519 keypair, whose
/// public key the answer shows); the old one also signs for 24 hours. A second rotation
/// inside that overlap is refused (409): it would drop the original secret at once, while
/// receivers may still verify with it.
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks/{id}/rotate-secret", operation_id = "rotateWebhookSecret", tag = "webhooks", security(("bearer" = [])),
    params(("ns" = String, Path, description = "Namespace"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "The previous rotation's overlap has not ended", body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookView>> {
    let (access, hook, secret) = app::webhooks::rotate_secret(&state, &user, &ns, Id(&id)).await?;
    let mut view = WebhookView::new(hook, &state, &user, &access)?;
    view.signing_secret = secret;
    Ok(Json(view))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    /// RFC 3339 time: failed deliveries created at or after it are sent again.
    since: DateTime<Utc>,
    /// RFC 3339 time, default now: only deliveries created before it.
    until: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Recovered {
    requeued: u64,
}

/// Bulk recovery after an outage: re-queues the failed deliveries of a time window.
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks/{id}/recover", operation_id = "recoverWebhookDeliveries", tag = "deliveries", security(("bearer" = [])),
    params(("ns" = String, Path, description = "Namespace"), ("id" = i64, Path, description = "Webhook id")), request_body = RecoverBody,
    responses((status = 200, body = Recovered), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn recover(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> ApiResult<Json<Recovered>> {
    let (_, _, requeued) =
        app::webhooks::recover(&state, &user, &ns, Id(&id), body.since, body.until).await?;
    Ok(Json(Recovered { requeued }))
}

/// Sends a synthetic `ping` event now, recorded as a delivery like any other.
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks/{id}/ping", operation_id = "pingWebhook", tag = "deliveries", security(("bearer" = [])),
    params(("ns" = String, Path, description = "Namespace"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, body = crate::domain::delivery::DeliveryDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "A deploy format's webhook: a ping would start a deploy", body = ErrorBody)))]
pub async fn ping(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<crate::domain::delivery::DeliveryDetail>> {
    let (_, _, delivery, _) = app::webhooks::ping(&state, &user, &ns, Id(&id)).await?;
    Ok(Json(delivery))
}
