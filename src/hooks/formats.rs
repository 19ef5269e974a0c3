//! Payload formats: the body a webhook receives, in the shape its receiver speaks.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::hooks::types::Invalid;

/// Work a template may do per delivery (minijinja "fuel"): generous for real templates,
/// a stop for endless loops.
const TEMPLATE_FUEL: u64 = 100_000;
/// The largest body a template may produce.
const TEMPLATE_MAX_OUTPUT: usize = 256 * 1024;
const TEMPLATE_MAX_SOURCE: usize = 64 * 1024;

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

/// Compiles a template to report mistakes when it is saved, with line numbers.
pub fn validate_template(src: &str) -> Result<(), Invalid> {
    if src.len() > TEMPLATE_MAX_SOURCE {
        return Err(Invalid::new(
            "template",
            format!("a template has at most {TEMPLATE_MAX_SOURCE} bytes"),
        ));
    }
    let env = template_env();
    env.template_from_str(src).map(|_| ()).map_err(|e| {
        let line = e.line().map(|l| format!("line {l}: ")).unwrap_or_default();
        Invalid::new(
            "template",
            format!("{line}{}", e.detail().unwrap_or(&e.to_string())),
        )
    })
}

fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// Renders `event` (the raw JSON object) in `format`. Never panics; an `Err` says why the
/// body could not be made (a template's runtime error, a limit hit).
pub fn render(format: Format, template: Option<&str>, event: &str) -> Result<Rendered, String> {
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
        Format::Template => {
            let src = template.ok_or("the webhook's format is template but it has no template")?;
            render_template(src, event).map(plain)
        }
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

fn render_template(src: &str, event: &str) -> Result<String, String> {
    let v = parsed(event)?;
    let env = template_env();
    let template = env
        .template_from_str(src)
        .map_err(|e| format!("the template does not compile: {e}"))?;
    let repository = text(&v, "/target/repository").unwrap_or("").to_string();
    let namespace = repository
        .split_once('/')
        .map(|(n, _)| n.to_string())
        .unwrap_or_default();
    let ctx = minijinja::context! {
        event => minijinja::Value::from_serialize(&v),
        action => text(&v, "/action"),
        repository => repository,
        namespace => namespace,
        tag => text(&v, "/target/tag"),
        digest => text(&v, "/target/digest"),
        actor => text(&v, "/actor/name"),
    };
    let out = template
        .render(ctx)
        .map_err(|e| format!("the template failed: {e}"))?;
    if out.len() > TEMPLATE_MAX_OUTPUT {
        return Err(format!(
            "the template produced more than {TEMPLATE_MAX_OUTPUT} bytes"
        ));
    }
    Ok(out)
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
        let r = render(Format::RegistryEvent, None, &e).unwrap();
        assert_eq!(r.body, e);
        assert!(r.body_is_event);
        let r = render(Format::RegistryEnvelope, None, &e).unwrap();
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
        let r = render(Format::Cloudevents, None, &e).unwrap();
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
        let d = render(
            Format::Cloudevents,
            None,
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
        let r = render(
            Format::Slack,
            None,
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
        let anon = render(
            Format::Slack,
            None,
            &event("distribution-2.8.2/delete-tag.json"),
        )
        .unwrap();
        let m: Value = serde_json::from_str(&anon.body).unwrap();
        assert_eq!(m["text"], "someone deleted acme/web:1.0");
    }

    #[test]
    fn templates_render_and_fail_safely() {
        let e = event("distribution-2.8.2/push-manifest-tagged.json");
        let src = r#"{"repo": "{{ repository }}", "ns": "{{ namespace }}", "tag": "{{ tag }}", "by": "{{ event.request.useragent }}"}"#;
        assert!(validate_template(src).is_ok());
        let r = render(Format::Template, Some(src), &e).unwrap();
        assert_eq!(
            r.body,
            r#"{"repo": "acme/web", "ns": "acme", "tag": "1.0", "by": "skopeo/1.9.3"}"#
        );
        let err = validate_template("ok\n{{ tag }\nmore").unwrap_err();
        assert_eq!(err.field, "template");
        assert!(err.message.starts_with("line 2"), "{}", err.message);
        let endless =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        assert!(render(Format::Template, Some(endless), &e)
            .unwrap_err()
            .contains("template failed"));
        let runtime = "{{ event.target.tag | nosuchfilter }}";
        assert!(render(Format::Template, Some(runtime), &e).is_err());
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
