//! The UI's pages and form actions. Each checks the same policy as the REST API before it
//! shows a control or acts on a form.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use minijinja::{context, Value};
use serde::Deserialize;

use super::{chart, redirect_with, render, WebResult, WebUser};
use crate::api::access::{namespace_access, team_access, team_for_new_namespace, NamespaceAccess};
use crate::auth;
use crate::auth::policy::{self, GlobalAction, NamespaceAction, TeamAction};
use crate::error::AppError;
use crate::hooks::input::{
    audit_for_patch, check_new_template, check_patch, parse_added_header, WebhookInput,
};
use crate::hooks::types::{Invalid, NamespaceName};
use crate::store::{Audit, Role, StoredHeader, Visibility, Webhook, WebhookPatch};
use crate::AppState;

const DELIVERIES_PER_PAGE: i64 = 20;

fn page(web: &WebUser, template: &str, status: StatusCode, ctx: Value) -> Response {
    let full = context! {
        me => web.user,
        csrf => web.csrf,
        flash => web.flash,
        ..ctx
    };
    render(template, status, full, web.flash.is_some())
}

fn id_of(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::not_found(format!("{what} '{raw}' not found")))
}

fn errors_map(problems: &[Invalid]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for p in problems {
        map.entry(p.field.clone())
            .or_insert_with(|| p.message.clone());
    }
    map
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct CursorQuery {
    cursor: Option<i64>,
}

// ---------------------------------------------------------------- dashboard and namespaces

pub async fn dashboard(State(state): State<AppState>, web: WebUser) -> WebResult {
    dashboard_page(
        &state,
        &web,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

async fn dashboard_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let visibility = policy::visibility(&web.user);
    let namespaces = state.store.list_namespaces(&visibility).await?;
    let activities = state
        .store
        .list_activities(&visibility, None, 10, None)
        .await?;
    // Teams the user may create namespaces for.
    let teams: Vec<String> = state
        .store
        .list_teams(&visibility)
        .await?
        .into_iter()
        .filter(|t| {
            web.user.admin
                || t.members
                    .iter()
                    .any(|m| m.username == web.user.username && m.role == Role::Owner)
        })
        .map(|t| t.name)
        .collect();
    Ok(page(
        web,
        "dashboard.html",
        status,
        context! { namespaces, activities => activities.items, teams, errors, values },
    ))
}

#[derive(Deserialize)]
pub struct NamespaceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    description: String,
}

pub async fn create_namespace(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<NamespaceForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let values = BTreeMap::from([
        ("name".to_string(), form.name.clone()),
        ("team".to_string(), form.team.clone()),
        ("description".to_string(), form.description.clone()),
    ]);
    let fail = |field: &str, message: String| (field.to_string(), message);
    let outcome: Result<NamespaceName, (String, String)> = async {
        let team_id = team_for_new_namespace(&state, &web.user, Some(form.team.as_str()))
            .await
            .map_err(|e| fail("team", e.message))?;
        let name = NamespaceName::parse(form.name.trim()).map_err(|e| fail("name", e.message))?;
        let audit = Audit::new(&web.user.username, "namespace.create");
        state
            .store
            .create_namespace(&name, form.description.trim(), team_id, &audit)
            .await
            .map_err(|e| fail("name", AppError::from(e).message))?;
        tracing::info!(namespace = %name, by = %web.user.username, "namespace created");
        Ok(name)
    }
    .await;
    match outcome {
        Ok(name) => Ok(redirect_with(
            &format!("/namespaces/{name}"),
            "success",
            &format!("Namespace '{name}' created"),
        )),
        Err((field, message)) => {
            dashboard_page(
                &state,
                &web,
                StatusCode::UNPROCESSABLE_ENTITY,
                BTreeMap::from([(field, message)]),
                values,
            )
            .await
        }
    }
}

pub async fn namespace(
    State(state): State<AppState>,
    web: WebUser,
    Path(ns): Path<String>,
) -> WebResult {
    namespace_page(
        &state,
        &web,
        &ns,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

async fn namespace_page(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let access = namespace_access(state, &web.user, ns, NamespaceAction::Read).await?;
    let webhooks = state.store.list_webhooks(&access.namespace.name).await?;
    let can = |a| access.allows(state, &web.user, a);
    let webhooks: Vec<Value> = webhooks.iter().map(webhook_row).collect();
    Ok(page(
        web,
        "namespace.html",
        status,
        context! {
            namespace => access.namespace,
            webhooks,
            can_create => can(NamespaceAction::CreateWebhook),
            can_update => can(NamespaceAction::UpdateWebhook),
            can_delete => can(NamespaceAction::DeleteWebhook),
            can_delete_namespace => can(NamespaceAction::DeleteNamespace) && !access.namespace.name.is_global(),
            errors,
            values,
        },
    ))
}

fn webhook_row(w: &Webhook) -> Value {
    context! {
        id => w.id,
        name => w.name,
        url => w.url,
        filters => w.filters,
        format => w.format,
        template => w.template,
        tls_verify => w.tls_verify,
        request_method => w.request_method,
        content_type => w.content_type,
        username => w.username,
        has_password => w.password.is_some(),
        enabled => w.enabled,
        created_at => w.created_at,
        updated_at => w.updated_at,
    }
}

pub async fn delete_namespace(
    State(state): State<AppState>,
    web: WebUser,
    Path(ns): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let access = namespace_access(&state, &web.user, &ns, NamespaceAction::DeleteNamespace).await?;
    let audit = Audit::new(&web.user.username, "namespace.destroy");
    state
        .store
        .delete_namespace(&access.namespace.name, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, by = %web.user.username, "namespace deleted");
    Ok(redirect_with(
        "/",
        "success",
        &format!("Namespace '{}' deleted", access.namespace.name),
    ))
}

// ---------------------------------------------------------------- webhooks

#[derive(Deserialize, Default)]
pub struct WebhookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    request_method: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    clear_password: Option<String>,
    #[serde(default)]
    format: String,
    #[serde(default)]
    template: String,
    /// Present when the form carries the filter fields (the edit form does).
    #[serde(default)]
    filters_present: Option<String>,
    #[serde(default)]
    action_push: Option<String>,
    #[serde(default)]
    action_delete: Option<String>,
    #[serde(default)]
    action_pull: Option<String>,
    #[serde(default)]
    action_mount: Option<String>,
    #[serde(default)]
    repositories: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    media: String,
    #[serde(default)]
    include_head_requests: Option<String>,
    #[serde(default)]
    match_untagged: Option<String>,
    #[serde(default)]
    skip_tls_verify: Option<String>,
}

impl WebhookForm {
    fn values(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("name".to_string(), self.name.clone()),
            ("url".to_string(), self.url.clone()),
            ("request_method".to_string(), self.request_method.clone()),
            ("content_type".to_string(), self.content_type.clone()),
            ("username".to_string(), self.username.clone()),
            ("format".to_string(), self.format.clone()),
            ("template".to_string(), self.template.clone()),
            ("repositories".to_string(), self.repositories.clone()),
            ("tags".to_string(), self.tags.clone()),
        ])
    }

    /// The filters of the edit form; `None` when the form has no filter fields.
    fn filters(&self) -> Option<crate::hooks::filters::Filters> {
        use crate::hooks::filters::{Filters, Media};
        use crate::registry::envelope::Action;
        self.filters_present.as_ref()?;
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut actions = Vec::new();
        for (on, action) in [
            (&self.action_push, Action::Push),
            (&self.action_delete, Action::Delete),
            (&self.action_pull, Action::Pull),
            (&self.action_mount, Action::Mount),
        ] {
            if on.is_some() {
                actions.push(action);
            }
        }
        Some(Filters {
            actions,
            repositories: list(&self.repositories),
            tags: list(&self.tags),
            media: if self.media == "all" {
                Media::All
            } else {
                Media::Manifests
            },
            include_head_requests: self.include_head_requests.is_some(),
            match_untagged: self.match_untagged.is_some(),
        })
    }
}

