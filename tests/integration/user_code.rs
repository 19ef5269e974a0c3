//! What users configure (filter patterns, templates) and what registries send (odd events)
//! must never stall ingest, crash Herald, or fail a delivery later for being odd.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn push(id: &str, repository: &str, tag: &str) -> Vec<u8> {
    String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .unwrap()
        .replace("2045f19c-7a89-451b-8ea6-bfb7cac6a943", id)
        .replace("\"acme/web\"", &format!("\"{repository}\""))
        .replace("\"tag\": \"1.0\"", &format!("\"tag\": \"{tag}\""))
        .into_bytes()
}

/// Globs that took the old backtracking matcher exponential time, inside ingest on the
/// writer: every namespace's ingest stopped. Now the envelope is answered at once.
#[tokio::test]
async fn pathological_filter_patterns_do_not_stall_ingest() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("mallory").await;
    app.create_namespace("acme").await;
    let stars = format!("{}x", "**".repeat(99));
    let tags = format!("{}b", "*a".repeat(99));
    app.enabled_webhook(
        "mallory",
        json!({"name": "bomb", "url": rx.url("/mallory"),
               "filters": {"repositories": vec![stars; 50], "tags": vec![tags; 50]}}),
    )
    .await;
    let fine = app
        .enabled_webhook("acme", json!({"name": "ok", "url": rx.url("/acme")}))
        .await;
    let mallory_repo = format!("mallory/{}", "a".repeat(60));
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        app.post_envelope(push("e-1", &mallory_repo, &"a".repeat(60))),
    )
    .await
    .expect("ingest answers while a pathological pattern is configured");
    assert_eq!(answered.status, 200, "{:?}", answered.body);
    assert_eq!(answered.body["deliveries"], 0, "the patterns do not match");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        app.post_envelope(push("e-2", "acme/web", "1.0")),
    )
    .await
    .expect("other namespaces' ingest is unaffected");
    assert_eq!(r.status, 200);
    assert_eq!(rx.next().await.path, "/acme");
    app.wait_deliveries("acme", fine, |d| d[0]["state"] == "succeeded")
        .await;
}

/// The 56-byte template that allocated until the process aborted is refused when saved;
/// one that only explodes on a particular event fails that delivery, not Herald.
#[tokio::test]
async fn template_bombs_are_refused_or_fail_alone() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let bomb = r#"{% for i in range(100) %}{{ "x" * 100000000 }}{% endfor %}"#;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "b", "url": rx.url("/b"), "format": "template", "template": bomb})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["field"], "template");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("262144 bytes"),
        "{:?}",
        r.body
    );

    // Doubling a string passes the sample push (tag 1.0) but not a tag "boom".
    let delayed = r#"{% if tag == "boom" %}{% set a = "0123456789abcdef" * 1000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{% set g = f ~ f %}{{ g | length }}{% endif %}{"tag": "{{ tag }}"}"#;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "d", "url": rx.url("/d"), "request_method": "POST", "format": "template", "template": delayed}),
        )
        .await;
    assert_eq!(
        app.post_envelope(push("b-1", "acme/web", "boom"))
            .await
            .status,
        200
    );
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "failed")
        .await;
    let error = items[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("memory"), "{error}");

    // Herald is alive, and the same webhook still delivers other events.
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
    assert_eq!(
        app.post_envelope(push("b-2", "acme/web", "v2"))
            .await
            .status,
        200
    );
    let got = rx.next().await;
    assert_eq!(got.path, "/d");
    assert_eq!(got.json(), json!({"tag": "v2"}));
}

/// Mistakes that compile but fail at every delivery are refused when saved, with the line.
#[tokio::test]
async fn templates_are_tried_on_a_sample_event_when_saved() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    for (template, expected) in [
        ("{\"e\": {{ event | tojson }}}", "unknown"),
        ("first\n{% include 'x' %}", "line 2"),
        ("{{ range(1000000) | list }}", "too many"),
    ] {
        let r = app
            .api(
                "POST",
                "/namespaces/acme/webhooks",
                Some(json!({"name": "t", "url": "example.org", "format": "template", "template": template})),
            )
            .await;
        assert_eq!(r.status, 422, "{template}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "template");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{template}: {message}");
    }
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "plain", "url": "example.org"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_i64().unwrap();
    let path = format!("/namespaces/acme/webhooks/{id}");
    let r = app
        .api("PATCH", &path, Some(json!({"format": "template"})))
        .await;
    assert_eq!(
        r.status, 422,
        "a template format needs a template: {:?}",
        r.body
    );
    assert_eq!(r.body["error"]["field"], "template");
    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"template": "{{ tag | nope }}"})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"format": "template", "template": "{\"t\": \"{{ tag }}\"}"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .api("PATCH", &path, Some(json!({"template": null})))
        .await;
    assert_eq!(
        r.status, 422,
        "clearing the template of a template webhook: {:?}",
        r.body
    );
    let shown = app.api("GET", &path, None).await.body;
    assert_eq!(
        shown["template"], "{\"t\": \"{{ tag }}\"}",
        "nothing was half-written"
    );
}

/// Events that serde_json's value type cannot hold were acknowledged, then failed at once in
/// every format but the verbatim one. They are now ignored at ingest with the reason, and
/// keep their id, so the registry's retry is recognised.
#[tokio::test]
async fn odd_events_are_ignored_at_ingest_with_the_reason() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    for format in ["cloudevents", "slack", "registry-event"] {
        app.enabled_webhook(
            "acme",
            json!({"name": format, "url": rx.url(&format!("/{format}")), "format": format}),
        )
        .await;
    }
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let envelope = format!(
        r#"{{"events":[
        {{"id":"big","action":"push","target":{{"repository":"acme/web","tag":"1","mediaType":"application/vnd.oci.image.manifest.v1+json"}},"n":1e999}},
        {{"id":"deep","action":"push","target":{{"repository":"acme/web","tag":"1","mediaType":"application/vnd.oci.image.manifest.v1+json"}},"n":{deep}}},
        {{"id":"surrogate","action":"push","target":{{"repository":"acme/web","tag":"\ud800","mediaType":"application/vnd.oci.image.manifest.v1+json"}}}}
        ]}}"#
    );
    let r = app.post_envelope(envelope.clone().into_bytes()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ignored"], 3, "{:?}", r.body);
    assert_eq!(r.body["deliveries"], 0);
    let again = app.post_envelope(envelope.into_bytes()).await;
    assert_eq!(again.body["duplicates"], 3, "{:?}", again.body);
    let events = app.api("GET", "/events", None).await.body;
    for e in events["items"].as_array().unwrap() {
        assert_eq!(e["status"], "ignored", "{e}");
        assert!(
            e["reason"].as_str().unwrap().contains("no payload format"),
            "{e}"
        );
    }
    rx.assert_quiet(Duration::from_millis(300)).await;
}
