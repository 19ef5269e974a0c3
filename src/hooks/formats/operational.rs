//! Operational events (`webhook.disabled`, ...) in every format: the payload as it is for
//! the verbatim formats, CloudEvents with Herald's own type, and one short line for the
//! chat services, escaped for each like registry text.

use serde_json::Value;

use super::chat::{
    clip, clip_markup, entities, markdown, DISCORD_CONTENT_MAX, GOOGLE_CHAT_TEXT_MAX,
    MATTERMOST_TEXT_MAX, SLACK_TEXT_MAX, TEAMS_TEXT_MAX,
};
use super::cloudevents::HEADER_ESCAPE;
use super::view::{parsed, text};
use super::{Format, Rendered};
use crate::domain::operational::headline;

/// What one field of the payload may take of a line (webhook names have at most 100
/// characters; details are Herald's, but carry a receiver's error text).
const FIELD_MAX: usize = 300;

/// The line a chat message says, unescaped, and the detail under it.
fn line_and_detail(v: &Value) -> (String, String) {
    let field = |pointer: &str| {
        let flat: String = text(v, pointer)
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        clip(&flat, FIELD_MAX)
    };
    let line = headline(
        &field("/type"),
        &field("/namespace"),
        &field("/webhook/name"),
        v.pointer("/delivery/id").and_then(Value::as_i64),
    );
    (line, field("/detail"))
}

pub(super) fn render(format: Format, event: &str) -> Result<Rendered, String> {
    let v = parsed(event)?;
    let (line, detail) = line_and_detail(&v);
    let chat = |escape: fn(&str) -> String, max: usize| {
        clip_markup(&format!("{}: {}", escape(&line), escape(&detail)), max)
    };
    let plain = |body: Value| Ok(Rendered::plain(body.to_string()));
    match format {
        Format::RegistryEvent => Ok(Rendered {
            body_is_event: true,
            ..Rendered::plain(event.to_string())
        }),
        Format::Template => Err("a template is rendered in the sandbox".into()),
        Format::RegistryEnvelope => Ok(Rendered::plain(format!("{{\"events\":[{event}]}}"))),
        Format::Cloudevents | Format::CloudeventsBinary => cloudevent(format, event, &v),
        Format::Slack => plain(serde_json::json!({
            "text": chat(entities, SLACK_TEXT_MAX),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": chat(entities, SLACK_TEXT_MAX)}}]
        })),
        Format::Teams => plain(serde_json::json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": clip_markup(&markdown(&line), TEAMS_TEXT_MAX), "wrap": true, "size": "Medium"},
                        {"type": "TextBlock", "text": clip_markup(&markdown(&detail), TEAMS_TEXT_MAX), "wrap": true},
                        {"type": "TextBlock", "text": "via Herald", "isSubtle": true, "size": "Small", "wrap": true}
                    ]
                }
            }]
        })),
        Format::Discord => plain(serde_json::json!({
            "content": chat(markdown, DISCORD_CONTENT_MAX),
            "allowed_mentions": {"parse": []},
        })),
        Format::Mattermost => {
            plain(serde_json::json!({ "text": chat(markdown, MATTERMOST_TEXT_MAX) }))
        }
        Format::GoogleChat => {
            plain(serde_json::json!({ "text": chat(entities, GOOGLE_CHAT_TEXT_MAX) }))
        }
        // Ingest never gives them one; a retrigger after a change of format lands here.
        Format::Flux
        | Format::Keel
        | Format::GithubDispatch
        | Format::GitlabTrigger
        | Format::Dockerhub => Err(format!(
            "the {} format triggers deploys; Herald's own events are never sent to it",
            format.as_str()
        )),
    }
}

