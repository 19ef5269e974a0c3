//! A webhook's custom headers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use serde::Deserialize;

use super::webhooks::{webhook_page, Extras};
use super::{CsrfOnly, Refused};
use crate::app;
use crate::app::access::WebhookRef::Id;
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
    let set = app::webhooks::set_header(
        &state,
        &web.actor(),
        &ns,
        Id(&id),
        &form.header_name,
        &form.header_value,
    )
    .await
    .map_err(crate::error::AppError::from);
    let set = match set {
        Ok(set) => set,
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
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
                Extras::refused(Refused::new("add-header", errors, values)),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let (name, hook) = (set.name, set.webhook);
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
    let hook = app::webhooks::delete_header(&state, &web.actor(), &ns, Id(&id), &name).await?;
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}"),
        "success",
        &format!(
            "Header '{name}' removed from webhook '{}'",
            hook.name.as_str()
        ),
    ))
}
