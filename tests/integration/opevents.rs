//! Operational events: Herald's own `webhook.disabled`, `webhook.recovered` and
//! `delivery.exhausted`, delivered once to the webhooks that ask for them, never to the
//! webhook they are about, and never about a delivery of one of them.

use std::time::Duration;

use herald::hooks::signing::{verify, SigningSecret};
use serde_json::{json, Value};

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";
const ALL_KINDS: [&str; 4] = [
    "webhook.disabled",
    "webhook.circuit_opened",
    "webhook.recovered",
    "delivery.exhausted",
];

/// A fresh push to `acme/web` with its own event id.
fn push(i: usize) -> Vec<u8> {
    String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("2045f19c", &format!("{i:08}"))
        .into_bytes()
}

/// A webhook subscribed to `kinds` (and no registry event), enabled; its id and secret.
async fn subscriber(
    app: &TestApp,
    ns: &str,
    name: &str,
    url: String,
    kinds: &[&str],
) -> (i64, String) {
    let r = app
        .api(
            "POST",
            &format!("/namespaces/{ns}/webhooks"),
            Some(json!({"name": name, "url": url, "request_method": "POST", "filters": {"actions": kinds}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let secret = r.body["signing_secret"].as_str().unwrap().to_string();
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/{ns}/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (id, secret)
}

fn signed_by(secret: &str, c: &Captured) -> bool {
    let secret = SigningSecret::parse(secret).unwrap();
    let ts: i64 = c.header("webhook-timestamp").unwrap().parse().unwrap();
    verify(
        secret.as_bytes(),
        c.header("webhook-id").unwrap(),
        ts,
        c.body.as_bytes(),
        c.header("webhook-signature").unwrap(),
    )
}

#[tokio::test]
async fn a_410_disables_the_webhook_and_the_subscribers_hear_it_once() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    app.create_namespace("other").await;
    let gone = Receiver::start().await;
    gone.answer(410);
    // The broken webhook asks for operational events too: it must never get its own.
    let mut actions = vec!["push", "delete"];
    actions.extend(ALL_KINDS);
    let broken = app
        .enabled_webhook("acme", json!({"name": "deploy <!channel>", "url": gone.url("/hook?token=s3cret"), "filters": {"actions": actions}}))
        .await;
    let ops = Receiver::start().await;
    let (ops_id, ops_secret) =
        subscriber(&app, "acme", "ops", ops.url("/ops"), &["webhook.disabled"]).await;
    let global = Receiver::start().await;
    subscriber(
        &app,
        "_global",
        "admins",
        global.url("/all"),
        &["webhook.disabled"],
    )
    .await;
    let elsewhere = Receiver::start().await;
    subscriber(&app, "other", "theirs", elsewhere.url("/"), &ALL_KINDS).await;
    // Default filters and "every action" are registry events only.
    let plain = Receiver::start().await;
    app.enabled_webhook("acme", json!({"name": "plain", "url": plain.url("/")}))
        .await;
    let every = Receiver::start().await;
    app.enabled_webhook(
        "acme",
        json!({"name": "every", "url": every.url("/"), "filters": {"actions": []}}),
    )
    .await;

    app.post_envelope(push(1)).await;
    assert_eq!(gone.next().await.json()["action"], "push");
    assert_eq!(plain.next().await.json()["action"], "push");
    assert_eq!(every.next().await.json()["action"], "push");

    let got = ops.next().await;
    assert!(signed_by(&ops_secret, &got), "signed like any delivery");
    let event = got.json();
    assert_eq!(event["type"], "webhook.disabled");
    assert_eq!(event["namespace"], "acme");
    assert_eq!(
        event["webhook"],
        json!({"id": broken, "name": "deploy <!channel>", "host": "127.0.0.1"})
    );
    assert!(event["detail"].as_str().unwrap().contains("410"), "{event}");
    assert!(event["id"].as_str().unwrap().starts_with("herald-op-"));
    assert!(chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(event["delivery"], Value::Null);
    assert!(!got.body.contains("s3cret"), "only the host is told");
    let admins = global.next().await.json();
    assert_eq!(
        (admins["type"].clone(), admins["id"].clone()),
        (json!("webhook.disabled"), event["id"].clone())
    );

    // Shown like a registry event: in the subscriber's deliveries and the events list.
    let items = app
        .wait_deliveries("acme", ops_id, |d| d[0]["state"] == "succeeded")
        .await;
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["event"]["action"], "webhook.disabled");
    let events = app.api("GET", "/events", None).await.body;
    let listed: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "webhook.disabled")
        .collect();
    assert_eq!(listed.len(), 1, "{events:#}");
    assert_eq!(listed[0]["namespace"], "acme");
    assert_eq!(listed[0]["status"], "accepted");

    let quiet = Duration::from_millis(800);
    ops.assert_quiet(quiet).await;
    global.assert_quiet(Duration::ZERO).await;
    gone.assert_quiet(Duration::ZERO).await;
    elsewhere.assert_quiet(Duration::ZERO).await;
    plain.assert_quiet(Duration::ZERO).await;
    every.assert_quiet(Duration::ZERO).await;
}

#[tokio::test]
async fn an_exhausted_delivery_is_announced_once_and_never_cascades() {
    let app = spawn_app_with(&["--retry-schedule", "0s,100ms,100ms"]).await;
    app.create_namespace("acme").await;
    let down = Receiver::start().await;
    down.answer(500);
    let mut actions = vec!["push"];
    actions.extend(ALL_KINDS);
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "down", "url": down.url("/"), "filters": {"actions": actions}}),
        )
        .await;
    // This subscriber is broken too: its delivery of the announcement fails for good, and
    // that must not be announced again.
    let broken_ops = Receiver::start().await;
    broken_ops.answer(500);
    let (broken_id, _) = subscriber(
        &app,
        "acme",
        "broken-ops",
        broken_ops.url("/"),
        &["delivery.exhausted"],
    )
    .await;
    let ops = Receiver::start().await;
    subscriber(&app, "acme", "ops", ops.url("/"), &["delivery.exhausted"]).await;

    app.post_envelope(push(1)).await;
    for _ in 0..3 {
        assert_eq!(down.next().await.json()["action"], "push");
    }
    let failed = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "failed")
        .await;
    let event = ops.next().await.json();
    assert_eq!(event["type"], "delivery.exhausted");
    assert_eq!(event["webhook"]["id"], hook);
    let delivery = &event["delivery"];
    assert_eq!(delivery["id"], failed[0]["id"]);
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status"], 500);
    assert_eq!(
        delivery["event"]["id"],
        "00000001-7a89-451b-8ea6-bfb7cac6a943"
    );
    assert_eq!(delivery["event"]["action"], "push");
    assert_eq!(delivery["event"]["repository"], "acme/web");
    assert!(event["detail"].as_str().unwrap().contains("500"), "{event}");

    // The broken subscriber got the same announcement three times (its retries) and
    // failed it for good: nobody hears of that.
    for _ in 0..3 {
        assert_eq!(broken_ops.next().await.json()["id"], event["id"]);
    }
    app.wait_deliveries("acme", broken_id, |d| d[0]["state"] == "failed")
        .await;
    ops.assert_quiet(Duration::from_millis(800)).await;
    down.assert_quiet(Duration::ZERO).await;
}

