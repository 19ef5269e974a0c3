//! Payload formats: the body a webhook receives, in the shape its receiver speaks.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::hooks::templates::TemplateSandbox;
use crate::hooks::types::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The single event object exactly as the registry sent it (Portus parity).
    #[default]
    RegistryEvent,
    /// `{"events":[event]}`: the registry's own envelope, for receivers written for it.
    RegistryEnvelope,
    /// A CloudEvents 1.0 structured-mode JSON event.
    Cloudevents,
    /// A chat message for Slack, Mattermost and Rocket.Chat incoming webhooks.
    Slack,
    /// A user's minijinja template.
    Template,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegistryEvent => "registry-event",
            Self::RegistryEnvelope => "registry-envelope",
            Self::Cloudevents => "cloudevents",
            Self::Slack => "slack",
            Self::Template => "template",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        serde_json::from_value(Value::String(s.to_string())).map_err(|_| {
            Invalid::new(
                "format",
                format!("format must be registry-event, registry-envelope, cloudevents, slack or template, not '{s}'"),
            )
        })
    }
}

/// A rendered body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    /// A content type the format requires (CloudEvents), over the webhook's JSON default.
    pub content_type: Option<&'static str>,
    /// True when the body is the event exactly as received.
    pub body_is_event: bool,
}

/// Renders `event` (the raw JSON object) in `format`; templates run in the sandbox. Never
/// panics; an `Err` says why the body could not be made (a template's error, a limit hit).
pub async fn render(
    format: Format,
    template: Option<&str>,
    event: &str,
    sandbox: &TemplateSandbox,
) -> Result<Rendered, String> {
    match (format, template) {
        (Format::Template, Some(src)) => sandbox.render(src, event).await.map(|body| Rendered {
            body,
            content_type: None,
            body_is_event: false,
        }),
        (Format::Template, None) => {
            Err("the webhook's format is template but it has no template".into())
        }
        (format, _) => render_builtin(format, event),
    }
}

/// The formats Herald writes itself, rendered in this process.
pub fn render_builtin(format: Format, event: &str) -> Result<Rendered, String> {
    let plain = |body: String| Rendered {
        body,
        content_type: None,
        body_is_event: false,
    };
    match format {
        Format::RegistryEvent => Ok(Rendered {
            body: event.to_string(),
            content_type: None,
            body_is_event: true,
        }),
        Format::RegistryEnvelope => Ok(plain(format!("{{\"events\":[{event}]}}"))),
        Format::Cloudevents => cloudevent(event).map(|body| Rendered {
            body,
            content_type: Some("application/cloudevents+json"),
            body_is_event: false,
        }),
        Format::Slack => slack(event).map(plain),
        Format::Template => Err("a template is rendered in the sandbox".into()),
    }
}

fn parsed(event: &str) -> Result<Value, String> {
    serde_json::from_str(event).map_err(|e| format!("the event is not JSON: {e}"))
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `repository:tag`, else `repository@digest`, else the repository.
fn subject(v: &Value) -> String {
    let repo = text(v, "/target/repository").unwrap_or("");
    match (text(v, "/target/tag"), text(v, "/target/digest")) {
        (Some(tag), _) => format!("{repo}:{tag}"),
        (None, Some(digest)) => format!("{repo}@{digest}"),
        _ => repo.to_string(),
    }
}

fn cloudevent(event: &str) -> Result<String, String> {
    let v = parsed(event)?;
    #[derive(Serialize)]
    struct CloudEvent<'a> {
        specversion: &'static str,
        id: &'a str,
        source: String,
        #[serde(rename = "type")]
        kind: String,
        subject: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        time: Option<&'a str>,
        datacontenttype: &'static str,
        data: &'a RawValue,
    }
    let data: &RawValue = serde_json::from_str(event).map_err(|e| e.to_string())?;
    let origin = text(&v, "/source/addr")
        .or_else(|| text(&v, "/request/host"))
        .unwrap_or("unknown");
    let ce = CloudEvent {
        specversion: "1.0",
        id: text(&v, "/id").unwrap_or(""),
        source: format!("/herald/registry/{origin}"),
        kind: format!(
            "io.herald.registry.{}",
            text(&v, "/action").unwrap_or("unknown")
        ),
        subject: subject(&v),
        time: text(&v, "/timestamp"),
        datacontenttype: "application/json",
        data,
    };
    serde_json::to_string(&ce).map_err(|e| e.to_string())
}

