//! A webhook's page and its forms: create, edit, enable/disable, delete.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::namespaces::namespace_page;
use super::{errors_map, load_webhook, page, webhook_row, CsrfOnly, CursorQuery};
use crate::api::access::namespace_access;
use crate::auth::policy::NamespaceAction;
use crate::error::AppError;
use crate::hooks::input::{audit_for_patch, check_new_template, check_patch, WebhookInput};
use crate::store::{Audit, WebhookPatch};
use crate::web::{chart, redirect_with, WebResult, WebUser};
use crate::AppState;

const DELIVERIES_PER_PAGE: i64 = 20;

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
        Ok(hook) => Ok(redirect_with(
            &format!("/namespaces/{ns}/webhooks/{}", hook.id),
            "success",
            &format!("Webhook '{name}' created; it is disabled until you enable it"),
        )),
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
pub(super) async fn webhook_page(
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
        Ok(updated) => Ok(redirect_with(
            &format!("/namespaces/{ns}/webhooks/{id}"),
            "success",
            &format!("Webhook '{}' saved", updated.name.as_str()),
        )),
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
    Ok(redirect_with(
        &format!("/namespaces/{ns}"),
        "success",
        &format!("Webhook '{}' deleted", hook.name.as_str()),
    ))
}