pub async fn create_webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path(ns): Path<String>,
    Form(form): Form<WebhookForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let access = namespace_access(&state, &web.user, &ns, NamespaceAction::CreateWebhook).await?;
    let values = form.values();
    let filters = form.filters();
    let input = WebhookInput {
        name: Some(form.name),
        url: Some(form.url),
        request_method: Some(form.request_method).filter(|m| !m.is_empty()),
        content_type: Some(form.content_type).filter(|c| !c.is_empty()),
        username: Some(Some(form.username)),
        password: Some(Some(form.password)),
        headers: None,
        enabled: None,
        filters,
        format: Some(form.format.clone()).filter(|f| !f.is_empty()),
        template: Some(Some(form.template.clone())),
        tls_verify: None,
    };
    let checked = match input.into_new(&state.cipher) {
        Ok(new) => check_new_template(&new, &state.templates)
            .await
            .map(|_| new)
            .map_err(|e| vec![e]),
        Err(problems) => Err(problems),
    };
    let new = match checked {
        Ok(new) => new,
        Err(problems) => {
            return namespace_page(
                &state,
                &web,
                &ns,
                StatusCode::UNPROCESSABLE_ENTITY,
                errors_map(&problems),
                values,
            )
            .await;
        }
    };
    let name = new.name.as_str().to_string();
    let audit = Audit::new(&web.user.username, "webhook.create");
    match state
        .store
        .create_webhook(&access.namespace.name, new, &audit)
        .await
    {
        Ok(hook) => {
            tracing::info!(namespace = %access.namespace.name, webhook = hook.id, by = %web.user.username, "webhook created");
            Ok(redirect_with(
                &format!("/namespaces/{ns}/webhooks/{}", hook.id),
                "success",
                &format!("Webhook '{name}' created; it is disabled until you enable it"),
            ))
        }
        Err(e) => {
            let e = AppError::from(e);
            if e.status == StatusCode::CONFLICT {
                let errors = BTreeMap::from([("name".to_string(), e.message)]);
                namespace_page(&state, &web, &ns, StatusCode::CONFLICT, errors, values).await
            } else {
                Err(e.into())
            }
        }
    }
}

