//! CloudEvents 1.0, in structured mode (`application/cloudevents+json`) and binary mode
//! (`ce-*` headers, the event as body).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::view::{facts, parsed, subject, text};
use super::Rendered;
use crate::domain::delivery::EventRecord;

/// The CloudEvents context attributes Herald sets, in both modes.
pub(super) struct Context {
    id: String,
    source: String,
    kind: String,
    subject: String,
    time: String,
}

/// The registry's address as the last segment of `source`: RFC 3986 unreserved characters
/// and `:` as they are, anything else `_`. Percent-encoding would make it a valid
/// URI-reference too, but binary mode must percent-encode `%` again in the `ce-source`
/// header, and SDKs that do not decode headers would then disagree with structured mode.
pub(super) fn source_segment(origin: &str) -> String {
    origin
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' | ':' => c,
            _ => '_',
        })
        .collect()
}

pub(super) fn context(v: &Value, received_at: DateTime<Utc>) -> Context {
    // A source of another kind than distribution's is named as Herald knows it; a
    // distribution registry by its instance's address.
    let source = match text(v, "/source/name") {
        Some(name) => format!("/herald/sources/{}", source_segment(name)),
        None => {
            let origin = text(v, "/source/addr")
                .or_else(|| text(v, "/request/host"))
                .unwrap_or("unknown");
            format!("/herald/registry/{}", source_segment(origin))
        }
    };
    Context {
        id: text(v, "/id").unwrap_or("").to_string(),
        // Always a valid URI-reference, whatever the registry wrote in its address.
        source,
        kind: format!(
            "io.herald.registry.{}",
            text(v, "/action").unwrap_or("unknown")
        ),
        subject: subject(v),
        time: event_time(text(v, "/timestamp"), received_at),
    }
}

/// Herald's extension attributes: what was pushed and whether a reconcile made the event
/// up. Names are lowercase letters only, at most 20 characters, as CloudEvents asks.
pub(super) fn extensions(v: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(f) = facts(v) {
        out.push(("heraldkind", f.kind.as_str().to_string()));
        if let Some(t) = f.artifact_type {
            out.push(("heraldartifacttype", t));
        }
        if let Some(subject) = f.subject {
            out.push(("heraldsubject", subject));
        }
        if !f.subject_tags.is_empty() {
            out.push(("heraldsubjecttags", f.subject_tags.join(",")));
        }
        if !f.platforms.is_empty() {
            out.push(("heraldplatforms", f.platforms.join(",")));
        }
    }
    if let Some(why) = text(v, "/herald/synthesized") {
        out.push(("heraldsynthesized", why.to_string()));
    }
    out
}

/// The event's time as RFC 3339 with a zone, which CloudEvents requires: the registry's
/// timestamp when it can be read (with or without a zone), else when Herald received it.
pub(super) fn event_time(timestamp: Option<&str>, received_at: DateTime<Utc>) -> String {
    timestamp
        .and_then(crate::domain::events::parse_time)
        .unwrap_or(received_at)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

pub(super) fn cloudevent(event: &str, view: &str, record: &EventRecord) -> Result<String, String> {
    let v = parsed(view)?;
    #[derive(Serialize)]
    struct CloudEvent<'a> {
        specversion: &'static str,
        id: &'a str,
        source: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        subject: &'a str,
        time: &'a str,
        datacontenttype: &'static str,
        #[serde(flatten)]
        extensions: std::collections::BTreeMap<&'static str, String>,
        data: &'a RawValue,
    }
    let data: &RawValue = serde_json::from_str(event).map_err(|e| e.to_string())?;
    let c = context(&v, record.received_at);
    let ce = CloudEvent {
        specversion: "1.0",
        id: &c.id,
        source: &c.source,
        kind: &c.kind,
        subject: &c.subject,
        time: &c.time,
        datacontenttype: "application/json",
        extensions: extensions(&v).into_iter().collect(),
        data,
    };
    serde_json::to_string(&ce).map_err(|e| e.to_string())
}

/// Header values in the CloudEvents HTTP binding: printable ASCII as is, but `"`, `%` and
/// everything else percent-encoded as UTF-8.
pub(super) const HEADER_ESCAPE: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

pub(super) fn cloudevent_binary(
    event: &str,
    view: &str,
    record: &EventRecord,
) -> Result<Rendered, String> {
    let v = parsed(view)?;
    let c = context(&v, record.received_at);
    let header = |name: &str, value: &str| {
        (
            name.to_string(),
            percent_encoding::utf8_percent_encode(value, HEADER_ESCAPE).to_string(),
        )
    };
    let mut headers = vec![
        header("ce-specversion", "1.0"),
        header("ce-id", &c.id),
        header("ce-source", &c.source),
        header("ce-type", &c.kind),
        header("ce-subject", &c.subject),
        header("ce-time", &c.time),
    ];
    for (name, value) in extensions(&v) {
        headers.push(header(&format!("ce-{name}"), &value));
    }
    Ok(Rendered {
        body: event.to_string(),
        content_type: Some("application/json"),
        headers,
        body_is_event: true,
    })
}
