//! What receivers, SDKs and validators written by others accept: every check here is made
//! with their libraries (the official Standard Webhooks crate, the CloudEvents SDK, Python's
//! openapi-spec-validator, prometheus_client and rfc3986), never with Herald's own code.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

fn push(id: &str, mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut envelope: Value =
        serde_json::from_slice(&fixture("distribution-2.8.2/push-manifest-tagged.json")).unwrap();
    let event = &mut envelope["events"][0];
    event["id"] = json!(id);
    mutate(event);
    serde_json::to_vec(&envelope).unwrap()
}

/// Runs a check written in Python with the named packages, feeding it `input` on stdin;
/// false when skipped (`require` says when).
pub(crate) fn python_check(modules: &[&str], script: &str, input: &str) -> bool {
    let probe = Command::new("python3")
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .stderr(Stdio::null())
        .status();
    let found = match probe {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!(
            "python3 with {modules:?} (pip install {})",
            modules.join(" ")
        )),
    };
    if crate::require::require("a Python conformance check", found).is_none() {
        return false;
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Creates a webhook and returns its id and signing secret.
async fn webhook(app: &TestApp, body: Value) -> (i64, String) {
    let r = app
        .api("POST", "/namespaces/acme/webhooks", Some(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{body}: {:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let secret = r.body["signing_secret"].as_str().unwrap().to_string();
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    (id, secret)
}

fn verify(secret: &str, got: &Captured) {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    wh.verify(got.body.as_bytes(), &got.headers)
        .unwrap_or_else(|e| panic!("{} {}: {e}", got.method, got.path));
}

#[tokio::test]
async fn signatures_verify_with_the_standard_webhooks_library() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let template = r#"{"image": "{{ repository }}:{{ tag }}"}"#;
    let mut hooks = Vec::new();
    for format in [
        "registry-event",
        "registry-envelope",
        "cloudevents",
        "cloudevents-binary",
        "slack",
        "template",
    ] {
        for method in ["GET", "POST"] {
            for content_type in ["application/json", "application/x-www-form-urlencoded"] {
                let path = format!("/{format}/{method}/{}", content_type.len());
                let body = json!({"name": path.replace('/', "-"), "url": rx.url(&path), "format": format,
                    "template": template, "request_method": method, "content_type": content_type});
                let r = app
                    .api("POST", "/namespaces/acme/webhooks", Some(body.clone()))
                    .await;
                let cloudevents = format.starts_with("cloudevents");
                let refused = (method == "GET" && (cloudevents || format == "slack"))
                    || (cloudevents && content_type.contains("form"));
                if refused {
                    assert_eq!(r.status, 422, "{body}: {:?}", r.body);
                    continue;
                }
                assert_eq!(r.status, 201, "{body}: {:?}", r.body);
                let id = r.body["id"].as_i64().unwrap();
                app.api(
                    "PATCH",
                    &format!("/namespaces/acme/webhooks/{id}"),
                    Some(json!({"enabled": true})),
                )
                .await;
                hooks.push((path, r.body["signing_secret"].as_str().unwrap().to_string()));
            }
        }
    }
    assert_eq!(app.post_envelope(push("sig-1", |_| {})).await.status, 200);
    for _ in 0..hooks.len() {
        let got = rx.next().await;
        let secret = &hooks.iter().find(|(p, _)| *p == got.path).unwrap().1;
        verify(secret, &got);
    }
}

/// During a rotation's overlap every request verifies with the old and the new secret, and
/// a second rotation, which would drop the original at once, is refused.
#[tokio::test]
async fn rotation_overlap_signs_with_both_secrets() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let (id, old) = webhook(&app, json!({"name": "r", "url": rx.url("/r")})).await;
    let path = format!("/namespaces/acme/webhooks/{id}/rotate-secret");
    let r = app.api("POST", &path, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new = r.body["signing_secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    app.post_envelope(push("rot-1", |_| {})).await;
    let got = rx.next().await;
    verify(&old, &got);
    verify(&new, &got);
    let again = app.api("POST", &path, None).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(again.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("rotate again after"));
    app.post_envelope(push("rot-2", |_| {})).await;
    verify(&old, &rx.next().await);
}

#[tokio::test]
async fn cloudevents_parse_with_the_sdk_in_both_modes() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    // No method given: CloudEvents default to POST.
    let (structured, _) = webhook(
        &app,
        json!({"name": "s", "url": rx.url("/structured"), "format": "cloudevents"}),
    )
    .await;
    webhook(
        &app,
        json!({"name": "b", "url": rx.url("/binary"), "format": "cloudevents-binary"}),
    )
    .await;
    let shown = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{structured}"),
            None,
        )
        .await;
    assert_eq!(shown.body["request_method"], "POST");
    // What broke other SDKs: a timestamp without a zone, an IPv6 address with a space.
    let envelope = push("ce-1", |e| {
        e["timestamp"] = json!("2026-11-26 21:23:36");
        e["source"]["addr"] = json!("[::1]:5000 x");
    });
    assert_eq!(app.post_envelope(envelope.clone()).await.status, 200);
    let original: Value = serde_json::from_slice::<Value>(&envelope).unwrap()["events"][0].clone();
    let mut sources = Vec::new();
    for _ in 0..2 {
        let got = rx.next().await;
        assert_eq!(got.method, "POST");
        let event =
            cloudevents::binding::http::to_event(&got.headers, got.body.clone().into_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}: {}", got.path, got.body));
        use cloudevents::AttributesReader;
        assert_eq!(event.id(), "ce-1", "{}", got.path);
        assert_eq!(event.ty(), "io.herald.registry.push");
        assert_eq!(event.subject(), Some("acme/web:1.0"));
        assert_eq!(
            event.time().map(|t| t.to_rfc3339()),
            Some("2026-11-26T21:23:36+00:00".to_string())
        );
        let data: Value = match event.data() {
            Some(cloudevents::Data::Json(v)) => v.clone(),
            Some(cloudevents::Data::Binary(b)) => serde_json::from_slice(b).unwrap(),
            other => panic!("{}: data {other:?}", got.path),
        };
        assert_eq!(data, original, "{}", got.path);
        sources.push(event.source().clone());
    }
    assert_eq!(sources[0], sources[1]);
    python_check(
        &["rfc3986"],
        "import sys, rfc3986\n\
         for s in sys.stdin.read().split('\\n'):\n\
         \x20   assert rfc3986.uri_reference(s).is_valid(), s",
        &sources.join("\n"),
    );
}

/// CloudEvents receivers that protect themselves as "HTTP 1.1 Web Hooks for Event Delivery"
/// (section 4) says, Azure Event Grid's among them, get an `OPTIONS` with
/// `WebHook-Request-Origin` first and are delivered to only if they allow that origin; the
/// permission is remembered. Receivers that do not take part are delivered to as before,
/// and other formats are never asked.
#[tokio::test]
async fn cloudevents_receivers_are_asked_first_and_their_answer_is_respected() {
    let app = spawn_app_with(&["--public-url", "https://herald.example.org"]).await;
    app.create_namespace("acme").await;
    let (allows, refuses, other, plain) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    allows.validation(Validation::Allow("herald.example.org".into()));
    refuses.validation(Validation::Refuse);
    other.validation(Validation::Allow("someone-else.example".into()));
    let (a, _) = webhook(
        &app,
        json!({"name": "a", "url": allows.url("/"), "format": "cloudevents"}),
    )
    .await;
    let (r, _) = webhook(
        &app,
        json!({"name": "r", "url": refuses.url("/"), "format": "cloudevents-binary"}),
    )
    .await;
    let (o, _) = webhook(
        &app,
        json!({"name": "o", "url": other.url("/"), "format": "cloudevents"}),
    )
    .await;
    webhook(
        &app,
        json!({"name": "p", "url": plain.url("/"), "request_method": "POST"}),
    )
    .await;
    let push = |id: &str| {
        String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
            .unwrap()
            .replace("2045f19c", id)
            .into_bytes()
    };
    app.post_envelope(push("0000aaa1")).await;
    assert_eq!(allows.next().await.method, "POST");
    assert_eq!(allows.validations(), ["herald.example.org"]);
    plain.next().await;
    assert!(
        plain.validations().is_empty(),
        "only CloudEvents receivers are asked"
    );
    for (id, rx, name) in [(r, &refuses, "refused"), (o, &other, "another origin")] {
        let items = app
            .wait_deliveries("acme", id, |d| d[0]["state"] == "failed")
            .await;
        let error = items[0]["last_error"].as_str().unwrap();
        assert!(error.contains("herald.example.org"), "{name}: {error}");
        assert!(!rx.validations().is_empty(), "{name}: asked");
        rx.assert_quiet(std::time::Duration::from_millis(50)).await;
    }
    // A receiver that starts allowing Herald gets the retriggered delivery.
    refuses.validation(Validation::Allow("*".into()));
    let delivery = app
        .wait_deliveries("acme", r, |d| d[0]["state"] == "failed")
        .await[0]["id"]
        .as_i64()
        .unwrap();
    let retrigger = app
        .api(
            "POST",
            &format!("/namespaces/acme/webhooks/{r}/deliveries/{delivery}/retrigger"),
            None,
        )
        .await;
    assert_eq!(retrigger.body["state"], "succeeded", "{:?}", retrigger.body);
    assert_eq!(refuses.next().await.method, "POST");
    // Allowed once, remembered: the next event is not asked again.
    app.post_envelope(push("0000aaa2")).await;
    allows.next().await;
    assert_eq!(allows.validations().len(), 1);
    let _ = (a, o);
}

#[tokio::test]
async fn formats_that_need_post_refuse_get_and_form() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    for (body, field) in [
        (
            json!({"name": "a", "url": "example.org", "format": "slack", "request_method": "GET"}),
            "request_method",
        ),
        (
            json!({"name": "a", "url": "example.org", "format": "cloudevents", "request_method": "GET"}),
            "request_method",
        ),
        (
            json!({"name": "a", "url": "example.org", "format": "cloudevents", "content_type": "application/x-www-form-urlencoded"}),
            "content_type",
        ),
    ] {
        let r = app
            .api("POST", "/namespaces/acme/webhooks", Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    for format in ["teams", "discord", "mattermost", "google-chat"] {
        let get =
            json!({"name": "a", "url": "example.org", "format": format, "request_method": "GET"});
        let r = app
            .api("POST", "/namespaces/acme/webhooks", Some(get))
            .await;
        assert_eq!(r.status, 422, "{format}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "request_method");
        let form = json!({"name": format, "url": "example.org", "format": format,
            "content_type": "application/x-www-form-urlencoded"});
        let r = app
            .api("POST", "/namespaces/acme/webhooks", Some(form))
            .await;
        // Mattermost reads `payload=` forms as Slack does; the others only JSON.
        if format == "mattermost" {
            assert_eq!(r.status, 201, "{format}: {:?}", r.body);
        } else {
            assert_eq!(r.status, 422, "{format}: {:?}", r.body);
            assert_eq!(r.body["error"]["field"], "content_type");
        }
    }
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "plain", "url": "example.org"})),
        )
        .await;
    assert_eq!(r.body["request_method"], "GET", "the Portus default stays");
    let path = format!("/namespaces/acme/webhooks/{}", r.body["id"]);
    let r = app
        .api("PATCH", &path, Some(json!({"format": "slack"})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["request_method"], "POST",
        "moved to POST with the format"
    );
    let r = app
        .api("PATCH", &path, Some(json!({"request_method": "GET"})))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}

/// Slack's Block Kit: a text object in a section or context holds at most 3,000
/// characters, and `&`, `<`, `>` in mrkdwn must be escaped (`<!channel>` pings everyone,
/// `<url|text>` is a link).
#[tokio::test]
async fn slack_messages_escape_registry_text_and_keep_block_kit_limits() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    webhook(
        &app,
        json!({"name": "chat", "url": rx.url("/slack"), "format": "slack"}),
    )
    .await;
    let evil = "<!channel> & <https://evil.example|click>";
    let long = "x".repeat(5000);
    app.post_envelope(push("sl-1", |e| e["actor"] = json!({"name": evil})))
        .await;
    app.post_envelope(push("sl-2", |e| e["actor"] = json!({"name": long})))
        .await;
    for _ in 0..2 {
        let got = rx.next().await;
        assert_eq!(got.method, "POST");
        let m = got.json();
        let mut texts = vec![m["text"].as_str().unwrap().to_string()];
        for block in m["blocks"].as_array().unwrap() {
            let text = match block["type"].as_str().unwrap() {
                "section" => block["text"]["text"].as_str().unwrap(),
                "context" => block["elements"][0]["text"].as_str().unwrap(),
                other => panic!("unexpected block {other}"),
            };
            assert!(text.chars().count() <= 3000, "{} characters", text.len());
            texts.push(text.to_string());
        }
        for t in &texts {
            assert!(!t.contains('<') && !t.contains('>'), "unescaped: {t}");
            assert!(!t.contains("& "), "a bare ampersand in mrkdwn: {t}");
        }
        if texts[1].contains("channel") {
            assert!(texts[1].contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
        } else {
            assert!(
                texts[1].contains('…'),
                "a long name is cut with an ellipsis"
            );
        }
    }
}

/// True when every `c` of `chars` in `text` is backslash-escaped (CommonMark's escape, which
/// Adaptive Cards, Discord and Mattermost read).
fn all_escaped(text: &str, chars: &str) -> bool {
    let mut backslashes = 0;
    for c in text.chars() {
        if chars.contains(c) && backslashes % 2 == 0 {
            return false;
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
    }
    true
}

/// No mention a service knows in `text`, written out: `@everyone`, `@here`, `@channel`,
/// `@all` (Discord, Mattermost), in any case.
fn no_mentions(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["@everyone", "@here", "@channel", "@all"]
        .iter()
        .all(|m| !lower.contains(m))
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// Microsoft Teams: a `message` whose one attachment is an Adaptive Card (version 1.4 or
/// lower for Teams), with TextBlocks and FactSets; a message is at most 28 KB.
fn check_teams(body: &str, m: &Value) -> Vec<String> {
    assert!(
        body.len() <= 28 * 1024,
        "a Teams message holds 28 KB, this {}",
        body.len()
    );
    assert_eq!(m["type"], "message");
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    let a = &attachments[0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    assert!(a.get("contentUrl").is_some_and(Value::is_null));
    let card = &a["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["version"], "1.4");
    let mut texts = Vec::new();
    for element in card["body"].as_array().unwrap() {
        match element["type"].as_str().unwrap() {
            "TextBlock" => texts.push(element["text"].as_str().unwrap().to_string()),
            "FactSet" => {
                for fact in element["facts"].as_array().unwrap() {
                    assert!(fact["title"].is_string());
                    texts.push(fact["value"].as_str().unwrap().to_string());
                }
            }
            other => panic!("unexpected card element {other}"),
        }
    }
    texts
}

/// Discord's execute-webhook body: `content` at most 2,000 characters, at most 10 embeds,
/// each with a title of 256, a description of 4,096, at most 25 fields (name 256, value
/// 1,024), a footer of 2,048, an ISO 8601 timestamp and 6,000 characters of text in all;
/// `allowed_mentions.parse` empty so nothing pings.
fn check_discord(m: &Value) -> Vec<String> {
    for key in m.as_object().unwrap().keys() {
        assert!(
            [
                "content",
                "username",
                "avatar_url",
                "tts",
                "embeds",
                "allowed_mentions"
            ]
            .contains(&key.as_str()),
            "Discord does not know {key}"
        );
    }
    assert_eq!(m["allowed_mentions"], json!({"parse": []}));
    assert!(chars(&m["content"]) <= 2000);
    let mut texts = vec![m["content"].as_str().unwrap().to_string()];
    let embeds = m["embeds"].as_array().unwrap();
    assert!(embeds.len() <= 10);
    let mut total = 0;
    for e in embeds {
        assert!(chars(&e["title"]) <= 256);
        assert!(chars(&e["description"]) <= 4096);
        assert!(chars(&e["footer"]["text"]) <= 2048);
        assert!(chars(&e["author"]["name"]) <= 256);
        total += chars(&e["title"]) + chars(&e["description"]) + chars(&e["footer"]["text"]);
        total += chars(&e["author"]["name"]);
        if let Some(t) = e["timestamp"].as_str() {
            chrono::DateTime::parse_from_rfc3339(t).unwrap();
        }
        let fields = e["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        for f in fields {
            assert!((1..=256).contains(&chars(&f["name"])));
            assert!((1..=1024).contains(&chars(&f["value"])));
            total += chars(&f["name"]) + chars(&f["value"]);
            texts.push(f["value"].as_str().unwrap().to_string());
        }
        texts.push(e["title"].as_str().unwrap().to_string());
    }
    assert!(
        total <= 6000,
        "an embed holds 6,000 characters, these {total}"
    );
    texts
}

/// Mattermost's incoming webhook: `text` in markdown, at most 16,383 characters.
fn check_mattermost(m: &Value) -> Vec<String> {
    assert!(chars(&m["text"]) <= 16383);
    vec![m["text"].as_str().unwrap().to_string()]
}

/// Google Chat's incoming webhook: `text` of at most 4,096 characters, where `<users/all>`
/// is a mention, so `<`, `>` and `&` must come as entities.
fn check_google_chat(m: &Value) -> Vec<String> {
    assert!(chars(&m["text"]) <= 4096);
    let text = m["text"].as_str().unwrap();
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    for (i, _) in text.match_indices('&') {
        let rest = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "a bare ampersand: {text}"
        );
    }
    vec![text.to_string()]
}

/// Each chat format reaches a receiver as its service documents it, with a hostile actor
/// defused and a huge one cut to every limit.
#[tokio::test]
async fn chat_formats_keep_each_services_schema_and_limits() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let formats = ["teams", "discord", "mattermost", "google-chat"];
    for format in formats {
        let (id, _) = webhook(
            &app,
            json!({"name": format, "url": rx.url(&format!("/{format}")), "format": format}),
        )
        .await;
        let shown = app
            .api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
            .await;
        assert_eq!(shown.body["request_method"], "POST", "{format}");
    }
    let evil = "<!channel> @everyone @channel & <https://evil.example|x>";
    let long = "x".repeat(5000);
    for (id, name) in [("chat-evil", evil), ("chat-long", long.as_str())] {
        let r = app
            .post_envelope(push(id, |e| e["actor"] = json!({ "name": name })))
            .await;
        assert_eq!(r.status, 200);
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..formats.len() * 2 {
        let got = rx.next().await;
        assert_eq!(got.method, "POST");
        assert_eq!(got.header("content-type"), Some("application/json"));
        let m = got.json();
        let texts = match got.path.as_str() {
            "/teams" => check_teams(&got.body, &m),
            "/discord" => check_discord(&m),
            "/mattermost" => check_mattermost(&m),
            "/google-chat" => check_google_chat(&m),
            other => panic!("unexpected path {other}"),
        };
        *seen.entry(got.path.clone()).or_default() += 1;
        let all = texts.join("\n");
        if all.contains("channel") {
            if got.path != "/google-chat" {
                for t in &texts {
                    assert!(
                        all_escaped(t, "<>&[]|!"),
                        "{}: unescaped markdown: {t}",
                        got.path
                    );
                }
            }
            if got.path != "/google-chat" {
                assert!(no_mentions(&all), "{}: a live mention: {all}", got.path);
            }
        } else {
            assert!(
                all.contains("xxx…"),
                "{}: a long name is cut with an ellipsis",
                got.path
            );
        }
    }
    assert!(seen.values().all(|&n| n == 2), "{seen:?}");
}

/// Receivers deduplicate on `webhook-id`: a new message must never reuse one, even after the
/// deliveries that had the highest ids were deleted.
#[tokio::test]
async fn delivery_ids_never_repeat_after_deletes() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let (first, _) = webhook(&app, json!({"name": "a", "url": rx.url("/a")})).await;
    app.post_envelope(push("id-1", |_| {})).await;
    let seen = rx.next().await.header("webhook-id").unwrap().to_string();
    let r = app
        .api(
            "DELETE",
            &format!("/namespaces/acme/webhooks/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    webhook(&app, json!({"name": "b", "url": rx.url("/a")})).await;
    app.post_envelope(push("id-2", |_| {})).await;
    let got = rx.next().await;
    assert_ne!(got.header("webhook-id").unwrap(), seen);
    assert_ne!(
        got.header("x-herald-delivery").unwrap(),
        seen.trim_start_matches("msg_")
    );
}

#[tokio::test]
async fn template_output_that_is_not_json_is_sent_as_text() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    webhook(
        &app,
        json!({"name": "t", "url": rx.url("/t"), "format": "template", "template": "pushed {{ repository }}:{{ tag }}"}),
    )
    .await;
    webhook(
        &app,
        json!({"name": "j", "url": rx.url("/j"), "format": "template", "template": "{\"r\": \"{{ repository }}\"}"}),
    )
    .await;
    app.post_envelope(push("tpl-1", |_| {})).await;
    for _ in 0..2 {
        let got = rx.next().await;
        let ct = got.header("content-type").unwrap().to_string();
        match got.path.as_str() {
            "/t" => assert!(ct.starts_with("text/plain"), "{ct}"),
            _ => assert_eq!(ct, "application/json"),
        }
    }
}

#[tokio::test]
async fn pings_name_their_repository_and_are_audited() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let (id, _) = webhook(&app, json!({"name": "p", "url": rx.url("/p")})).await;
    let r = app
        .api(
            "POST",
            &format!("/namespaces/acme/webhooks/{id}/ping"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["event"]["repository"], "acme/herald-ping");
    assert_eq!(rx.next().await.json()["action"], "ping");
    let trail = app.api("GET", "/activities?namespace=acme", None).await;
    assert!(
        trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "webhook.ping" && a["webhook_id"] == id),
        "{:?}",
        trail.body
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/v2/webhooks/events"))
        .header("authorization", format!("bearer {}", app.registry_token))
        .header("content-type", "application/json")
        .body(r#"{"events":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("authorization", format!("BEARER {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_openapi_document_validates() {
    let app = spawn_app().await;
    let doc = app
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .body;
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "{method} {path}: operationId {id:?} again"
            );
        }
    }
    let ingest = &doc["paths"]["/v2/webhooks/events"]["post"]["requestBody"]["content"];
    for media in [
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    ] {
        assert!(ingest.get(media).is_some(), "ingest does not list {media}");
    }
    python_check(
        &["openapi_spec_validator"],
        "import sys, json\n\
         from openapi_spec_validator import validate\n\
         validate(json.load(sys.stdin))",
        &doc.to_string(),
    );
}

/// Every API operation that takes a JSON body answers malformed JSON with 400 and another
/// content type with 415, and the document says so; `/metrics` lists both of its formats.
#[tokio::test]
async fn the_openapi_document_lists_the_answers_json_bodies_get() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let doc = app
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .body;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            if op["requestBody"]["content"]
                .get("application/json")
                .is_none()
            {
                continue;
            }
            for code in ["400", "415"] {
                assert!(
                    op["responses"].get(code).is_some(),
                    "{method} {path} does not document {code}"
                );
            }
            let url = app.url(
                &path
                    .replace("{ns}", "acme")
                    .replace("{id}", "1")
                    .replace("{team}", "t")
                    .replace("{user}", "admin")
                    .replace("{name}", "x")
                    .replace("{delivery}", "1"),
            );
            for (content_type, body, want) in
                [("application/json", "{", 400), ("text/plain", "{}", 415)]
            {
                let r = app
                    .client
                    .request(method.to_uppercase().parse().unwrap(), &url)
                    .bearer_auth(&app.token)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status().as_u16(),
                    want,
                    "{method} {path} with {content_type} {body:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} operations take a JSON body");
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    for media in [
        "text/plain; version=0.0.4",
        "application/openmetrics-text; version=1.0.0",
    ] {
        assert!(
            metrics.get(media).is_some(),
            "/metrics does not list {media}"
        );
    }
}

#[tokio::test]
async fn metrics_parse_in_both_formats() {
    let app = spawn_app().await;
    // Random actions are counted together, not as a series each.
    let odd: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("odd-{i}"), "action": format!("random-{i}"), "target": {"repository": "acme/x"}}))
        .collect();
    app.post_envelope(serde_json::to_vec(&json!({ "events": odd })).unwrap())
        .await;
    let scrape = |accept: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .get(app.url("/metrics"))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            (ct, r.text().await.unwrap())
        }
    };
    let (classic_type, classic) = scrape("text/plain;version=0.0.4").await;
    assert!(
        classic_type.starts_with("text/plain; version=0.0.4"),
        "{classic_type}"
    );
    let (om_type, openmetrics) = scrape("application/openmetrics-text;version=1.0.0").await;
    assert!(
        om_type.starts_with("application/openmetrics-text"),
        "{om_type}"
    );
    assert!(openmetrics.contains("herald_events_received_total{action=\"other\"} 5"));
    assert!(!openmetrics.contains("random-"));
    python_check(
        &["prometheus_client"],
        "import sys\n\
         from prometheus_client.parser import text_string_to_metric_families\n\
         fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}\n\
         f = fams['herald_events_received']\n\
         assert f.type == 'counter', f.type\n\
         assert any(s.labels.get('action') == 'other' and s.value == 5 for s in f.samples), f.samples\n\
         assert fams['herald_delivery_attempt_duration_seconds'].type == 'histogram'",
        &classic,
    );
    python_check(
        &["prometheus_client"],
        "import sys\n\
         from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
         fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}\n\
         assert fams['herald_events_received'].type == 'counter'",
        &openmetrics,
    );
}

