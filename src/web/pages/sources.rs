//! Sources: the registries that feed Herald, the built-in default one first (admins).

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
    // When each last sent an event (the built-in source's events have source NULL).
    let last = state.store.last_events_by_source().await?;
    let last_of = |name: Option<&str>| {
        last.iter()
            .find(|a| a.source.as_deref() == name)
            .and_then(|a| a.last_event_at)
    };
    let rows: Vec<_> = sources
        .iter()
        .map(|s| {
            let own = (!s.builtin).then_some(s.name.as_str());
            context! { last_event_at => last_of(own), ..minijinja::Value::from_serialize(s) }
        })
        .collect();
    Ok(page(
        web,
        "sources.html",
        status,
        context! {
            sources => rows,
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
/// registry's configuration (the credential as a placeholder: Herald keeps only a hash);
/// how Herald reads its registry, and its reconciles.
pub async fn source(
    State(state): State<AppState>,
    web: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> WebResult {
    source_page(
        &state,
        &web,
        &headers,
        &name,
        StatusCode::OK,
        Refused::default(),
    )
    .await
}

async fn source_page(
    state: &AppState,
    web: &WebUser,
    headers: &HeaderMap,
    name: &str,
    status: StatusCode,
    refused: Refused,
) -> WebResult {
    let found = sources::get(state, &web.actor(), name).await?;
    let base = base_url(state, headers);
    let url = if found.builtin {
        format!("{base}/v2/webhooks/events")
    } else {
        format!("{base}/v2/sources/{}/events", found.name)
    };
    let snippet = crate::registry::sources::config_snippet(&found, &url);
    let own = (!found.builtin).then_some(found.name.as_str());
    let last_event_at = state
        .store
        .last_events_by_source()
        .await?
        .into_iter()
        .find(|a| a.source.as_deref() == own)
        .and_then(|a| a.last_event_at);
    // A source Herald may not read has no reconcile to show.
    let reconcile = match found.registry_url {
        Some(_) => Some(sources::reconcile_status(state, &web.actor(), name).await?),
        None => None,
    };
    let address = format!("/sources/{}", found.name);
    Ok(page(
        web,
        "source.html",
        status,
        context! {
            source => found,
            url,
            snippet,
            last_event_at,
            reconcile,
            ..refused.context(status, &address)
        },
    ))
}

#[derive(Deserialize)]
pub struct RegistryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    registry_url: String,
    #[serde(default)]
    registry_username: String,
    #[serde(default)]
    registry_password: String,
    /// "Stop reading this registry".
    #[serde(default)]
    remove: Option<String>,
}

/// Gives Herald read access to a source's registry, changes it or takes it away. An empty
/// password keeps the one Herald has; a new address or username needs it given again only
/// when there was none.
pub async fn update_registry(
    State(state): State<AppState>,
    web: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<RegistryForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let input = if form.remove.is_some() {
        sources::RegistryAccessInput {
            registry_url: Some(None),
            registry_username: Some(None),
            registry_password: Some(None),
        }
    } else {
        sources::RegistryAccessInput {
            registry_url: Some(given(form.registry_url.clone())),
            registry_username: Some(given(form.registry_username.clone())),
            registry_password: given(form.registry_password).map(Some),
        }
    };
    match sources::update(&state, &web.actor(), &name, input)
        .await
        .map_err(AppError::from)
    {
        Ok(source) => Ok(redirect_with(
            &format!("/sources/{}", source.name),
            "success",
            &match source.registry_url {
                Some(url) => format!(
                    "Herald reads the registry of '{}' at {url}; a first reconcile learns its tags now",
                    source.name
                ),
                None => format!("Herald no longer reads the registry of '{}'", source.name),
            },
        )),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let field = e.field.clone().unwrap_or_else(|| "registry_url".to_string());
            let values = BTreeMap::from([
                ("registry_url".to_string(), form.registry_url),
                ("registry_username".to_string(), form.registry_username),
            ]);
            let refused = Refused::one("registry", field, e.message).with_values(values);
            source_page(&state, &web, &headers, &name, e.status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct NatsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nats_url: String,
    #[serde(default)]
    nats_subject: String,
    #[serde(default)]
    nats_stream: String,
    #[serde(default)]
    nats_consumer: String,
    /// "Stop reading from NATS".
    #[serde(default)]
    remove: Option<String>,
}

/// Makes a zot or distribution source read its events from a NATS subject, changes where,
/// or stops it: the API's `PATCH /sources/{name}` with `nats_*`, through the same rules. An
/// empty address keeps the one Herald has (and the credentials in it), as an empty password
/// does.
pub async fn update_nats(
    State(state): State<AppState>,
    web: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<NatsForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let input = if form.remove.is_some() {
        sources::NatsInput {
            url: Some(None),
            ..Default::default()
        }
    } else {
        sources::NatsInput {
            url: given(form.nats_url.clone()).map(Some),
            subject: given(form.nats_subject.clone()),
            stream: given(form.nats_stream.clone()),
            consumer: given(form.nats_consumer.clone()),
        }
    };
    match sources::set_nats(&state, &web.actor(), &name, input)
        .await
        .map_err(AppError::from)
    {
        Ok(source) => Ok(redirect_with(
            &format!("/sources/{}", source.name),
            "success",
            &match (&source.nats_url, &source.nats_subject) {
                (Some(url), Some(subject)) => format!(
                    "'{}' reads its events from NATS at {url}, subject {subject}",
                    source.name
                ),
                _ => format!("'{}' no longer reads its events from NATS", source.name),
            },
        )),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let field = e.field.clone().unwrap_or_else(|| "nats_url".to_string());
            let values = BTreeMap::from([
                ("nats_subject".to_string(), form.nats_subject),
                ("nats_stream".to_string(), form.nats_stream),
                ("nats_consumer".to_string(), form.nats_consumer),
            ]);
            let refused = Refused::one("nats", field, e.message).with_values(values);
            source_page(&state, &web, &headers, &name, e.status, refused).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Asks for a reconcile now; the page shows its progress.
pub async fn reconcile(
    State(state): State<AppState>,
    web: WebUser,
    Path(name): Path<String>,
    Form(form): Form<DeleteForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let to = format!("/sources/{name}");
    match sources::reconcile(&state, &web.actor(), &name)
        .await
        .map_err(AppError::from)
    {
        Ok(_) => Ok(redirect_with(
            &to,
            "success",
            &format!("Reconcile of '{name}' asked for: this page shows its progress"),
        )),
        Err(e) if e.status == StatusCode::CONFLICT => Ok(redirect_with(&to, "error", &e.message)),
        Err(e) => Err(e.into()),
    }
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