/// CloudEvents of type `io.herald.<kind>` from source `/herald`, about the webhook.
fn cloudevent(format: Format, event: &str, v: &Value) -> Result<Rendered, String> {
    let id = text(v, "/id").unwrap_or("");
    let kind = format!("io.herald.{}", text(v, "/type").unwrap_or("unknown"));
    let subject = format!(
        "{}/webhooks/{}",
        text(v, "/namespace").unwrap_or(""),
        v.pointer("/webhook/id")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    );
    let time = text(v, "/timestamp").unwrap_or("").to_string();
    if format == Format::CloudeventsBinary {
        let header = |name: &str, value: &str| {
            (
                name.to_string(),
                percent_encoding::utf8_percent_encode(value, HEADER_ESCAPE).to_string(),
            )
        };
        return Ok(Rendered {
            body: event.to_string(),
            content_type: Some("application/json"),
            headers: vec![
                header("ce-specversion", "1.0"),
                header("ce-id", id),
                header("ce-source", "/herald"),
                header("ce-type", &kind),
                header("ce-subject", &subject),
                header("ce-time", &time),
            ],
            body_is_event: true,
        });
    }
    let body = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "/herald",
        "type": kind,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": v,
    });
    Ok(Rendered {
        content_type: Some("application/cloudevents+json"),
        ..Rendered::plain(body.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::EventRecord;

    const EVENT: &str = r#"{"id":"herald-op-abc","type":"delivery.exhausted","timestamp":"2026-12-02T06:00:00.000Z","namespace":"acme","webhook":{"id":3,"name":"deploy <!channel> @everyone","host":"ci.example.org"},"detail":"the delivery failed for good after 3 attempts; the last: the receiver answered 500","delivery":{"id":7,"attempts":3,"last_status":500,"last_error":"the receiver answered 500","event":{"id":"e1","action":"push","repository":"acme/web","tag":"1.0"}}}"#;

    fn record() -> EventRecord {
        EventRecord {
            action: "delivery.exhausted".into(),
            ..EventRecord::default()
        }
    }

    fn body(format: Format) -> Value {
        let r = super::super::render_builtin(format, EVENT, &record()).unwrap();
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn chat_formats_say_it_in_one_escaped_line() {
        let slack = body(Format::Slack);
        assert_eq!(
            slack["text"],
            "delivery 7 to webhook 'deploy &lt;!channel&gt; @everyone' in acme failed for good: \
             the delivery failed for good after 3 attempts; the last: the receiver answered 500"
        );
        let md = "deploy \\<\\!channel\\> @\u{200B}everyone";
        let discord = body(Format::Discord);
        assert!(
            discord["content"].as_str().unwrap().contains(md),
            "{discord}"
        );
        assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
        let teams = body(Format::Teams);
        let card = &teams["attachments"][0]["content"];
        assert!(card["body"][0]["text"].as_str().unwrap().contains(md));
        assert!(card["body"][1]["text"].as_str().unwrap().contains("500"));
        for f in [Format::Mattermost, Format::GoogleChat] {
            let text = body(f)["text"].as_str().unwrap().to_string();
            assert!(text.starts_with("delivery 7 to webhook"), "{f:?}: {text}");
            assert!(!text.contains("<!channel>"), "{f:?}: {text}");
        }
    }

    #[test]
    fn verbatim_and_cloudevents_carry_the_payload() {
        let r = super::super::render_builtin(Format::RegistryEvent, EVENT, &record()).unwrap();
        assert_eq!(r.body, EVENT);
        let payload: Value = serde_json::from_str(EVENT).unwrap();
        assert_eq!(body(Format::RegistryEnvelope)["events"][0], payload);
        let ce = super::super::render_builtin(Format::Cloudevents, EVENT, &record()).unwrap();
        assert_eq!(ce.content_type, Some("application/cloudevents+json"));
        let ce: Value = serde_json::from_str(&ce.body).unwrap();
        assert_eq!(ce["type"], "io.herald.delivery.exhausted");
        assert_eq!(ce["source"], "/herald");
        assert_eq!(ce["subject"], "acme/webhooks/3");
        assert_eq!(ce["id"], "herald-op-abc");
        assert_eq!(ce["time"], "2026-12-02T06:00:00.000Z");
        assert_eq!(ce["data"], payload);
        let bin =
            super::super::render_builtin(Format::CloudeventsBinary, EVENT, &record()).unwrap();
        assert_eq!(bin.body, EVENT);
        assert!(bin
            .headers
            .contains(&("ce-type".into(), "io.herald.delivery.exhausted".into())));
    }

    #[test]
    fn templates_see_the_payload() {
        let view = super::super::view(EVENT, &record());
        let out = crate::hooks::templates::render_here(
            "{{ action }} {{ namespace }} {{ event.webhook.name }} {{ event.delivery.id }}",
            &view,
        )
        .unwrap();
        assert_eq!(out, "delivery.exhausted acme deploy <!channel> @everyone 7");
    }
}