#[tokio::test]
async fn a_failing_webhook_that_recovers_is_announced_once() {
    let app = spawn_app_with(&["--retry-schedule", "0s,300ms,300ms"]).await;
    app.create_namespace("acme").await;
    let flaky = Receiver::start().await;
    flaky.answer(500);
    let hook = app
        .enabled_webhook("acme", json!({"name": "flaky", "url": flaky.url("/"), "filters": {"actions": ["push", "webhook.recovered"]}}))
        .await;
    let ops = Receiver::start().await;
    subscriber(
        &app,
        "acme",
        "ops",
        ops.url("/"),
        &["webhook.recovered", "webhook.disabled"],
    )
    .await;
    let global = Receiver::start().await;
    subscriber(
        &app,
        "_global",
        "admins",
        global.url("/"),
        &["webhook.recovered"],
    )
    .await;

    app.post_envelope(push(1)).await;
    flaky.next().await;
    flaky.answer(200);
    flaky.next().await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let event = ops.next().await.json();
    assert_eq!(event["type"], "webhook.recovered");
    assert_eq!(event["webhook"]["id"], hook);
    assert_eq!(event["delivery"], Value::Null);
    assert_eq!(
        global.next().await.json()["id"],
        event["id"],
        "the global namespace hears every namespace's"
    );
    // A success of a healthy webhook is no recovery.
    app.post_envelope(push(2)).await;
    flaky.next().await;
    ops.assert_quiet(Duration::from_millis(800)).await;
    global.assert_quiet(Duration::ZERO).await;
    flaky.assert_quiet(Duration::ZERO).await;
}

