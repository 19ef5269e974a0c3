//! Sources: the registries that feed Herald besides the default one (admins).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::page;
use crate::app::sources::{self, SourceInput};
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn sources(State(state): State<AppState>, web: WebUser) -> WebResult {
    sources_page(
        &state,
        &web,
        StatusCode::OK,
        BTreeMap::new(),
        BTreeMap::new(),
    )
    .await
}

async fn sources_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
    values: BTreeMap<String, String>,
) -> WebResult {
    let sources = sources::list(state, &web.actor()).await?;
    Ok(page(
        web,
        "sources.html",
        status,
        context! { sources, errors, values },
    ))
}

#[derive(Deserialize)]
pub struct SourceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// An empty field is one not given, as a JSON body would leave it out.
fn given(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub async fn create_source(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<SourceForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let values = BTreeMap::from([
        ("name".to_string(), form.name.clone()),
        ("kind".to_string(), form.kind.clone()),
        ("username".to_string(), form.username.clone()),
    ]);
    let input = SourceInput {
        name: form.name,
        kind: form.kind,
        token: given(form.token),
        username: given(form.username),
        password: given(form.password),
    };
    match sources::create(&state, &web.actor(), input)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok(source) => Ok(redirect_with(
            "/sources",
            "success",
            &format!(
                "Source '{}' created: its registry posts to /v2/sources/{}/events",
                source.name, source.name
            ),
        )),
        // A field problem (422) or a taken name (409) goes next to its field.
        Err(e)
            if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::CONFLICT =>
        {
            let field = e.field.clone().unwrap_or_else(|| "name".to_string());
            let errors = BTreeMap::from([(field, e.message)]);
            sources_page(&state, &web, e.status, errors, values).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

pub async fn delete_source(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<DeleteForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    sources::delete(&state, &web.actor(), &name).await?;
    Ok(redirect_with(
        "/sources",
        "success",
        &format!("Source '{name}' deleted"),
    ))
}
