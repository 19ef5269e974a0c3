use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiJson, Items};
use crate::app;
use crate::app::access::parse_id;
use crate::app::access::{namespace_access, NamespaceAccess};
use crate::auth::policy::NamespaceAction;
use crate::auth::ApiUser;
use crate::domain::names::{ContentType, NamespaceName, RequestMethod, WebhookName, WebhookUrl};
use crate::domain::signature::SignatureScheme;
use crate::error::ApiResult;
use crate::error::ErrorBody;
use crate::hooks::input::WebhookInput;
use crate::secrets::Cipher;
use crate::store::{User, Webhook};
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
    /// Which events the webhook gets.
    pub filters: crate::domain::filters::Filters,
    pub format: crate::hooks::formats::Format,
    pub template: Option<String>,
    /// Whether the receiver's TLS certificate is verified.
    pub tls_verify: bool,
    /// Things an operator should know, e.g. that certificates are not verified.
    pub warnings: Vec<String>,
    /// Whether deliveries carry Standard Webhooks signatures.
    pub signed: bool,
    /// The signing secret (`whsec_...`): only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// Until when the previous secret still signs, during a rotation.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    /// At most this many deliveries per second, shared by every process on the database;
    /// `null`: no limit.
    pub rate_limit: Option<f64>,
    /// `none`, or `fifo`: one delivery at a time, in the order events arrived.
    pub ordering: crate::domain::control::DeliveryOrder,
    /// The circuit breaker (read-only): `closed`; `open` after `--circuit-failures` failed
    /// attempts in a row, while due deliveries wait; `half-open` once the cool-down is
    /// over and one probe goes.
    pub circuit: crate::domain::control::CircuitState,
    /// While the circuit is open: when the probe may go.
    pub circuit_probe_at: Option<DateTime<Utc>>,
    /// `v1` (HMAC-SHA256 with `signing_secret`) or `v1a` (ed25519).
    pub signature: SignatureScheme,
    /// A `v1a` webhook's ed25519 public key (`whpk_...`), what receivers verify with;
    /// `null` for `v1`.
    pub signature_public_key: Option<String>,
    /// The PEM certificate chain presented to receivers that ask for a client certificate.
    pub client_certificate: Option<String>,
    /// Whether the client certificate's private key is set: it is write-only.
    pub has_client_key: bool,
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
        let reveal = permissions.update;
        Self::build(w, &state.cipher, permissions, reveal)
    }

    /// As `herald webhook list --json` shows it to the operator, who may do anything, but
    /// without header values, which a terminal or a pipe into a log should not hold.
    pub fn for_operator(w: Webhook, cipher: &Cipher) -> ApiResult<Self> {
        let all = WebhookPermissions {
            update: true,
            delete: true,
        };
        Self::build(w, cipher, all, false)
    }

    /// `reveal_headers`: header values in the clear (for those who may update the webhook).
    fn build(
        w: Webhook,
        cipher: &Cipher,
        permissions: WebhookPermissions,
        reveal_headers: bool,
    ) -> ApiResult<Self> {
        let mut headers = BTreeMap::new();
        for h in &w.headers {
            let value = if reveal_headers {
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
        let signature_public_key = app::webhooks::signature_public_key(&w, cipher)?;
        let warnings = webhook_warnings(&w);
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
            signed: !w.signing_secrets.is_empty(),
            tls_verify: w.tls_verify,
            warnings,
            filters: w.filters,
            format: w.format,
            template: w.template,
            signing_secret: None,
            previous_secret_valid_until: w.previous_secret_until.filter(|t| *t > Utc::now()),
            rate_limit: w.rate_limit.map(|r| r.as_f64()),
            ordering: w.ordering,
            circuit: w.circuit.state_at(Utc::now().timestamp_millis()),
            circuit_probe_at: w
                .circuit
                .open_until
                .filter(|_| w.circuit.state == crate::domain::control::CircuitState::Open)
                .and_then(DateTime::from_timestamp_millis),
            signature: w.signature,
            signature_public_key,
            client_certificate: w.client_certificate,
            has_client_key: w.client_key.is_some(),
        })
    }
}

/// What is wrong with a saved webhook's settings that does not make them invalid.
pub fn webhook_warnings(w: &Webhook) -> Vec<String> {
    let mut warnings = Vec::new();
    if !w.tls_verify {
        warnings.push(
            "TLS certificates are not verified: anyone on the path can read and change these requests"
                .to_string(),
        );
    }
    if let Some(certificate) = &w.client_certificate {
        warnings.extend(crate::hooks::client_cert::validity_warning(
            certificate,
            std::time::SystemTime::now(),
        ));
    }
    warnings
}

/// Warns when the SSRF guard would refuse the webhook's destination as it resolves now
/// (loopback, private, ... outside `--delivery-allow-networks`), or when it does not resolve.
async fn ssrf_warnings(state: &AppState, hook: &Webhook) -> Vec<String> {
    let allow = state
        .config
        .delivery_allow_networks
        .clone()
        .unwrap_or_default();
    crate::delivery::ssrf::SsrfGuard::new(allow)
        .warnings_for(hook.url.as_str(), state.config.webhook_resolve_timeout)
        .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderBody {
    value: String,
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks", operation_id = "listWebhooks", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")),
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

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id")),
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

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks", operation_id = "createWebhook", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`")), request_body = WebhookInput,
    responses((status = 201, body = WebhookView), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<WebhookInput>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let new = body
        .into_new(&state.cipher)
        .map_err(app::webhooks::invalid_input);
    let (access, hook) = app::webhooks::create(&state, &user, &ns, new).await?;
    let mut view = WebhookView::new(hook.clone(), &state, &user, &access)?;
    view.signing_secret = app::webhooks::current_secret(&hook, &state)?;
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
    let patch = body
        .into_patch(&state.cipher)
        .map_err(app::webhooks::invalid_input);
    let (access, hook, secret) =
        app::webhooks::update_showing_secret(&state, &user, &ns, &id, patch).await?;
    let id = hook.id;
    tracing::info!(namespace = %access.namespace.name, webhook = id, enabled = hook.enabled, by = %user.username, "webhook updated");
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
    app::webhooks::delete(&state, &user, &ns, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}", operation_id = "setWebhookHeader", tag = "webhooks", security(("bearer" = [])), params(("ns" = String, Path, description = "Namespace; `_global` for repositories without a `/`"), ("id" = i64, Path, description = "Webhook id"), ("name" = String, Path, description = "Header name (case-insensitive)")), request_body = HeaderBody,
    responses((status = 201, description = "Added"), (status = 200, description = "Replaced"), (status = 401, description = "No or bad token", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_header(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id, name)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<HeaderBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let set = app::webhooks::set_header(&state, &user, &ns, &id, &name, &body.value).await?;
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
    app::webhooks::delete_header(&state, &user, &ns, &id, &name).await?;
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
    let (access, hook, secret) = app::webhooks::rotate_secret(&state, &user, &ns, &id).await?;
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
        app::webhooks::recover(&state, &user, &ns, &id, body.since, body.until).await?;
    Ok(Json(Recovered { requeued }))
}

/// Sends a synthetic `ping` event now, recorded as a delivery like any other.
#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/webhooks/{id}/ping", operation_id = "pingWebhook", tag = "deliveries", security(("bearer" = [])),
    params(("ns" = String, Path, description = "Namespace"), ("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, body = crate::store::DeliveryDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ping(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult<Json<crate::store::DeliveryDetail>> {
    let (_, _, delivery) = app::webhooks::ping(&state, &user, &ns, &id).await?;
    Ok(Json(delivery))
}