/// A webhook and the caller's standing, or the policy's 404/403.
async fn load_webhook(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    id: &str,
    action: NamespaceAction,
) -> Result<(NamespaceAccess, Webhook), AppError> {
    let access = namespace_access(state, &web.user, ns, action).await?;
    let hook = state
        .store
        .get_webhook(&access.namespace.name, id_of(id, "webhook")?)
        .await?;
    Ok((access, hook))
}

pub async fn webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Query(q): Query<CursorQuery>,
) -> WebResult {
    webhook_page(
        &state,
        &web,
        &ns,
        &id,
        q.cursor,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn webhook_page(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    id: &str,
    cursor: Option<i64>,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let (access, hook) = load_webhook(state, web, ns, id, NamespaceAction::Read).await?;
    let can = |a| access.allows(state, &web.user, a);
    let can_update = can(NamespaceAction::UpdateWebhook);
    let mut headers = Vec::new();
    for h in &hook.headers {
        // Values only for those who may change the webhook.
        let value = if can_update {
            Some(
                state
                    .cipher
                    .open(&h.value)
                    .map_err(crate::store::StoreError::Crypto)?,
            )
        } else {
            None
        };
        headers.push(context! { name => h.name, value });
    }
    let deliveries = state
        .store
        .list_deliveries(hook.id, DELIVERIES_PER_PAGE, cursor)
        .await?;
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let stats = state.store.delivery_stats(hook.id, since).await?;
    let chart = chart::render_svg(&stats, since);
    Ok(page(
        web,
        "webhook.html",
        status,
        context! {
            namespace => access.namespace,
            webhook => webhook_row(&hook),
            headers,
            deliveries => deliveries.items,
            next_cursor => deliveries.next,
            chart,
            can_update,
            can_delete => can(NamespaceAction::DeleteWebhook),
            can_headers => can(NamespaceAction::ManageHeaders),
            can_retrigger => can(NamespaceAction::Retrigger),
            errors,
            values,
        },
    ))
}

pub async fn edit_webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<WebhookForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (access, hook) =
        load_webhook(&state, &web, &ns, &id, NamespaceAction::UpdateWebhook).await?;
    let values = form.values();
    let filters = form.filters();
    let password = if form.clear_password.is_some() {
        Some(None)
    } else if form.password.is_empty() {
        None // blank keeps the current password
    } else {
        Some(Some(form.password))
    };
    let input = WebhookInput {
        name: Some(form.name),
        url: Some(form.url),
        request_method: Some(form.request_method),
        content_type: Some(form.content_type),
        username: Some(Some(form.username)),
        password,
        headers: None,
        enabled: None,
        filters,
        format: Some(form.format).filter(|f| !f.is_empty()),
        template: Some(Some(form.template)),
        tls_verify: form
            .filters_present
            .as_ref()
            .map(|_| form.skip_tls_verify.is_none()),
    };
    let checked = match input.into_patch(&state.cipher) {
        Ok(mut p) => check_patch(&mut p, &hook, &state.templates)
            .await
            .map(|_| p)
            .map_err(|e| vec![e]),
        Err(problems) => Err(problems),
    };
    let patch = match checked {
        Ok(p) => p,
        Err(problems) => {
            return webhook_page(
                &state,
                &web,
                &ns,
                &id,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                errors_map(&problems),
                values,
            )
            .await;
        }
    };
    let audit = audit_for_patch(&web.user.username, &patch);
    match state
        .store
        .update_webhook(&access.namespace.name, hook.id, patch, &audit)
        .await
    {
        Ok(updated) => {
            tracing::info!(namespace = %access.namespace.name, webhook = updated.id, enabled = updated.enabled, by = %web.user.username, "webhook updated");
            Ok(redirect_with(
                &format!("/namespaces/{ns}/webhooks/{id}"),
                "success",
                &format!("Webhook '{}' saved", updated.name.as_str()),
            ))
        }
        Err(e) => {
            let e = AppError::from(e);
            let errors = BTreeMap::from([("name".to_string(), e.message.clone())]);
            if e.status == StatusCode::CONFLICT {
                webhook_page(
                    &state,
                    &web,
                    &ns,
                    &id,
                    None,
                    StatusCode::CONFLICT,
                    errors,
                    values,
                )
                .await
            } else {
                Err(e.into())
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ToggleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    enabled: String,
    /// Where to go back to: the namespace list or the webhook page.
    #[serde(default)]
    back: String,
}

pub async fn toggle_webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<ToggleForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (access, hook) =
        load_webhook(&state, &web, &ns, &id, NamespaceAction::UpdateWebhook).await?;
    let enabled = form.enabled == "true";
    let patch = WebhookPatch {
        enabled: Some(enabled),
        ..Default::default()
    };
    let audit = audit_for_patch(&web.user.username, &patch);
    state
        .store
        .update_webhook(&access.namespace.name, hook.id, patch, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, enabled, by = %web.user.username, "webhook updated");
    let back = if form.back == "namespace" {
        format!("/namespaces/{ns}")
    } else {
        format!("/namespaces/{ns}/webhooks/{id}")
    };
    let word = if enabled { "enabled" } else { "disabled" };
    Ok(redirect_with(
        &back,
        "success",
        &format!("Webhook '{}' is now {word}", hook.name.as_str()),
    ))
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (access, hook) =
        load_webhook(&state, &web, &ns, &id, NamespaceAction::DeleteWebhook).await?;
    let audit = Audit::new(&web.user.username, "webhook.destroy");
    state
        .store
        .delete_webhook(&access.namespace.name, hook.id, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, by = %web.user.username, "webhook deleted");
    Ok(redirect_with(
        &format!("/namespaces/{ns}"),
        "success",
        &format!("Webhook '{}' deleted", hook.name.as_str()),
    ))
}

#[derive(Deserialize)]
pub struct HeaderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    header_name: String,
    #[serde(default)]
    header_value: String,
}

pub async fn set_header(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<HeaderForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (access, hook) =
        load_webhook(&state, &web, &ns, &id, NamespaceAction::ManageHeaders).await?;
    let parsed = parse_added_header(&hook.headers, &form.header_name, &form.header_value);
    let (name, value) = match parsed {
        Ok(pair) => pair,
        Err(e) => {
            let field = if e.message.contains("value") {
                "header_value"
            } else {
                "header_name"
            };
            let errors = BTreeMap::from([(field.to_string(), e.message)]);
            let values = BTreeMap::from([
                ("header_name".to_string(), form.header_name),
                ("header_value".to_string(), form.header_value),
            ]);
            return webhook_page(
                &state,
                &web,
                &ns,
                &id,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                errors,
                values,
            )
            .await;
        }
    };
    let audit = Audit::new(&web.user.username, "webhook.header.set").detail(name.as_str());
    let header = StoredHeader {
        name: name.clone(),
        value: state.cipher.seal(value.as_str()),
    };
    state
        .store
        .set_header(&access.namespace.name, hook.id, header, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, header = %name.as_str(), by = %web.user.username, "webhook header set");
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}"),
        "success",
        &format!(
            "Header '{}' of webhook '{}' set",
            name.as_str(),
            hook.name.as_str()
        ),
    ))
}

