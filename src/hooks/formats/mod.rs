//! Payload formats: the body a webhook receives, in the shape its receiver speaks. The
//! CloudEvents modes live in `cloudevents.rs`, the chat services in `chat.rs`, the deploy
//! tools in `deploy.rs`, and Herald's own operational events in every format in
//! `operational.rs`.

mod chat;
mod cloudevents;
mod deploy;
mod operational;
mod view;

use chat::{discord, google_chat, mattermost, slack, teams};
use cloudevents::{cloudevent, cloudevent_binary};
use view::view;

use crate::domain::delivery::EventRecord;
use crate::domain::deploy::FormatOptions;
use crate::domain::format::Format;
use crate::hooks::templates::TemplateSandbox;

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

/// Renders `event` (the raw JSON object) in `format`, with the webhook's format options;
/// templates run in the sandbox. Never panics; an `Err` says why the body could not be
/// made (a template's error, a limit hit, an event a deploy format does not trigger on).
pub async fn render(
    format: Format,
    options: &FormatOptions,
    template: Option<&str>,
    event: &str,
    record: &EventRecord,
    sandbox: &TemplateSandbox,
) -> Result<Rendered, String> {
    let rendered = match (format, template) {
        (Format::Template, Some(src)) => {
            sandbox.render(src, &view(event, record)).await.map(|body| {
                // A body that is not JSON is not sent as JSON.
                let is_json = serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok();
                Rendered {
                    content_type: (!is_json).then_some("text/plain; charset=utf-8"),
                    ..Rendered::plain(body)
                }
            })
        }
        (Format::Template, None) => {
            Err("the webhook's format is template but it has no template".into())
        }
        (format, _) => render_with(format, options, event, record),
    };
    // Every delivery of a made-up event says so, whatever its format.
    rendered.map(|mut r| {
        if let Some(why) = &record.synthesized {
            r.headers
                .push(("X-Herald-Synthesized".into(), header_text(why)));
        }
        r
    })
}

/// Text as a header value: printable ASCII, anything else `?`.
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(500)
        .collect()
}

/// The formats Herald writes itself, rendered in this process, with no format options.
pub fn render_builtin(
    format: Format,
    event: &str,
    record: &EventRecord,
) -> Result<Rendered, String> {
    render_with(format, &FormatOptions::default(), event, record)
}

/// The formats Herald writes itself, with the webhook's format options.
pub fn render_with(
    format: Format,
    options: &FormatOptions,
    event: &str,
    record: &EventRecord,
) -> Result<Rendered, String> {
    // The verbatim formats (the default among them) send the payload as it is: only the
    // others read it, so only they pay for parsing it into a view.
    if is_operational(record) {
        return operational::render(format, event);
    }
    let view = || view(event, record);
    match format {
        Format::RegistryEvent => Ok(Rendered {
            body_is_event: true,
            ..Rendered::plain(event.to_string())
        }),
        Format::RegistryEnvelope => Ok(Rendered::plain(format!("{{\"events\":[{event}]}}"))),
        Format::Cloudevents => cloudevent(event, &view(), record).map(|body| Rendered {
            content_type: Some("application/cloudevents+json"),
            ..Rendered::plain(body)
        }),
        Format::CloudeventsBinary => cloudevent_binary(event, &view(), record),
        Format::Slack => slack(&view()).map(Rendered::plain),
        Format::Teams => teams(&view()).map(Rendered::plain),
        Format::Discord => discord(&view()).map(Rendered::plain),
        Format::Mattermost => mattermost(&view()).map(Rendered::plain),
        Format::GoogleChat => google_chat(&view()).map(Rendered::plain),
        Format::Template => Err("a template is rendered in the sandbox".into()),
        Format::Flux
        | Format::Keel
        | Format::GithubDispatch
        | Format::GitlabTrigger
        | Format::Dockerhub => deploy::render(format, options, &view(), record),
    }
}

/// Whether the event is one of Herald's own (`webhook.disabled`, ...): no registry event
/// that gets a delivery has such an action.
fn is_operational(record: &EventRecord) -> bool {
    crate::domain::events::Action::parse_operational(&record.action).is_some()
}

#[cfg(test)]
mod tests {
    use super::chat::*;
    use super::*;
    use serde_json::Value;

