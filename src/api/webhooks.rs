use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::access::{namespace_access, NamespaceAccess};
use super::{double_option, parse_id, ApiJson};
use crate::auth::policy::NamespaceAction;
use crate::auth::ApiUser;
use crate::error::{ApiResult, AppError};
use crate::hooks::types::{
    ContentType, HeaderName, HeaderValue, Invalid, NamespaceName, RequestMethod, WebhookName,
    WebhookUrl,
};
use crate::secrets::Cipher;
use crate::store::{Audit, NewWebhook, StoredHeader, User, Webhook, WebhookPatch};
use crate::AppState;

/// A webhook as the API shows it: the password is write-only.
#[derive(Serialize)]
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

#[derive(Serialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    name: Option<String>,
    url: Option<String>,
    request_method: Option<String>,
    content_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    name: Option<String>,
    url: Option<String>,
    request_method: Option<String>,
    content_type: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    username: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    password: Option<Option<String>>,
    headers: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderBody {
    value: String,
}

/// Basic auth user-ids cannot hold ':'; an empty one means "none".
fn parse_username(s: &str) -> Result<Option<String>, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.contains(':') || s.chars().any(char::is_control) || s.len() > 255 {
        return Err(Invalid::new(
            "username",
            "a username has at most 255 characters, without ':' or control characters",
        ));
    }
    Ok(Some(s.to_string()))
}

fn parse_password(s: &str, cipher: &Cipher) -> Result<Option<crate::secrets::Sealed>, Invalid> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 1024 || s.chars().any(char::is_control) {
        return Err(Invalid::new(
            "password",
            "a password has at most 1024 bytes, without control characters",
        ));
    }
    Ok(Some(cipher.seal(s)))
}

fn parse_headers(
    map: &BTreeMap<String, String>,
    cipher: &Cipher,
) -> Result<Vec<StoredHeader>, Invalid> {
    let mut out: Vec<StoredHeader> = Vec::with_capacity(map.len());
    for (name, value) in map {
        let name = HeaderName::parse(name)?;
        let value = HeaderValue::parse(name.as_str(), value)?;
        if out.iter().any(|h| h.name.eq_ignore_case(name.as_str())) {
            return Err(Invalid::new(
                "headers",
                format!(
                    "the header '{}' is given twice (names are case-insensitive)",
                    name.as_str()
                ),
            ));
        }
        out.push(StoredHeader {
            name,
            value: cipher.seal(value.as_str()),
        });
    }
    Ok(out)
}

pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::Read).await?;
    let hooks = state.store.list_webhooks(&access.namespace.name).await?;
    let items = hooks
        .into_iter()
        .map(|w| WebhookView::new(w, &state, &user, &access))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(serde_json::json!({ "items": items })))
}

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

pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(ns): Path<String>,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::CreateWebhook).await?;
    if body.enabled == Some(true) {
        return Err(AppError::invalid(
            "enabled",
            "new webhooks start disabled; enable it with PATCH {\"enabled\": true} once it is set up",
        ));
    }
    let new = NewWebhook {
        name: WebhookName::parse(body.name.as_deref().unwrap_or(""))?,
        url: WebhookUrl::parse(body.url.as_deref().unwrap_or(""))?,
        request_method: match &body.request_method {
            Some(m) => RequestMethod::parse(m)?,
            None => RequestMethod::default(),
        },
        content_type: match &body.content_type {
            Some(c) => ContentType::parse(c)?,
            None => ContentType::default(),
        },
        username: parse_username(body.username.as_deref().unwrap_or(""))?,
        password: parse_password(body.password.as_deref().unwrap_or(""), &state.cipher)?,
        headers: parse_headers(&body.headers.unwrap_or_default(), &state.cipher)?,
    };
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

pub async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path((ns, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> ApiResult<Json<WebhookView>> {
    let access = namespace_access(&state, &user, &ns, NamespaceAction::UpdateWebhook).await?;
    let id = parse_id(&id, "webhook")?;
    let patch = WebhookPatch {
        name: body.name.as_deref().map(WebhookName::parse).transpose()?,
        url: body.url.as_deref().map(WebhookUrl::parse).transpose()?,
        request_method: body
            .request_method
            .as_deref()
            .map(RequestMethod::parse)
            .transpose()?,
        content_type: body
            .content_type
            .as_deref()
            .map(ContentType::parse)
            .transpose()?,
        username: match &body.username {
            None => None,
            Some(u) => Some(parse_username(u.as_deref().unwrap_or(""))?),
        },
        password: match &body.password {
            None => None,
            Some(p) => Some(parse_password(p.as_deref().unwrap_or(""), &state.cipher)?),
        },
        headers: body
            .headers
            .as_ref()
            .map(|h| parse_headers(h, &state.cipher))
            .transpose()?,
        enabled: body.enabled,
    };
    let audit = update_audit(&user, &patch);
    let hook = state
        .store
        .update_webhook(&access.namespace.name, id, patch, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = id, enabled = hook.enabled, by = %user.username, "webhook updated");
    Ok(Json(WebhookView::new(hook, &state, &user, &access)?))
}

/// One entry per request: a pure switch is `webhook.enabled`/`webhook.disabled`, anything
/// else `webhook.update` naming the fields changed.
fn update_audit(user: &User, patch: &WebhookPatch) -> Audit {
    let mut changed = Vec::new();
    let fields = [
        ("name", patch.name.is_some()),
        ("url", patch.url.is_some()),
        ("request_method", patch.request_method.is_some()),
        ("content_type", patch.content_type.is_some()),
        ("username", patch.username.is_some()),
        ("password", patch.password.is_some()),
        ("headers", patch.headers.is_some()),
        ("enabled", patch.enabled.is_some()),
    ];
    for (field, set) in fields {
        if set {
            changed.push(field);
        }
    }
    match (changed.as_slice(), patch.enabled) {
        (["enabled"], Some(true)) => Audit::new(&user.username, "webhook.enabled"),
        (["enabled"], Some(false)) => Audit::new(&user.username, "webhook.disabled"),
        _ => Audit::new(&user.username, "webhook.update")
            .detail(format!("changed: {}", changed.join(", "))),
    }
}

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
