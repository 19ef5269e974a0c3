//! Sources: registries other than the default one that feed Herald, each with its own
//! credential and its own ingest path `POST /v2/sources/{name}/events`, and the
//! translation of each kind's payload into Herald's events.
//!
//! - `distribution` and `gitlab`: distribution's notification envelope (GitLab's container
//!   registry adds `actor.user_type` and `rename` events), parsed as the default source's is.
//! - `zot`: CloudEvents 1.0 from zot's events extension (`zot.rs`).
//! - `harbor`: Harbor's webhook payload in its `Default` or `CloudEvents` format (`harbor.rs`).
//!
//! Every kind has the default endpoint's guarantees: a body that is not a JSON object is
//! refused (400), anything else is kept, an event Herald cannot use stored as ignored with
//! the reason, and no payload becomes more than the expansion bounds allow
//! ([`crate::domain::events::expansion_refused`]).

mod cloudevent;
mod harbor;
mod zot;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::events::IncomingEvent;
use crate::domain::events::SourceKind;
use crate::registry::envelope::parse_envelope_from;
use cloudevent::CloudEvent;

/// What a payload looks like, whoever sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Envelope,
    /// Harbor's `Default` format: `{type, occur_at, operator, event_data}`.
    Harbor,
    /// A CloudEvent whose type is Harbor's (`harbor.*`).
    HarborCloudEvent,
    /// Any other CloudEvent: zot's (`zotregistry.*`).
    ZotCloudEvent,
}

impl SourceKind {
    /// Whether a payload of `shape` is this kind's.
    fn takes(self, shape: Shape) -> bool {
        matches!(
            (self, shape),
            (Self::Distribution | Self::Gitlab, Shape::Envelope)
                | (Self::Zot, Shape::ZotCloudEvent)
                | (Self::Harbor, Shape::Harbor | Shape::HarborCloudEvent)
        )
    }

    fn sends(self) -> &'static str {
        match self {
            Self::Distribution | Self::Gitlab => "a distribution notification envelope",
            Self::Zot => "a CloudEvent of zot's",
            Self::Harbor => "a Harbor webhook payload (Default or CloudEvents format)",
        }
    }
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Self::Envelope => "a distribution notification envelope",
            Self::Harbor => "a Harbor webhook payload",
            Self::HarborCloudEvent => "a CloudEvent of Harbor's",
            Self::ZotCloudEvent => "a CloudEvent of zot's",
        }
    }
}

/// Why a payload is refused as a whole (400).
#[derive(Debug, PartialEq, Eq)]
pub struct SourceError(pub String);

/// The top-level keys that tell the shapes apart, read without building the payload's
/// values: reading them has no depth limit, so a deeply nested payload is still sorted
/// into its shape (and then stored as ignored, not refused).
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    specversion: Option<&'a RawValue>,
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    event_data: Option<&'a RawValue>,
    #[serde(borrow)]
    events: Option<&'a RawValue>,
}

fn shape_of(headers: &HeaderMap, top: &Top) -> Option<Shape> {
    let ce_type = if headers.contains_key("ce-specversion") {
        Some(cloudevent::header(headers, "ce-type").unwrap_or_default())
    } else if top.specversion.is_some() {
        Some(
            top.kind
                .and_then(|k| serde_json::from_str::<String>(k.get()).ok())
                .unwrap_or_default(),
        )
    } else {
        None
    };
    match ce_type {
        Some(t) if t.starts_with(harbor::CLOUDEVENT_PREFIX) => Some(Shape::HarborCloudEvent),
        Some(_) => Some(Shape::ZotCloudEvent),
        None if top.event_data.is_some() && top.kind.is_some() => Some(Shape::Harbor),
        None if top.events.is_some() => Some(Shape::Envelope),
        None => None,
    }
}

/// The events of one payload from source `name` of `kind`.
pub fn translate(
    kind: SourceKind,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<IncomingEvent>, SourceError> {
    let raw: &RawValue = serde_json::from_slice(body)
        .map_err(|e| SourceError(format!("the body is not valid JSON: {e}")))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(SourceError("the body must be a JSON object".into()));
    }
    let top: Top = serde_json::from_str(raw.get())
        .map_err(|e| SourceError(format!("the body is not a JSON object: {e}")))?;
    let shape = shape_of(headers, &top).ok_or_else(|| {
        SourceError(format!(
            "the body is not a payload Herald knows: source '{name}' is of kind {}, which sends {}",
            kind.as_str(),
            kind.sends()
        ))
    })?;
    if !kind.takes(shape) {
        return Err(SourceError(format!(
            "source '{name}' is of kind {}, but this is {}; a {} source sends {}",
            kind.as_str(),
            shape.describe(),
            kind.as_str(),
            kind.sends()
        )));
    }
    // The payload as received; the body is valid UTF-8 since it parsed as JSON.
    let text = String::from_utf8_lossy(body).into_owned();
    Ok(match shape {
        Shape::Envelope => {
            let mut events = parse_envelope_from(body, Some(name)).map_err(|e| SourceError(e.0))?;
            for e in &mut events {
                e.registry_id = scoped(name, e.registry_id.take());
            }
            events
        }
        Shape::Harbor => harbor::default_format(name, text),
        Shape::HarborCloudEvent => harbor::cloudevent(name, CloudEvent::read(headers, text)),
        Shape::ZotCloudEvent => vec![zot::event(name, CloudEvent::read(headers, text))],
    })
}

/// Each source's events are deduplicated among its own: ids are prefixed with its name.
fn scoped(name: &str, id: Option<String>) -> Option<String> {
    id.filter(|i| !i.is_empty()).map(|i| format!("{name}:{i}"))
}

/// A payload that is JSON but cannot be read as a JSON value (nesting past serde_json's
/// limit, a number beyond f64, a lone surrogate): no field can be read from it and no
/// format but the verbatim one could render it, so it is kept, ignored, with the reason,
/// as the default endpoint keeps such an event.
fn unreadable(name: &str, body: String, error: serde_json::Error) -> IncomingEvent {
    IncomingEvent::ignored_payload(
        body,
        Some(name),
        format!(
            "the payload cannot be read as a JSON value, so no payload format could render \
             it: {error}"
        ),
    )
}

/// A string at `pointer`, if it is a non-empty string.
fn string(v: &serde_json::Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What to paste into the configuration of `source`'s registry so that it sends to `url`.
/// Herald keeps only the credential's hash, so the snippet names it as a placeholder.
pub fn config_snippet(source: &crate::domain::model::Source, url: &str) -> String {
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
