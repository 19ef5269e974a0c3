//! A webhook's page and its forms: create, edit, enable/disable, delete.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::{context, Value};
use serde::Deserialize;

use super::namespaces::namespace_page;
use super::webhook_form::{with_problem, WebhookForm};
use super::{
    delivery_view, errors_map, errors_of, health_view, load_webhook, page, webhook_row, CsrfOnly,
    Refused,
};
use crate::app;
use crate::app::access::WebhookRef::Id;
use crate::auth::policy::NamespaceAction;
use crate::domain::delivery::DeliveryState;
use crate::hooks::input::WebhookInput;
use crate::web::{chart, redirect_with, WebResult, WebUser};
use crate::AppState;

const DELIVERIES_PER_PAGE: i64 = 20;

/// What a webhook page shows besides the webhook itself.
#[derive(Default)]
pub(super) struct Extras {
    pub cursor: Option<i64>,
    pub state: Option<DeliveryState>,
    /// A refused form of the page (headers, recover), shown with its problems.
    pub refused: Refused,
    /// A signing secret in clear: only on the answer that created or rotated it.
    pub new_secret: Option<String>,
    /// A message for this answer (pages rendered for a POST have no flash).
    pub notice: Option<String>,
}

impl Extras {
    pub fn refused(refused: Refused) -> Self {
        Self {
            refused,
            ..Self::default()
        }
    }
}

#[derive(Deserialize)]
pub struct WebhookQuery {
    cursor: Option<i64>,
    #[serde(default)]
    state: String,
}

/// `?state=failed` and the like; anything else lists every delivery.
fn state_filter(raw: &str) -> Option<DeliveryState> {
    ["pending", "retrying", "succeeded", "failed"]
        .contains(&raw)
        .then(|| DeliveryState::parse(raw).ok())
        .flatten()
}

pub async fn create_webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path(ns): Path<String>,
    Form(form): Form<WebhookForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let values = form.values();
    let filters = form.filters();
    let (client_certificate, client_key) = form.client_identity();
    let tls_verify = form
        .filters_present
        .as_ref()
        .map(|_| form.skip_tls_verify.is_none());
    let (rate_limit, ordering) = (form.rate_limit(), form.ordering());
    let token = form.token();
    let (format_options, options_problem) = match form.format_options() {
        Ok(options) => (options, None),
        Err(problem) => (None, Some(problem)),
    };
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
        tls_verify,
        rate_limit,
        ordering,
        signature: Some(form.signature.clone()).filter(|s| !s.is_empty()),
        client_certificate,
        client_key,
        token,
        format_options,
    };
    let new = with_problem(input.into_new(&state.cipher), options_problem);
    match app::webhooks::create(&state, &web.actor(), &ns, new)
        .await
        .map_err(crate::error::AppError::from)
    {
        // The signing secret is shown on this answer only, like a new API token.
        Ok((_, hook)) => {
            let name = hook.name.as_str();
            let extras = Extras {
                new_secret: app::webhooks::current_secret(&hook, &state.cipher)?,
                notice: Some(format!(
                    "Webhook '{name}' created; it is disabled until you enable it"
                )),
                ..Extras::default()
            };
            webhook_page(
                &state,
                &web,
                &ns,
                &hook.id.to_string(),
                StatusCode::CREATED,
                extras,
            )
            .await
        }
        // Field problems (422) and a taken name (409) go next to their fields.
        Err(e) if matches!(e.status.as_u16(), 409 | 422) => {
            let status = e.status;
            let refused = Refused::new("new-webhook", errors_of(&e), values);
            namespace_page(&state, &web, &ns, status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn webhook(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Query(q): Query<WebhookQuery>,
) -> WebResult {
    let extras = Extras {
        cursor: q.cursor,
        state: state_filter(&q.state),
        ..Extras::default()
    };
    webhook_page(&state, &web, &ns, &id, StatusCode::OK, extras).await
}

pub(super) async fn webhook_page(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    id: &str,
    status: StatusCode,
    extras: Extras,
) -> WebResult {
    let (access, hook) = load_webhook(state, web, ns, id, NamespaceAction::Read).await?;
    let can = |a| access.allows(state, &web.actor(), a);
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
    let listed = state
        .store
        .list_deliveries_in(hook.id, extras.state, DELIVERIES_PER_PAGE, extras.cursor)
        .await?;
    // What the live deliveries table shows, to replace it only when that changes.
    let deliveries_key: String = listed
        .items
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}:{:?};",
                d.id,
                d.state.as_str(),
                d.attempt_count,
                d.next_attempt_at
            )
        })
        .collect::<String>()
        + hook.circuit.state.as_str();
    let deliveries: Vec<Value> = listed
        .items
        .iter()
        .map(|d| delivery_view(d, &hook.circuit))
        .collect();
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let stats = state.store.delivery_stats(hook.id, since).await?;
    let chart = chart::render_svg(&stats, since);
    let chart_rows = chart::rows(&stats, since);
    let health: Value = state
        .store
        .webhook_statuses(&access.namespace.name, since)
        .await?
        .iter()
        .find(|s| s.webhook_id == hook.id)
        .map(|s| health_view(s, state.config.attention_after))
        .unwrap_or_default();
    let previous_secret_until = hook
        .previous_secret_until
        .filter(|t| *t > chrono::Utc::now());
    let path = format!("/namespaces/{}/webhooks/{}", access.namespace.name, hook.id);
    Ok(page(
        web,
        "webhook.html",
        status,
        context! {
            namespace => access.namespace,
            webhook => webhook_row(&hook),
            health,
            headers,
            deliveries,
            deliveries_key,
            next_cursor => listed.next,
            state_filter => extras.state.map(DeliveryState::as_str),
            chart,
            chart_rows,
            signed => !hook.signing_secrets.is_empty(),
            signature_public_key => app::webhooks::signature_public_key(&hook, &state.cipher)?,
            previous_secret_until,
            new_secret => extras.new_secret,
            notice => extras.notice,
            can_update,
            can_delete => can(NamespaceAction::DeleteWebhook),
            can_headers => can(NamespaceAction::ManageHeaders),
            can_retrigger => can(NamespaceAction::Retrigger),
            // Answers to a POST: the address bar should show the page's own address.
            ..extras.refused.context(status, &path)
        },
    ))
}

