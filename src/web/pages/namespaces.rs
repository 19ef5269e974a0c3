//! A namespace's page, creating and deleting namespaces.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::{context, Value};
use serde::Deserialize;

use super::dashboard::dashboard_page;
use super::{page, webhook_row, CsrfOnly};
use crate::api::access::{namespace_access, team_for_new_namespace};
use crate::auth::policy::NamespaceAction;
use crate::error::AppError;
use crate::hooks::types::NamespaceName;
use crate::store::Audit;
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

pub(super) async fn namespace_page(
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
    Ok(redirect_with(
        "/",
        "success",
        &format!("Namespace '{}' deleted", access.namespace.name),
    ))
}
