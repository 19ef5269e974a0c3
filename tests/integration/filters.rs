//! Per-webhook filters and payload formats, through the API and over the wire.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn push_tagged(id: &str, tag: &str) -> Vec<u8> {
    String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .unwrap()
        .replace("2045f19c-7a89-451b-8ea6-bfb7cac6a943", id)
        .replace("\"tag\": \"1.0\"", &format!("\"tag\": \"{tag}\""))
        .into_bytes()
}

#[tokio::test]
async fn filters_and_formats_are_validated_and_shown() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api("POST", "/namespaces/acme/webhooks", Some(json!({"name": "f", "url": "example.org", "filters": {"tags": ["v*"]}, "format": "cloudevents"})))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["filters"]["tags"], json!(["v*"]));
    assert_eq!(
        r.body["filters"]["actions"],
        json!(["push", "delete"]),
        "defaults fill the rest"
    );
    assert_eq!(r.body["filters"]["media"], "manifests");
    assert_eq!(r.body["format"], "cloudevents");
    for (body, field) in [
        (
            json!({"name": "x", "url": "example.org", "format": "xml"}),
            "format",
        ),
        (
            json!({"name": "x", "url": "example.org", "filters": {"tags": [""]}}),
            "filters.tags",
        ),
        (
            json!({"name": "x", "url": "example.org", "format": "template"}),
            "template",
        ),
        (
            json!({"name": "x", "url": "example.org", "format": "template", "template": "{{ tag }"}),
            "template",
        ),
    ] {
        let r = app
            .api("POST", "/namespaces/acme/webhooks", Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    let bad = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "x", "url": "example.org", "filters": {"actions": ["replicate"]}})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let bad = app.api("POST", "/namespaces/acme/webhooks", Some(json!({"name": "x", "url": "example.org", "format": "template", "template": "a\n{{ tag }"}))).await;
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{:?}",
        bad.body
    );
}

#[tokio::test]
async fn only_webhooks_whose_filters_match_get_a_delivery() {
    let app = spawn_app().await;
    let all = Receiver::start().await;
    let releases = Receiver::start().await;
    let blobs = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook("acme", json!({"name": "all", "url": all.url("/")}))
        .await;
    app.enabled_webhook("acme", json!({"name": "v", "url": releases.url("/"), "filters": {"tags": ["v*"], "repositories": ["web"]}})).await;
    app.enabled_webhook("acme", json!({"name": "blobs", "url": blobs.url("/"), "filters": {"actions": ["push"], "media": "all", "tags": ["nothing"], "match_untagged": true}})).await;

    let r = app
        .post_envelope(push_tagged("11111111-0000-0000-0000-000000000000", "1.0"))
        .await;
    assert_eq!(
        r.body["deliveries"], 1,
        "a 1.0 push goes only to the unfiltered webhook"
    );
    let r = app
        .post_envelope(push_tagged("22222222-0000-0000-0000-000000000000", "v2.0"))
        .await;
    assert_eq!(r.body["deliveries"], 2);
    // Deliveries are concurrent: the order of arrival is not fixed.
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..2 {
        tags.push(
            all.next().await.json()["target"]["tag"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    tags.sort();
    assert_eq!(tags, ["1.0", "v2.0"]);
    assert!(releases.next().await.body.contains("\"v2.0\""));
    let r = app
        .post_envelope(fixture("distribution-2.8.2/push-layer-blob.json"))
        .await;
    assert_eq!(
        r.body["deliveries"], 1,
        "media=all takes the untagged blob push"
    );
    assert!(blobs.next().await.body.contains("octet-stream"));
    all.assert_quiet(Duration::from_millis(200)).await;
    releases.assert_quiet(Duration::from_millis(10)).await;
    blobs.assert_quiet(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn each_format_reaches_the_receiver_in_its_shape() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let mut receivers = Vec::new();
    for (format, extra) in [
        ("registry-envelope", json!({})),
        ("cloudevents", json!({})),
        ("slack", json!({"request_method": "POST"})),
        (
            "template",
            json!({"template": "{{ actor or 'someone' }} {{ action }} {{ repository }}:{{ tag }}"}),
        ),
    ] {
        let rx = Receiver::start().await;
        let mut body = json!({"name": format, "url": rx.url("/"), "format": format});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.enabled_webhook("acme", body).await;
        receivers.push((format, rx));
    }
    let form_rx = Receiver::start().await;
    app.enabled_webhook("acme", json!({"name": "form", "url": form_rx.url("/"), "format": "slack", "content_type": "application/x-www-form-urlencoded"})).await;
    app.post_envelope(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .await;
    for (format, rx) in &receivers {
        let got = rx.next().await;
        match *format {
            "registry-envelope" => assert_eq!(
                got.json()["events"][0]["id"],
                "2045f19c-7a89-451b-8ea6-bfb7cac6a943"
            ),
            "cloudevents" => {
                assert_eq!(
                    got.header("content-type"),
                    Some("application/cloudevents+json")
                );
                let ce: Value = got.json();
                assert_eq!(ce["specversion"], "1.0");
                assert_eq!(ce["subject"], "acme/web:1.0");
                assert_eq!(ce["data"]["target"]["tag"], "1.0");
            }
            "slack" => assert!(got.json()["text"]
                .as_str()
                .unwrap()
                .starts_with("someone pushed acme/web:1.0 (sha256:7a6c8d182783")),
            _ => assert_eq!(got.body, "someone push acme/web:1.0"),
        }
    }
    let got = form_rx.next().await;
    let (key, value) = url::form_urlencoded::parse(got.body.as_bytes())
        .next()
        .unwrap();
    assert_eq!(key, "payload");
    assert!(serde_json::from_str::<Value>(&value).unwrap()["text"].is_string());
}
