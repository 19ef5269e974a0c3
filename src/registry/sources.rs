//! Sources: registries other than the default one that feed Herald, each with its own
//! credential and its own ingest path `POST /v2/sources/{name}/events`, and the
//! translation of each kind's payload into Herald's events.
//!
//! - `distribution` and `gitlab`: distribution's notification envelope (GitLab's container
//!   registry adds `actor.user_type`), parsed as the default source's is.
//! - `zot`: CloudEvents 1.0 over HTTP from zot's events extension, in binary mode (`ce-*`
//!   headers, the event's data as the body; the mode zot's SDK sends) or structured mode.
//! - `harbor`: Harbor's webhook payload, `{type, occur_at, operator, event_data}`.
//!
//! Whatever the kind, each event's body is the payload exactly as received.

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::domain::events::{validate_name, SourceKind, DEFAULT_SOURCE};
use crate::registry::envelope::{split_envelope, IncomingEvent, Translated};

/// What a payload looks like, whoever sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Envelope,
    CloudEvent,
    Harbor,
}

impl SourceKind {
    /// Whether a payload of `shape` is this kind's.
    fn takes(self, shape: Shape) -> bool {
        matches!(
            (self, shape),
            (Self::Distribution | Self::Gitlab, Shape::Envelope)
                | (Self::Zot, Shape::CloudEvent)
                | (Self::Harbor, Shape::Harbor)
        )
    }
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Self::Envelope => "a distribution notification envelope",
            Self::CloudEvent => "a CloudEvent (zot)",
            Self::Harbor => "a Harbor webhook payload",
        }
    }
}

/// Why a payload is refused as a whole (400).
#[derive(Debug, PartialEq, Eq)]
pub struct SourceError(pub String);

fn shape_of(headers: &HeaderMap, body: &Value) -> Option<Shape> {
    if headers.contains_key("ce-specversion") || body.get("specversion").is_some() {
        Some(Shape::CloudEvent)
    } else if body.get("event_data").is_some() && body.get("type").is_some() {
        Some(Shape::Harbor)
    } else if body.get("events").is_some() {
        Some(Shape::Envelope)
    } else {
        None
    }
}

/// The events of one payload from source `name` of `kind`.
pub fn translate(
    kind: SourceKind,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<IncomingEvent>, SourceError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SourceError(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(SourceError("the body must be a JSON object".into()));
    }
    let shape = shape_of(headers, &value).ok_or_else(|| {
        SourceError(format!(
            "the body is not a payload Herald knows: source '{name}' is of kind {}, which sends {}",
            kind.as_str(),
            expected(kind).describe()
        ))
    })?;
    if !kind.takes(shape) {
        return Err(SourceError(format!(
            "source '{name}' is of kind {}, but this is {}; a {} source sends {}",
            kind.as_str(),
            shape.describe(),
            kind.as_str(),
            expected(kind).describe()
        )));
    }
    // The payload as received; the body is valid UTF-8 since it parsed as JSON.
    let text = String::from_utf8_lossy(body).into_owned();
    match shape {
        Shape::Envelope => envelope(name, body),
        Shape::CloudEvent => Ok(vec![zot(name, headers, &value, text)]),
        Shape::Harbor => Ok(harbor(name, &value, &text)),
    }
}

fn expected(kind: SourceKind) -> Shape {
    match kind {
        SourceKind::Distribution | SourceKind::Gitlab => Shape::Envelope,
        SourceKind::Zot => Shape::CloudEvent,
        SourceKind::Harbor => Shape::Harbor,
    }
}

/// Each source's events are deduplicated among its own: ids are prefixed with its name.
fn scoped(name: &str, id: Option<String>) -> Option<String> {
    id.filter(|i| !i.is_empty()).map(|i| format!("{name}:{i}"))
}

fn envelope(name: &str, body: &[u8]) -> Result<Vec<IncomingEvent>, SourceError> {
    let raws = split_envelope(body).map_err(|e| SourceError(e.0))?;
    Ok(raws
        .into_iter()
        .map(|raw| {
            let mut e = IncomingEvent::classify_from(raw, Some(name));
            e.registry_id = scoped(name, e.registry_id.take());
            e
        })
        .collect())
}

