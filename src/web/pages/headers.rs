//! A webhook's custom headers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use serde::Deserialize;

use super::webhooks::{webhook_page, Extras};
use super::{load_webhook, CsrfOnly};
use crate::auth::policy::NamespaceAction;
use crate::hooks::input::parse_added_header;
use crate::store::{Audit, StoredHeader};
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

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
                StatusCode::UNPROCESSABLE_ENTITY,
                Extras::errors(errors, values),
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
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}"),
        "success",
        &format!(
            "Header '{name}' removed from webhook '{}'",
            hook.name.as_str()
        ),
    ))
}
