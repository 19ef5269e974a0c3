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
    /// A CloudEvents 1.0 event in structured mode (`application/cloudevents+json`).
    Cloudevents,
    /// A CloudEvents 1.0 event in binary mode: `ce-*` headers, the registry event as body.
    CloudeventsBinary,
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
            Self::CloudeventsBinary => "cloudevents-binary",
            Self::Slack => "slack",
            Self::Template => "template",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        serde_json::from_value(Value::String(s.to_string())).map_err(|_| {
            Invalid::new(
                "format",
                format!("format must be registry-event, registry-envelope, cloudevents, cloudevents-binary, slack or template, not '{s}'"),
            )
        })
    }

    /// Why this format must be sent with POST, if it must: the CloudEvents HTTP webhook
    /// spec says so, and Slack's incoming webhooks take nothing else.
    pub fn needs_post(self) -> Option<&'static str> {
        match self {
            Self::Cloudevents | Self::CloudeventsBinary => {
                Some("CloudEvents over HTTP webhooks must be delivered with POST")
            }
            Self::Slack => Some("Slack incoming webhooks accept only POST"),
            _ => None,
        }
    }

    /// Why this format cannot be form-encoded, if it cannot: no CloudEvents SDK reads a
    /// CloudEvent from `payload=...` form data.
    pub fn refuses_form(self) -> Option<&'static str> {
        match self {
            Self::Cloudevents | Self::CloudeventsBinary => Some(
                "CloudEvents are sent as JSON; application/x-www-form-urlencoded is not a CloudEvents mode",
            ),
            _ => None,
        }
    }
}

/// A rendered body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    /// A content type the format requires (CloudEvents), over the webhook's JSON default.
    pub content_type: Option<&'static str>,
    /// Headers the format adds (CloudEvents binary mode's `ce-*`).
    pub headers: Vec<(String, String)>,
    /// True when the body is the event exactly as received.
    pub body_is_event: bool,
}

impl Rendered {
    fn plain(body: String) -> Self {
        Self {
            body,
            content_type: None,
            headers: Vec::new(),
            body_is_event: false,
        }
    }
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
        (Format::Template, Some(src)) => sandbox.render(src, event).await.map(|body| {
            // A body that is not JSON is not sent as JSON.
            let is_json = serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok();
            Rendered {
                content_type: (!is_json).then_some("text/plain; charset=utf-8"),
                ..Rendered::plain(body)
            }
        }),
        (Format::Template, None) => {
            Err("the webhook's format is template but it has no template".into())
        }
        (format, _) => render_builtin(format, event),
    }
}

/// The formats Herald writes itself, rendered in this process.
pub fn render_builtin(format: Format, event: &str) -> Result<Rendered, String> {
    match format {
        Format::RegistryEvent => Ok(Rendered {
            body_is_event: true,
            ..Rendered::plain(event.to_string())
        }),
        Format::RegistryEnvelope => Ok(Rendered::plain(format!("{{\"events\":[{event}]}}"))),
        Format::Cloudevents => cloudevent(event).map(|body| Rendered {
            content_type: Some("application/cloudevents+json"),
            ..Rendered::plain(body)
        }),
        Format::CloudeventsBinary => cloudevent_binary(event),
        Format::Slack => slack(event).map(Rendered::plain),
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

/// The CloudEvents context attributes Herald sets, in both modes.
struct Context {
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
fn source_segment(origin: &str) -> String {
    origin
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' | ':' => c,
            _ => '_',
        })
        .collect()
}

fn context(v: &Value) -> Context {
    let origin = text(v, "/source/addr")
        .or_else(|| text(v, "/request/host"))
        .unwrap_or("unknown");
    Context {
        id: text(v, "/id").unwrap_or("").to_string(),
        // Always a valid URI-reference, whatever the registry wrote in its address.
        source: format!("/herald/registry/{}", source_segment(origin)),
        kind: format!(
            "io.herald.registry.{}",
            text(v, "/action").unwrap_or("unknown")
        ),
        subject: subject(v),
        time: event_time(text(v, "/timestamp")),
    }
}

/// The event's time as RFC 3339 with a zone, which CloudEvents requires: the registry's
/// timestamp when it can be read (with or without a zone), else the time of sending.
fn event_time(timestamp: Option<&str>) -> String {
    use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
    let parsed = timestamp.and_then(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
                    .map(|n| n.and_utc())
            })
    });
    parsed
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn cloudevent(event: &str) -> Result<String, String> {
    let v = parsed(event)?;
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
        data: &'a RawValue,
    }
    let data: &RawValue = serde_json::from_str(event).map_err(|e| e.to_string())?;
    let c = context(&v);
    let ce = CloudEvent {
        specversion: "1.0",
        id: &c.id,
        source: &c.source,
        kind: &c.kind,
        subject: &c.subject,
        time: &c.time,
        datacontenttype: "application/json",
        data,
    };
    serde_json::to_string(&ce).map_err(|e| e.to_string())
}