fn string(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A reference is a digest when it has an algorithm prefix (`sha256:...`), else a tag.
fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

/// zot's events extension: `zotregistry.image.updated`, `.image.deleted`,
/// `.image.lint_failed`, `.image.scanned` and `.repository.created`, with `name`,
/// `reference`, `digest`, `mediaType` (and `manifest`, `actor`, `request`) as data.
fn zot(name: &str, headers: &HeaderMap, value: &Value, body: String) -> IncomingEvent {
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .filter(|v| !v.is_empty())
    };
    let binary = headers.contains_key("ce-specversion");
    let (id, source, kind, data) = if binary {
        (
            header("ce-id"),
            header("ce-source"),
            header("ce-type"),
            value,
        )
    } else {
        (
            string(value, "/id"),
            string(value, "/source"),
            string(value, "/type"),
            value.get("data").unwrap_or(&Value::Null),
        )
    };
    let action = kind.as_deref().map(|k| match k {
        "zotregistry.image.updated" => "push".to_string(),
        "zotregistry.image.deleted" => "delete".to_string(),
        "zotregistry.image.lint_failed" => "lint_failed".to_string(),
        "zotregistry.image.scanned" => "scan_completed".to_string(),
        "zotregistry.repository.created" => "repository_created".to_string(),
        other => other.to_string(),
    });
    let reference = string(data, "/reference");
    let tag = reference.clone().filter(|r| !is_digest(r));
    let digest = string(data, "/digest").or(reference.filter(|r| is_digest(r)));
    // The CloudEvents spec makes `id` unique within its `source`.
    let key = id.map(|id| format!("{}/{id}", source.unwrap_or_default()));
    IncomingEvent::translated(
        Translated {
            registry_id: scoped(name, key),
            action,
            repository: string(data, "/name"),
            tag,
            digest,
            media_type: string(data, "/mediaType"),
            actor: string(data, "/actor/name"),
            request_method: string(data, "/request/method"),
            // Every zot image event is about a manifest.
            is_manifest: Some(true),
        },
        body,
        name,
    )
}

/// Harbor's event types, in Herald's words.
fn harbor_action(kind: &str) -> String {
    match kind {
        "PUSH_ARTIFACT" => "push",
        "PULL_ARTIFACT" => "pull",
        "DELETE_ARTIFACT" => "delete",
        "SCANNING_COMPLETED" => "scan_completed",
        "SCANNING_FAILED" => "scan_failed",
        "QUOTA_EXCEED" => "quota_exceeded",
        "REPLICATION" => "replication",
        "TAG_RETENTION" => "tag_retention",
        other => other,
    }
    .to_string()
}

