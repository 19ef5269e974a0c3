use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::access::{namespace_access, NamespaceAccess};
use super::{parse_id, ApiJson, Items};
use crate::auth::policy::NamespaceAction;
use crate::auth::ApiUser;
use crate::error::ErrorBody;
use crate::error::{ApiResult, AppError};
use crate::hooks::input::{audit_for_patch, WebhookInput};
use crate::hooks::types::{
    ContentType, HeaderName, HeaderValue, NamespaceName, RequestMethod, WebhookName, WebhookUrl,
};
use crate::secrets::Cipher;
use crate::store::{Audit, StoredHeader, User, Webhook};
use crate::AppState;

/// A webhook as the API shows it: the password is write-only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub namespace: NamespaceName,
    pub name: WebhookName,
    pub url: WebhookUrl,
    pub request_method: RequestMethod,
    pub content_type: ContentType,
    pub username: Option<String>,
    pub has_password: bool,
    /// Header values are shown only to those who may update the webhook (`null` otherwise).
    pub headers: BTreeMap<String, Option<String>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the caller may do with this webhook, so clients can show only usable controls.
    pub permissions: WebhookPermissions,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookPermissions {
    pub update: bool,
    pub delete: bool,
}

impl WebhookView {
    pub fn new(
        w: Webhook,
        state: &AppState,
        user: &User,
        access: &NamespaceAccess,
    ) -> ApiResult<Self> {
        let permissions = WebhookPermissions {
            update: access.allows(state, user, NamespaceAction::UpdateWebhook),
            delete: access.allows(state, user, NamespaceAction::DeleteWebhook),
        };
        Self::build(w, &state.cipher, permissions)
    }

    fn build(w: Webhook, cipher: &Cipher, permissions: WebhookPermissions) -> ApiResult<Self> {
        let mut headers = BTreeMap::new();
        for h in &w.headers {
            let value = if permissions.update {
                Some(
                    cipher
                        .open(&h.value)
                        .map_err(crate::store::StoreError::Crypto)?,
                )
            } else {
                None
            };
            headers.insert(h.name.as_str().to_string(), value);
        }
        Ok(Self {
            id: w.id,
            namespace: w.namespace,
            name: w.name,
            url: w.url,
            request_method: w.request_method,
            content_type: w.content_type,
            username: w.username,
            has_password: w.password.is_some(),
            headers,
            enabled: w.enabled,
            created_at: w.created_at,
            updated_at: w.updated_at,
            permissions,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderBody {
    value: String,
}

/// The API reports the first problem; the UI shows them all.
fn first(problems: Vec<crate::hooks::types::Invalid>) -> AppError {
    problems
        .into_iter()
        .next()
        .map(AppError::from)
        .unwrap_or_else(|| AppError::bad_request("invalid webhook"))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")),
    responses((status = 200, body = Items<WebhookView>), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<Json<Items<WebhookView>>> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::Read).await?;
    let hooks = state.store.list_webhooks(&access.namespace.name).await?;
    let items = hooks
        .into_iter()
        .map(|w| WebhookView::new(w, &state, &user, &access))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Items { items }))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookView>> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::Read).await?;
    let hook = state
        .store
        .get_webhook(&access.namespace.name, parse_id(&id, "webhook")?)
        .await?;
    Ok(Json(WebhookView::new(hook, &state, &user, &access)?))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")), request_body = WebhookInput,
    responses((status = 201, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<WebhookInput>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::CreateWebhook).await?;
    let new = body.into_new(&state.cipher).map_err(first)?;
    let audit = Audit::new(&user.username, "webhook.create");
    let hook = state
        .store
        .create_webhook(&access.namespace.name, new, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, by = %user.username, "webhook created");
    Ok((
        StatusCode::CREATED,
        Json(WebhookView::new(hook, &state, &user, &access)?),
    ))
}

#[utoipa::path(patch, path = "/api/v1/namespaces/{ns}/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")), request_body = WebhookInput,
    responses((status = 200, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<WebhookInput>,
) -> ApiResult<Json<WebhookView>> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::UpdateWebhook).await?;
    let id = parse_id(&id, "webhook")?;
    let patch = body.into_patch(&state.cipher).map_err(first)?;
    let audit = audit_for_patch(&user.username, &patch);
    let hook = state
        .store
        .update_webhook(&access.namespace.name, id, patch, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = id, enabled = hook.enabled, by = %user.username, "webhook updated");
    Ok(Json(WebhookView::new(hook, &state, &user, &access)?))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/webhooks/{id}", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::DeleteWebhook).await?;
    let id = parse_id(&id, "webhook")?;
    let audit = Audit::new(&user.username, "webhook.destroy");
    state
        .store
        .delete_webhook(&access.namespace.name, id, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = id, by = %user.username, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("name" = String, Path, description = "Header name (case-insensitive)")), request_body = HeaderBody,
    responses((status = 201, description = "Added"), (status = 200, description = "Replaced"), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_header(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, name)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<HeaderBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::ManageHeaders).await?;
    let id = parse_id(&id, "webhook")?;
    let header_name = HeaderName::parse(&name)?;
    let value = HeaderValue::parse(header_name.as_str(), &body.value)?;
    let audit = Audit::new(&user.username, "webhook.header.set").detail(header_name.as_str());
    let header = StoredHeader {
        name: header_name.clone(),
        value: state.cipher.seal(value.as_str()),
    };
    let created = state
        .store
        .set_header(&access.namespace.name, id, header, &audit)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "name": header_name, "value": value.as_str() })),
    ))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("name" = String, Path, description = "Header name (case-insensitive)")),
    responses((status = 204), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_header(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::ManageHeaders).await?;
    let id = parse_id(&id, "webhook")?;
    let audit = Audit::new(&user.username, "webhook.header.delete").detail(name.as_str());
    state
        .store
        .delete_header(&access.namespace.name, id, &name, &audit)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