/// Header values in the CloudEvents HTTP binding: printable ASCII as is, but `"`, `%` and
/// everything else percent-encoded as UTF-8.
const HEADER_ESCAPE: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

fn cloudevent_binary(event: &str) -> Result<Rendered, String> {
    let c = context(&parsed(event)?);
    let header = |name: &str, value: &str| {
        (
            name.to_string(),
            percent_encoding::utf8_percent_encode(value, HEADER_ESCAPE).to_string(),
        )
    };
    Ok(Rendered {
        body: event.to_string(),
        content_type: Some("application/json"),
        headers: vec![
            header("ce-specversion", "1.0"),
            header("ce-id", &c.id),
            header("ce-source", &c.source),
            header("ce-type", &c.kind),
            header("ce-subject", &c.subject),
            header("ce-time", &c.time),
        ],
        body_is_event: true,
    })
}

/// `sha256:7a6c8d182783…`: enough to recognise, short enough to read.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.chars().count() > 12 => {
            format!("{algo}:{}…", hex.chars().take(12).collect::<String>())
        }
        _ => digest.to_string(),
    }
}

/// Registry text inside Slack mrkdwn: `&`, `<` and `>` are control characters there (`<!channel>`
/// pings everyone, `<url|text>` is a link), so they are escaped as Slack documents.
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, the last an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Block Kit's limit on a text object in a section or a context element.
const SLACK_TEXT_MAX: usize = 3000;
/// What one registry-supplied field may take of a message, so that even fully escaped
/// (`&` is five characters) the section stays within [`SLACK_TEXT_MAX`] and no escape is
/// cut. Repository names can be 255 characters long, tags 128.
fn slack_field_max(pointer: &str) -> usize {
    match pointer {
        "/target/repository" => 250,
        "/target/tag" => 128,
        _ => 150,
    }
}

fn slack(event: &str) -> Result<String, String> {
    let v = parsed(event)?;
    let field = |pointer: &str| text(&v, pointer).map(|t| clip(t, slack_field_max(pointer)));
    let actor = field("/actor/name").unwrap_or_else(|| "someone".into());
    let action = field("/action").unwrap_or_default();
    let verb = match action.as_str() {
        "push" => "pushed",
        "delete" => "deleted",
        "pull" => "pulled",
        "mount" => "mounted",
        "ping" => "pinged",
        other => other,
    };
    let repo = field("/target/repository").unwrap_or_default();
    let what = match field("/target/tag") {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo,
    };
    let digest = field("/target/digest").map(|d| short_digest(&d));
    let line = match &digest {
        Some(d) => format!("{actor} {verb} {what} ({d})"),
        None => format!("{actor} {verb} {what}"),
    };
    let mut context = Vec::new();
    if let Some(d) = &digest {
        context.push(format!("digest `{}`", mrkdwn(d)));
    }
    if let Some(addr) = field("/source/addr") {
        context.push(format!("registry {}", mrkdwn(&addr)));
    }
    context.push("via Herald".to_string());
    let section = format!("*{}* {} `{}`", mrkdwn(&actor), mrkdwn(verb), mrkdwn(&what));
    let message = serde_json::json!({
        "text": clip(&mrkdwn(&line), SLACK_TEXT_MAX),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": clip(&section, SLACK_TEXT_MAX)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&context.join(" · "), SLACK_TEXT_MAX)}]}
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
