//! A namespace's page, creating and deleting namespaces.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::{context, Value};
use serde::Deserialize;

use super::dashboard::dashboard_page;
use super::{health_view, page, webhook_row, CsrfOnly, Refused};
use crate::app;
use crate::app::access::namespace_access;
use crate::auth::policy::NamespaceAction;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

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
    // The same use case as the API, so both refuse the same things with the same words.
    let created = app::namespaces::create(
        &state,
        &web.actor(),
        Some(form.name.trim()),
        Some(form.team.as_str()),
        &form.description,
    )
    .await
    .map_err(crate::error::AppError::from);
    match created {
        Ok(ns) => Ok(redirect_with(
            &format!("/namespaces/{}", ns.name),
            "success",
            &format!("Namespace '{}' created", ns.name),
        )),
        Err(e) if e.status.is_client_error() => {
            let field = e.field.clone().unwrap_or_else(|| {
                if e.status == StatusCode::FORBIDDEN {
                    "team"
                } else {
                    "name"
                }
                .to_string()
            });
            let status = e.status;
            let refused = Refused::one("new-namespace", field, e.message).with_values(values);
            dashboard_page(&state, &web, status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn namespace(
    State(state): State<AppState>,
    web: WebUser,
    Path(ns): Path<String>,
) -> WebResult {
    namespace_page(&state, &web, &ns, StatusCode::OK, Refused::default()).await
}

pub(super) async fn namespace_page(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    let access = namespace_access(state, &web.actor(), ns, NamespaceAction::Read).await?;
    let webhooks = state.store.list_webhooks(&access.namespace.name).await?;
    let can = |a| access.allows(state, &web.actor(), a);
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let statuses = state
        .store
        .webhook_statuses(&access.namespace.name, since)
        .await?;
    let webhooks: Vec<Value> = webhooks
        .iter()
        .map(|w| {
            let health = statuses
                .iter()
                .find(|s| s.webhook_id == w.id)
                .map(|s| health_view(s, state.config.attention_after))
                .unwrap_or_default();
            context! { health, ..webhook_row(w) }
        })
        .collect();
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
            ..refused.context(status, &format!("/namespaces/{}", access.namespace.name))
        },
    ))
}

pub async fn delete_namespace(
    State(state): State<AppState>,
    web: WebUser,
    Path(ns): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let name = app::namespaces::delete(&state, &web.actor(), &ns).await?;
    Ok(redirect_with(
        "/",
        "success",
        &format!("Namespace '{name}' deleted"),
    ))
}