pub async fn delete_header(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id, name)): Path<(String, String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (access, hook) =
        load_webhook(&state, &web, &ns, &id, NamespaceAction::ManageHeaders).await?;
    let audit = Audit::new(&web.user.username, "webhook.header.delete").detail(name.as_str());
    state
        .store
        .delete_header(&access.namespace.name, hook.id, &name, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, header = %name.as_str(), by = %web.user.username, "webhook header deleted");
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}"),
        "success",
        &format!(
            "Header '{name}' removed from webhook '{}'",
            hook.name.as_str()
        ),
    ))
}

// ---------------------------------------------------------------- deliveries

/// JSON bodies are shown indented; anything else as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

pub async fn delivery(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id, d)): Path<(String, String, String)>,
) -> WebResult {
    let (access, hook) = load_webhook(&state, &web, &ns, &id, NamespaceAction::Read).await?;
    let detail = state
        .store
        .get_delivery(hook.id, id_of(&d, "delivery")?)
        .await?;
    let request_body = detail.request.as_ref().map(|r| pretty(&r.body));
    let attempts: Vec<Value> = detail
        .attempts
        .iter()
        .rev()
        .map(|a| context! { attempt => a, body => pretty(&a.response_body) })
        .collect();
    Ok(page(
        &web,
        "delivery.html",
        StatusCode::OK,
        context! {
            namespace => access.namespace,
            webhook => webhook_row(&hook),
            delivery => detail.summary,
            request => detail.request,
            request_body,
            attempts,
            can_retrigger => access.allows(&state, &web.user, NamespaceAction::Retrigger),
        },
    ))
}