/// A retrigger by hand is recorded as an attempt, but it is not a step of the automatic
/// schedule: the next automatic attempt stays when it was, and the step after it is still
/// the next entry of the schedule.
#[tokio::test]
async fn a_manual_retrigger_does_not_advance_the_retry_schedule() {
    let app = spawn_app_with(&["--retry-schedule", "0s,1h,2h,3h"]).await;
    let rx = Receiver::start().await;
    rx.answer(500);
    app.create_namespace("acme").await;
    let (id, _) = webhook(&app, json!({"name": "r", "url": rx.url("/r")})).await;
    app.post_envelope(push("man-1", |_| {})).await;
    rx.next().await;
    let items = app
        .wait_deliveries("acme", id, |d| d[0]["state"] == "retrying")
        .await;
    let delivery = items[0]["id"].as_i64().unwrap();
    let scheduled = items[0]["next_attempt_at"].as_str().unwrap().to_string();
    for round in 2..4 {
        let r = app
            .api(
                "POST",
                &format!("/namespaces/acme/webhooks/{id}/deliveries/{delivery}/retrigger"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["attempt_count"], round);
        assert_eq!(r.body["state"], "retrying");
        assert_eq!(
            r.body["next_attempt_at"].as_str().unwrap(),
            scheduled,
            "the automatic schedule did not move"
        );
        assert_eq!(r.body["attempts"].as_array().unwrap().len() as i64, round);
    }
}