/// `sha256:7a6c8d182783…`: enough to recognise, short enough to read.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => format!("{algo}:{}…", &hex[..12]),
        _ => digest.to_string(),
    }
}

fn slack(event: &str) -> Result<String, String> {
    let v = parsed(event)?;
    let actor = text(&v, "/actor/name").unwrap_or("someone");
    let verb = match text(&v, "/action").unwrap_or("") {
        "push" => "pushed",
        "delete" => "deleted",
        "pull" => "pulled",
        "mount" => "mounted",
        "ping" => "pinged",
        other => other,
    };
    let repo = text(&v, "/target/repository").unwrap_or("");
    let what = match text(&v, "/target/tag") {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo.to_string(),
    };
    let digest = text(&v, "/target/digest").map(short_digest);
    let line = match &digest {
        Some(d) => format!("{actor} {verb} {what} ({d})"),
        None => format!("{actor} {verb} {what}"),
    };
    let mut context = Vec::new();
    if let Some(d) = &digest {
        context.push(format!("digest `{d}`"));
    }
    if let Some(addr) = text(&v, "/source/addr") {
        context.push(format!("registry {addr}"));
    }
    context.push("via Herald".to_string());
    let message = serde_json::json!({
        "text": line,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{actor}* {verb} `{what}`")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}
        ]
    });
    Ok(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fixture: &str) -> String {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        crate::registry::envelope::split_envelope(&bytes).unwrap()[0]
            .get()
            .to_string()
    }

    #[test]
    fn registry_event_and_envelope_keep_the_bytes() {
        let e = event("distribution-2.8.2/push-manifest-tagged.json");
        let r = render_builtin(Format::RegistryEvent, &e).unwrap();
        assert_eq!(r.body, e);
        assert!(r.body_is_event);
        let r = render_builtin(Format::RegistryEnvelope, &e).unwrap();
        assert_eq!(r.body, format!("{{\"events\":[{e}]}}"));
        let parsed: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            parsed["events"][0]["id"],
            "2045f19c-7a89-451b-8ea6-bfb7cac6a943"
        );
    }

    #[test]
    fn cloudevents_structured_json() {
        let e = event("distribution-2.8.2/push-manifest-tagged.json");
        let r = render_builtin(Format::Cloudevents, &e).unwrap();
        assert_eq!(r.content_type, Some("application/cloudevents+json"));
        let ce: Value = serde_json::from_str(&r.body).unwrap();
        let expected: Value = serde_json::json!({
            "specversion": "1.0",
            "id": "2045f19c-7a89-451b-8ea6-bfb7cac6a943",
            "source": "/herald/registry/vm:5001",
            "type": "io.herald.registry.push",
            "subject": "acme/web:1.0",
            "time": "2026-11-26T21:23:36.976557958Z",
            "datacontenttype": "application/json",
            "data": serde_json::from_str::<Value>(&e).unwrap(),
        });
        assert_eq!(ce, expected);
        let d = render_builtin(
            Format::Cloudevents,
            &event("distribution-2.8.2/delete-manifest-digest.json"),
        )
        .unwrap();
        let ce: Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(
            ce["subject"],
            "acme/web@sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31"
        );
        assert_eq!(ce["type"], "io.herald.registry.delete");
    }

    #[test]
    fn slack_message() {
        let r = render_builtin(
            Format::Slack,
            &event("distribution-2.8.2/push-manifest-with-actor-and-references.json"),
        )
        .unwrap();
        let m: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            m["text"],
            "alice pushed alice/tool:v2 (sha256:7a6c8d182783…)"
        );
        assert_eq!(
            m["blocks"][0]["text"]["text"],
            "*alice* pushed `alice/tool:v2`"
        );
        assert_eq!(
            m["blocks"][1]["elements"][0]["text"],
            "digest `sha256:7a6c8d182783…` · registry vm:5001 · via Herald"
        );
        let anon =
            render_builtin(Format::Slack, &event("distribution-2.8.2/delete-tag.json")).unwrap();
        let m: Value = serde_json::from_str(&anon.body).unwrap();
        assert_eq!(m["text"], "someone deleted acme/web:1.0");
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!(Format::parse("cloudevents").unwrap(), Format::Cloudevents);
        assert_eq!(
            Format::parse("registry-envelope").unwrap(),
            Format::RegistryEnvelope
        );
        assert_eq!(Format::parse("xml").unwrap_err().field, "format");
    }
}