pub async fn retrigger(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id, d)): Path<(String, String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (access, hook) = load_webhook(&state, &web, &ns, &id, NamespaceAction::Retrigger).await?;
    let delivery = id_of(&d, "delivery")?;
    state.store.get_delivery(hook.id, delivery).await?;
    let audit = Audit::new(&web.user.username, "webhook.delivery.retrigger")
        .detail(format!("delivery {delivery}"));
    state
        .store
        .record_activity(&access.namespace.name, Some(hook.id), &audit)
        .await?;
    state.dispatcher.retrigger(delivery).await?;
    tracing::info!(delivery, webhook = hook.id, by = %web.user.username, "delivery retriggered");
    let after = state.store.get_delivery(hook.id, delivery).await?;
    let outcome = match (after.summary.last_status, &after.summary.last_error) {
        (Some(status), _) => format!("answered {status}"),
        (None, Some(e)) => format!("failed: {e}"),
        _ => "sent".to_string(),
    };
    let kind = if after.summary.state == crate::store::DeliveryState::Succeeded {
        "success"
    } else {
        "error"
    };
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}"),
        kind,
        &format!(
            "Delivery {delivery} of webhook '{}' retriggered: {outcome}",
            hook.name.as_str()
        ),
    ))
}

// ---------------------------------------------------------------- teams