    pub(super) fn event(fixture: &str) -> String {
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
        let r = render_builtin(Format::RegistryEvent, &e, &EventRecord::default()).unwrap();
        assert_eq!(r.body, e);
        assert!(r.body_is_event);
        let r = render_builtin(Format::RegistryEnvelope, &e, &EventRecord::default()).unwrap();
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
        let r = render_builtin(Format::Cloudevents, &e, &EventRecord::default()).unwrap();
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
            &EventRecord::default(),
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
            &EventRecord::default(),
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
        let anon = render_builtin(
            Format::Slack,
            &event("distribution-2.8.2/delete-tag.json"),
            &EventRecord::default(),
        )
        .unwrap();
        let m: Value = serde_json::from_str(&anon.body).unwrap();
        assert_eq!(m["text"], "someone deleted acme/web:1.0");
    }

    const WITH_ACTOR: &str = "distribution-2.8.2/push-manifest-with-actor-and-references.json";
    const DELETE_DIGEST: &str = "distribution-2.8.2/delete-manifest-digest.json";
    const DELETE_TAG: &str = "distribution-2.8.2/delete-tag.json";

    fn rendered(format: Format, fixture: &str) -> Value {
        let r = render_builtin(format, &event(fixture), &EventRecord::default()).unwrap();
        assert_eq!(
            r.content_type, None,
            "{format:?} is sent as the webhook's JSON"
        );
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn teams_adaptive_card() {
        let m = rendered(Format::Teams, WITH_ACTOR);
        assert_eq!(m["type"], "message");
        let a = &m["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["contentUrl"], Value::Null);
        let card = &a["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(
            card["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        assert_eq!(card["body"][0]["text"], "**alice** pushed alice/tool:v2");
        let facts: Vec<(String, String)> = card["body"][1]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["title"].as_str().unwrap().into(),
                    f["value"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            facts,
            [
                ("Repository", "alice/tool"),
                ("Tag", "v2"),
                (
                    "Digest",
                    "sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31"
                ),
                ("Actor", "alice"),
                ("Registry", "vm:5001"),
            ]
            .map(|(t, v)| (t.to_string(), v.to_string()))
        );
        let d = rendered(Format::Teams, DELETE_DIGEST);
        let body = &d["attachments"][0]["content"]["body"];
        assert_eq!(body[0]["text"], "**someone** deleted acme/web");
        assert!(body[1]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["title"] != "Tag"));
        let t = rendered(Format::Teams, DELETE_TAG);
        assert_eq!(
            t["attachments"][0]["content"]["body"][0]["text"],
            "**someone** deleted acme/web:1.0"
        );
    }

    #[test]
    fn discord_message_pings_no_one() {
        let m = rendered(Format::Discord, WITH_ACTOR);
        assert_eq!(m["content"], "**alice** pushed alice/tool:v2");
        assert_eq!(m["allowed_mentions"], serde_json::json!({"parse": []}));
        let embed = &m["embeds"][0];
        assert_eq!(embed["title"], "alice/tool:v2");
        assert_eq!(embed["timestamp"], "2026-11-26T21:38:19.918574769Z");
        assert_eq!(embed["footer"]["text"], "vm:5001 · via Herald");
        let names: Vec<&str> = embed["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Repository", "Tag", "Digest"]);
        assert_eq!(
            embed["fields"][2]["value"],
            "sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31"
        );
        let d = rendered(Format::Discord, DELETE_DIGEST);
        assert_eq!(d["content"], "**someone** deleted acme/web");
        assert_eq!(d["embeds"][0]["fields"].as_array().unwrap().len(), 2);
        let t = rendered(Format::Discord, DELETE_TAG);
        assert_eq!(t["embeds"][0]["title"], "acme/web:1.0");
    }

    #[test]
    fn mattermost_post() {
        let m = rendered(Format::Mattermost, WITH_ACTOR);
        assert_eq!(
            m["text"],
            "**alice** pushed alice/tool:v2\ndigest sha256:7a6c8d182783… · registry vm:5001 · via Herald"
        );
        let d = rendered(Format::Mattermost, DELETE_DIGEST);
        assert!(d["text"]
            .as_str()
            .unwrap()
            .starts_with("**someone** deleted acme/web\ndigest sha256:7a6c8d182783…"));
        let t = rendered(Format::Mattermost, DELETE_TAG);
        assert_eq!(
            t["text"],
            "**someone** deleted acme/web:1.0\nregistry vm:5001 · via Herald"
        );
    }

    #[test]
    fn google_chat_message() {
        let m = rendered(Format::GoogleChat, WITH_ACTOR);
        assert_eq!(
            m["text"],
            "*alice* pushed alice/tool:v2\ndigest sha256:7a6c8d182783… · registry vm:5001 · via Herald"
        );
        let d = rendered(Format::GoogleChat, DELETE_DIGEST);
        assert!(d["text"]
            .as_str()
            .unwrap()
            .starts_with("*someone* deleted acme/web\n"));
        let t = rendered(Format::GoogleChat, DELETE_TAG);
        assert!(t["text"]
            .as_str()
            .unwrap()
            .starts_with("*someone* deleted acme/web:1.0\n"));
    }

    #[test]
    fn registry_text_is_escaped_for_each_service() {
        let evil = "<!channel> @everyone @channel & <https://evil.example|x>\n- list";
        let mut v: Value = serde_json::from_str(&event(WITH_ACTOR)).unwrap();
        v["actor"]["name"] = Value::String(evil.into());
        let e = v.to_string();
        let body = |f| render_builtin(f, &e, &EventRecord::default()).unwrap().body;
        let md = "\\<\\!channel\\> @\u{200B}everyone @\u{200B}channel \\& \\<https://evil.example\\|x\\> - list";
        let teams: Value = serde_json::from_str(&body(Format::Teams)).unwrap();
        assert_eq!(
            teams["attachments"][0]["content"]["body"][0]["text"],
            format!("**{md}** pushed alice/tool:v2")
        );
        let discord: Value = serde_json::from_str(&body(Format::Discord)).unwrap();
        assert_eq!(discord["content"], format!("**{md}** pushed alice/tool:v2"));
        let mm: Value = serde_json::from_str(&body(Format::Mattermost)).unwrap();
        assert!(mm["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("**{md}** pushed")));
        let gc: Value = serde_json::from_str(&body(Format::GoogleChat)).unwrap();
        assert!(gc["text"].as_str().unwrap().starts_with(
            "*&lt;!channel&gt; @everyone @channel &amp; &lt;https://evil.example|x&gt; - list* pushed"
        ));
    }

    /// U+202E and the other bidi controls would make a name read backwards in a chat
    /// client: every chat format shows U+FFFD in their place.
    #[test]
    fn bidi_controls_in_registry_text_are_shown_not_obeyed() {
        let mut v: Value = serde_json::from_str(&event(WITH_ACTOR)).unwrap();
        v["actor"]["name"] = Value::String("mallory\u{202E}gpj.exe\u{2066}x\u{200F}".into());
        v["target"]["repository"] = Value::String("alice/\u{202B}tool".into());
        let e = v.to_string();
        for format in [
            Format::Slack,
            Format::Teams,
            Format::Discord,
            Format::Mattermost,
            Format::GoogleChat,
        ] {
            let body = render_builtin(format, &e, &EventRecord::default())
                .unwrap()
                .body;
            // Decoded, so that an escaped `\u202e` in the JSON counts too.
            let all = serde_json::from_str::<Value>(&body).unwrap().to_string();
            for c in ['\u{202E}', '\u{2066}', '\u{200F}', '\u{202B}'] {
                assert!(!all.contains(c), "{format:?} kept {c:?}: {all}");
            }
            assert!(all.contains("gpj.exe"), "{format:?}: {all}");
            assert!(all.contains('\u{FFFD}'), "{format:?}: {all}");
        }
    }

    #[test]
    fn cuts_never_split_an_escape() {
        assert_eq!(clip_markup("ab&amp;cd", 5), "ab…");
        assert_eq!(clip_markup("ab&amp;cd", 8), "ab&amp;…");
        assert_eq!(clip_markup(r"ab\*cd", 4), "ab…");
        assert_eq!(clip_markup(r"ab\\cd", 5), r"ab\\…");
        assert_eq!(clip_markup("short", 5), "short");
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!(Format::parse("cloudevents").unwrap(), Format::Cloudevents);
        assert_eq!(
            Format::parse("registry-envelope").unwrap(),
            Format::RegistryEnvelope
        );
        assert_eq!(Format::parse("google-chat").unwrap(), Format::GoogleChat);
        for f in [
            Format::Teams,
            Format::Discord,
            Format::Mattermost,
            Format::GoogleChat,
        ] {
            assert_eq!(Format::parse(f.as_str()).unwrap(), f);
            assert!(f.needs_post().is_some());
        }
        let err = Format::parse("xml").unwrap_err();
        assert_eq!(err.field, "format");
        assert!(err
            .message
            .contains("teams, discord, mattermost, google-chat"));
    }
}
