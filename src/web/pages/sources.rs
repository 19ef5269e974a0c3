//! Sources: the registries that feed Herald besides the default one (admins).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::{page, Refused};
use crate::app::sources::{self, SourceInput};
use crate::error::AppError;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn sources(State(state): State<AppState>, web: WebUser) -> WebResult {
    sources_page(&state, &web, StatusCode::OK, Refused::default()).await
}

async fn sources_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    let sources = sources::list(state, &web.actor()).await?;
    // When each last sent an event: the default endpoint first (source NULL).
    let last = state.store.last_events_by_source().await?;
    let last_of = |name: Option<&str>| {
        last.iter()
            .find(|a| a.source.as_deref() == name)
            .and_then(|a| a.last_event_at)
    };
    let default_last_event = last_of(None);
    let rows: Vec<_> = sources
        .iter()
        .map(|s| context! { last_event_at => last_of(Some(&s.name)), ..minijinja::Value::from_serialize(s) })
        .collect();
    Ok(page(
        web,
        "sources.html",
        status,
        context! {
            sources => rows,
            default_last_event,
            ..refused.context(status, "/sources")
        },
    ))
}

/// The address the registry reaches Herald at: `--public-url`, else the one this browser
/// used.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("herald.example.org");
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// A source's page: its endpoint, when it last sent an event, and what to paste into its
/// registry's configuration (the credential as a placeholder: Herald keeps only a hash).
pub async fn source(
    State(state): State<AppState>,
    web: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> WebResult {
    let found = sources::list(&state, &web.actor())
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| AppError::not_found(format!("source '{name}' not found")))?;
    let url = format!(
        "{}/v2/sources/{}/events",
        base_url(&state, &headers),
        found.name
    );
    let snippet = crate::registry::sources::config_snippet(&found, &url);
    let last_event_at = state
        .store
        .last_events_by_source()
        .await?
        .into_iter()
        .find(|a| a.source.as_deref() == Some(found.name.as_str()))
        .and_then(|a| a.last_event_at);
    Ok(page(
        &web,
        "source.html",
        StatusCode::OK,
        context! { source => found, url, snippet, last_event_at },
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
        // Its page shows what to paste into the registry's configuration.
        Ok(source) => Ok(redirect_with(
            &format!("/sources/{}", source.name),
            "success",
            &format!(
                "Source '{}' created: paste the configuration below into its registry",
                source.name
            ),
        )),
        // A field problem (422) or a taken name (409) goes next to its field.
        Err(e)
            if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::CONFLICT =>
        {
            let field = e.field.clone().unwrap_or_else(|| "name".to_string());
            let refused = Refused::one("new-source", field, e.message).with_values(values);
            sources_page(&state, &web, e.status, refused).await
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