/// Harbor's payload: one event per artifact it names (an artifact push of several tags
/// lists each; replication and tag retention list artifacts as `name_tag`), all with the
/// whole payload as body. Harbor sends no event id, so the key is a hash of the payload,
/// which a redelivery repeats byte for byte.
fn harbor(name: &str, value: &Value, body: &str) -> Vec<IncomingEvent> {
    let key = string(value, "/id").unwrap_or_else(|| {
        Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    let kind = string(value, "/type").unwrap_or_default();
    let repository = string(value, "/event_data/repository/repo_full_name").or_else(|| {
        match (
            string(value, "/event_data/repository/namespace"),
            string(value, "/event_data/repository/name"),
        ) {
            (Some(ns), Some(repo)) => Some(format!("{ns}/{repo}")),
            (None, Some(repo)) => Some(repo),
            _ => None,
        }
    });
    // (repository, tag, digest) of each artifact.
    let mut artifacts: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    let list = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for r in list("/event_data/resources") {
        artifacts.push((
            repository.clone(),
            string(&r, "/tag"),
            string(&r, "/digest"),
        ));
    }
    // Replication and retention name artifacts `repo:tag`, relative to a project.
    for (items, project) in [
        (
            "/event_data/replication/successful_artifact",
            "/event_data/replication/src_resource/namespace",
        ),
        (
            "/event_data/replication/failed_artifact",
            "/event_data/replication/src_resource/namespace",
        ),
        (
            "/event_data/retention/deleted_artifact",
            "/event_data/retention/project_name",
        ),
    ] {
        for a in list(items) {
            let Some(name_tag) = string(&a, "/name_tag") else {
                continue;
            };
            let (repo, tag) = match name_tag.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
                _ => (name_tag, None),
            };
            let repo = match string(value, project) {
                Some(p) if !repo.contains('/') => format!("{p}/{repo}"),
                _ => repo,
            };
            artifacts.push((Some(repo), tag, None));
        }
    }
    if artifacts.is_empty() {
        artifacts.push((repository, None, None));
    }
    let many = artifacts.len() > 1;
    artifacts
        .into_iter()
        .enumerate()
        .map(|(i, (repository, tag, digest))| {
            let id = if many {
                format!("{key}#{i}")
            } else {
                key.clone()
            };
            IncomingEvent::translated(
                Translated {
                    registry_id: scoped(name, Some(id)),
                    action: Some(harbor_action(&kind)),
                    repository,
                    tag,
                    digest,
                    media_type: None,
                    actor: string(value, "/operator"),
                    request_method: None,
                    is_manifest: Some(true),
                },
                body.to_string(),
                name,
            )
        })
        .collect()
}

/// What to paste into the configuration of `source`'s registry so that it sends to `url`.
/// Herald keeps only the credential's hash, so the snippet names it as a placeholder.
pub fn config_snippet(source: &crate::store::Source, url: &str) -> String {
    let name = &source.name;
    let (bearer, basic) = match &source.username {
        None => (true, String::new()),
        Some(u) => (false, u.clone()),
    };
    let authorization = if bearer {
        "Bearer <the source's token>".to_string()
    } else {
        format!("Basic <base64 of {basic}:password>")
    };
    match source.kind {
        SourceKind::Distribution | SourceKind::Gitlab => format!(
            "# Paste into the registry's config.yml ({}).\n\
             notifications:\n\
             \x20 endpoints:\n\
             \x20   - name: herald-{name}\n\
             \x20     url: {url}\n\
             \x20     headers:\n\
             \x20       Authorization: [{authorization}]\n\
             \x20     timeout: 5s\n\
             \x20     threshold: 5\n\
             \x20     backoff: 2s\n",
            if source.kind == SourceKind::Gitlab {
                "GitLab: the registry section of gitlab.rb or the chart's registry.notifications"
            } else {
                "distribution 2.x and 3.x"
            }
        ),
        SourceKind::Zot => {
            let credentials = if bearer {
                "{\"token\": \"<the source's token>\"}".to_string()
            } else {
                format!("{{\"username\": \"{basic}\", \"password\": \"<the source's password>\"}}")
            };
            format!(
                "// Merge into zot's config.json (zot built with the events extension).\n\
                 {{\n\
                 \x20 \"extensions\": {{\n\
                 \x20   \"events\": {{\n\
                 \x20     \"enable\": true,\n\
                 \x20     \"sinks\": [{{\n\
                 \x20       \"type\": \"http\",\n\
                 \x20       \"address\": \"{url}\",\n\
                 \x20       \"timeout\": \"10s\",\n\
                 \x20       \"credentials\": {credentials}\n\
                 \x20     }}]\n\
                 \x20   }}\n\
                 \x20 }}\n\
                 }}\n"
            )
        }
        SourceKind::Harbor => format!(
            "# Harbor: Projects > (project) > Webhooks > New webhook, or POST\n\
             # /api/v2.0/projects/{{project}}/webhook/policies with these fields.\n\
             notify type:          http\n\
             event types:          all that Herald's webhooks should see\n\
             endpoint URL:         {url}\n\
             auth header:          {authorization}\n\
             verify remote cert:   on (off only for a self-signed Herald)\n\
             payload format:       Default (not CloudEvents)\n"
        ),
    }
}