pub async fn teams(State(state): State<AppState>, web: WebUser) -> WebResult {
    teams_page(
        &state,
        &web,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

async fn teams_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let teams = state
        .store
        .list_teams(&policy::visibility(&web.user))
        .await?;
    Ok(page(
        web,
        "teams.html",
        status,
        context! { teams, errors, values },
    ))
}

#[derive(Deserialize)]
pub struct TeamForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn create_team(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<TeamForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    policy::check_global(&web.user, GlobalAction::CreateTeam)?;
    let name = form.name.trim().to_string();
    let values = BTreeMap::from([
        ("name".to_string(), name.clone()),
        ("description".to_string(), form.description.clone()),
    ]);
    if name.len() > 100 || !crate::hooks::types::is_path_component(&name) {
        let errors = BTreeMap::from([(
            "name".to_string(),
            format!("'{name}' is not a valid team name: use lowercase letters and digits, separated by '.', '_', '__' or '-'"),
        )]);
        return teams_page(
            &state,
            &web,
            StatusCode::UNPROCESSABLE_ENTITY,
            errors,
            values,
        )
        .await;
    }
    let audit = Audit::new(&web.user.username, "team.create");
    match state
        .store
        .create_team(&name, form.description.trim(), web.user.id, &audit)
        .await
    {
        Ok(_) => {
            tracing::info!(team = %name, by = %web.user.username, "team created");
            Ok(redirect_with(
                &format!("/teams/{name}"),
                "success",
                &format!("Team '{name}' created; you are its owner"),
            ))
        }
        Err(e) => {
            let errors = BTreeMap::from([("name".to_string(), AppError::from(e).message)]);
            teams_page(&state, &web, StatusCode::CONFLICT, errors, values).await
        }
    }
}

pub async fn team(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
) -> WebResult {
    let (team, role) = team_access(&state, &web.user, &name, TeamAction::Read).await?;
    let can_manage = !team.personal && (web.user.admin || role == Some(Role::Owner));
    let namespaces: Vec<_> = state
        .store
        .list_namespaces(&Visibility::All)
        .await?
        .into_iter()
        .filter(|n| n.team_id == Some(team.id))
        .collect();
    Ok(page(
        &web,
        "team.html",
        StatusCode::OK,
        context! { team, namespaces, can_manage },
    ))
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
}

pub async fn set_member(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<MemberForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (team, _) = team_access(&state, &web.user, &name, TeamAction::ManageMembers).await?;
    let back = format!("/teams/{name}");
    if team.personal {
        return Ok(redirect_with(
            &back,
            "error",
            "A personal team has exactly one member, its user",
        ));
    }
    let Some(role) = Role::parse(&form.role) else {
        return Ok(redirect_with(
            &back,
            "error",
            "Choose a role: owner, contributor or viewer",
        ));
    };
    let username = form.username.trim();
    let Some((user, _)) = state.store.user_credentials(username).await? else {
        return Ok(redirect_with(
            &back,
            "error",
            &format!("There is no user '{username}'"),
        ));
    };
    let audit = Audit::new(&web.user.username, "team.member.set")
        .detail(format!("{username}: {}", role.as_str()));
    match state.store.set_member(&name, user.id, role, &audit).await {
        Ok(_) => {
            tracing::info!(team = %name, member = %username, role = role.as_str(), by = %web.user.username, "team member set");
            Ok(redirect_with(
                &back,
                "success",
                &format!("{username} is now {} of team '{name}'", role.as_str()),
            ))
        }
        Err(e) => Ok(redirect_with(&back, "error", &AppError::from(e).message)),
    }
}

pub async fn remove_member(
    State(state): State<AppState>,
    web: WebUser,
    Path((name, user)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (team, _) = team_access(&state, &web.user, &name, TeamAction::ManageMembers).await?;
    let back = format!("/teams/{name}");
    if team.personal {
        return Ok(redirect_with(
            &back,
            "error",
            "A personal team has exactly one member, its user",
        ));
    }
    let Some((target, _)) = state.store.user_credentials(&user).await? else {
        return Ok(redirect_with(
            &back,
            "error",
            &format!("There is no user '{user}'"),
        ));
    };
    let audit = Audit::new(&web.user.username, "team.member.remove").detail(user.clone());
    match state.store.remove_member(&name, target.id, &audit).await {
        Ok(()) => {
            tracing::info!(team = %name, member = %user, by = %web.user.username, "team member removed");
            Ok(redirect_with(
                &back,
                "success",
                &format!("{user} removed from team '{name}'"),
            ))
        }
        Err(e) => Ok(redirect_with(&back, "error", &AppError::from(e).message)),
    }
}

// ---------------------------------------------------------------- users and tokens

pub async fn users(State(state): State<AppState>, web: WebUser) -> WebResult {
    users_page(
        &state,
        &web,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

async fn users_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    policy::check_global(&web.user, GlobalAction::ManageUsers)?;
    let users = state.store.list_users().await?;
    Ok(page(
        web,
        "users.html",
        status,
        context! { users, errors, values },
    ))
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    admin: Option<String>,
}

pub async fn create_user(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<UserForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    policy::check_global(&web.user, GlobalAction::ManageUsers)?;
    let values = BTreeMap::from([
        ("username".to_string(), form.username.clone()),
        ("email".to_string(), form.email.clone()),
    ]);
    let email = Some(form.email.as_str());
    match auth::register_user(
        state.store.as_ref(),
        &state.password_gate,
        &form.username,
        form.password,
        email,
        form.admin.is_some(),
    )
    .await
    {
        Ok(user) => Ok(redirect_with(
            "/users",
            "success",
            &format!("User '{}' created", user.username),
        )),
        // A field problem (422) or a taken name (409) goes next to its field.
        Err(e) if e.status.is_client_error() => {
            let field = e.field.clone().unwrap_or_else(|| "username".to_string());
            let errors = BTreeMap::from([(field, e.message)]);
            users_page(&state, &web, e.status, errors, values).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct UserFlagsForm {
    #[serde(default)]
    csrf: String,
    admin: Option<String>,
    disabled: Option<String>,
}

pub async fn update_user(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<UserFlagsForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    policy::check_global(&web.user, GlobalAction::ManageUsers)?;
    let admin = form.admin.map(|v| v == "true");
    let disabled = form.disabled.map(|v| v == "true");
    if name == web.user.username && (admin == Some(false) || disabled == Some(true)) {
        return Ok(redirect_with(
            "/users",
            "error",
            "Admins cannot demote or disable themselves; ask another admin",
        ));
    }
    let user = state.store.update_user(&name, admin, disabled).await?;
    let what = match (admin, disabled) {
        (Some(true), _) => "is now an admin",
        (Some(false), _) => "is no longer an admin",
        (_, Some(true)) => "is now disabled",
        _ => "is enabled again",
    };
    Ok(redirect_with(
        "/users",
        "success",
        &format!("User '{}' {what}", user.username),
    ))
}

pub async fn tokens(State(state): State<AppState>, web: WebUser) -> WebResult {
    tokens_page(&state, &web, StatusCode::OK, None).await
}

async fn tokens_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    new_token: Option<String>,
) -> WebResult {
    let tokens = state.store.list_tokens(web.user.id).await?;
    Ok(page(
        web,
        "tokens.html",
        status,
        context! { tokens, new_token },
    ))
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
}

/// The new token is shown on this response only; it is never stored or shown again.
pub async fn create_token(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<TokenForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let token = auth::new_api_token();
    let label: String = form.label.trim().chars().take(200).collect();
    state
        .store
        .create_token(web.user.id, &label, &auth::token_hash(&token))
        .await?;
    tokens_page(&state, &web, StatusCode::CREATED, Some(token)).await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    web: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    state
        .store
        .revoke_token(web.user.id, id_of(&id, "token")?)
        .await?;
    Ok(redirect_with("/tokens", "success", "Token revoked"))
}

// ---------------------------------------------------------------- activity

pub async fn activity(
    State(state): State<AppState>,
    web: WebUser,
    Query(q): Query<CursorQuery>,
) -> WebResult {
    let page_of = state
        .store
        .list_activities(&policy::visibility(&web.user), None, 50, q.cursor)
        .await?;
    Ok(page(
        &web,
        "activity.html",
        StatusCode::OK,
        context! { activities => page_of.items, next_cursor => page_of.next },
    ))
}