#[tokio::test]
async fn operational_kinds_are_filters_that_are_off_by_default() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "d", "url": "example.org"})),
        )
        .await;
    assert_eq!(r.body["filters"]["actions"], json!(["push", "delete"]));
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "o", "url": "example.org", "filters": {"actions": ALL_KINDS}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["filters"]["actions"], json!(ALL_KINDS));
    let r = app
        .api("POST", "/namespaces/acme/webhooks", Some(json!({"name": "x", "url": "example.org", "filters": {"actions": ["webhook.exploded"]}})))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("webhook.exploded"),
        "{:?}",
        r.body
    );
    // A registry cannot pose as Herald: neither its actions nor its ids.
    let rx = Receiver::start().await;
    app.enabled_webhook(
        "acme",
        json!({"name": "all", "url": rx.url("/"), "filters": {"actions": ALL_KINDS}}),
    )
    .await;
    let forged = String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("\"action\": \"push\"", "\"action\": \"webhook.disabled\"")
        .replace("2045f19c", "herald-op-x");
    let r = app.post_envelope(forged.into_bytes()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ignored"], 1, "{:?}", r.body);
    rx.assert_quiet(Duration::from_millis(600)).await;
}

#[tokio::test]
async fn circuit_opened_is_one_call_and_chat_formats_say_it_in_a_line() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "deploy", "url": "https://ci.example.org/hook"}),
        )
        .await;
    let slack = Receiver::start().await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "chat", "url": slack.url("/"), "format": "slack", "filters": {"actions": ["webhook.circuit_opened"]}})),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    let ce = Receiver::start().await;
    app.enabled_webhook("_global", json!({"name": "ce", "url": ce.url("/"), "format": "cloudevents", "filters": {"actions": ["webhook.circuit_opened"]}}))
        .await;

    herald::delivery::operational::circuit_opened(
        &*app.store,
        hook,
        "5 attempts in a row failed; paused for 30s",
    )
    .await;

    let message = slack.next().await.json();
    assert_eq!(
        message["text"],
        "Herald paused deliveries to webhook 'deploy' in acme (circuit opened): 5 attempts in a row failed; paused for 30s"
    );
    let got = ce.next().await;
    assert_eq!(
        got.header("content-type"),
        Some("application/cloudevents+json")
    );
    let event = got.json();
    assert_eq!(event["type"], "io.herald.webhook.circuit_opened");
    assert_eq!(event["subject"], format!("acme/webhooks/{hook}"));
    assert_eq!(event["data"]["type"], "webhook.circuit_opened");
    assert_eq!(
        event["data"]["detail"],
        "5 attempts in a row failed; paused for 30s"
    );
    slack.assert_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn failing_for_the_whole_window_is_announced_once() {
    let app = spawn_app_with(&[
        "--auto-disable-after",
        "1s",
        "--retry-schedule",
        "0s,700ms,700ms,700ms",
    ])
    .await;
    app.create_namespace("acme").await;
    let down = Receiver::start().await;
    down.answer(500);
    let hook = app
        .enabled_webhook("acme", json!({"name": "down", "url": down.url("/")}))
        .await;
    let ops = Receiver::start().await;
    subscriber(&app, "acme", "ops", ops.url("/"), &["webhook.disabled"]).await;
    // Two events, so two deliveries keep failing past the window.
    app.post_envelope(push(1)).await;
    app.post_envelope(push(2)).await;
    let event = ops.next().await.json();
    assert_eq!(event["type"], "webhook.disabled");
    assert_eq!(event["webhook"]["id"], hook);
    assert_eq!(event["detail"], "every attempt failed for 1s");
    let path = format!("/namespaces/acme/webhooks/{hook}");
    assert_eq!(app.api("GET", &path, None).await.body["enabled"], false);
    app.wait_deliveries("acme", hook, |d| {
        d.as_array().unwrap().iter().all(|d| d["state"] == "failed")
    })
    .await;
    ops.assert_quiet(Duration::from_millis(500)).await;
}