/// The edit form, on a page of its own so that the webhook's page leads with its health
/// and deliveries.
pub async fn edit_page(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
) -> WebResult {
    edit_form(&state, &web, &ns, &id, StatusCode::OK, Refused::default()).await
}

async fn edit_form(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    id: &str,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    let (access, hook) = load_webhook(state, web, ns, id, NamespaceAction::UpdateWebhook).await?;
    let path = format!(
        "/namespaces/{}/webhooks/{}/edit",
        access.namespace.name, hook.id
    );
    Ok(page(
        web,
        "webhook_edit.html",
        status,
        context! {
            namespace => access.namespace,
            webhook => webhook_row(&hook),
            ..refused.context(status, &path)
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
    let values = form.values();
    let filters = form.filters();
    let (rate_limit, ordering) = (form.rate_limit(), form.ordering());
    let (client_certificate, client_key) = form.client_identity();
    let token = form.token();
    let (format_options, options_problem) = match form.format_options() {
        Ok(options) => (options, None),
        Err(problem) => (None, Some(problem)),
    };
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
        rate_limit,
        ordering,
        signature: Some(form.signature.clone()).filter(|s| !s.is_empty()),
        client_certificate,
        client_key,
        token,
        format_options,
    };
    // The UI shows every problem of the form at once; the API reports the first.
    let patch = match with_problem(input.into_patch(&state.cipher), options_problem) {
        Ok(p) => p,
        Err(problems) => {
            let refused = Refused::new("edit-webhook", errors_map(&problems), values);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return edit_form(&state, &web, &ns, &id, status, refused).await;
        }
    };
    match app::webhooks::update_showing_secret(&state, &web.actor(), &ns, Id(&id), Ok(patch))
        .await
        .map_err(crate::error::AppError::from)
    {
        // Switching to v1 made a shared secret: shown on this answer only.
        Ok((_, updated, Some(secret))) => {
            let extras = Extras {
                new_secret: Some(secret),
                notice: Some(format!(
                    "Webhook '{}' saved; it signs with a new v1 secret, and the previous key \
                     also signs for {} hours",
                    updated.name.as_str(),
                    app::webhooks::ROTATION_OVERLAP_HOURS
                )),
                ..Extras::default()
            };
            webhook_page(&state, &web, &ns, &id, StatusCode::CREATED, extras).await
        }
        Ok((_, updated, None)) => Ok(redirect_with(
            &format!("/namespaces/{ns}/webhooks/{id}"),
            "success",
            &format!("Webhook '{}' saved", updated.name.as_str()),
        )),
        // A field problem (422) or a taken name (409) goes next to its field.
        Err(e) if matches!(e.status.as_u16(), 409 | 422) => {
            let field = e.field.clone().unwrap_or_else(|| "name".to_string());
            let status = e.status;
            let refused = Refused::one("edit-webhook", field, e.message).with_values(values);
            edit_form(&state, &web, &ns, &id, status, refused).await
        }
        Err(e) => Err(e.into()),
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
    let enabled = form.enabled == "true";
    let (_, hook) = app::webhooks::set_enabled(&state, &web.actor(), &ns, Id(&id), enabled).await?;
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
    let hook = app::webhooks::delete(&state, &web.actor(), &ns, Id(&id)).await?;
    Ok(redirect_with(
        &format!("/namespaces/{ns}"),
        "success",
        &format!("Webhook '{}' deleted", hook.name.as_str()),
    ))
}
