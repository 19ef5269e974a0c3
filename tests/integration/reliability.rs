//! Delivery that never loses an event: signatures, Retry-After, 410, auto-disable, bulk
//! recovery, ping, the response cap, a SIGKILL in the middle of a burst, and receivers
//! that hang without holding up anyone else's.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::hooks::signing::{verify, SigningSecret};
use serde_json::{json, Value};

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

fn push_with_id(i: usize) -> Vec<u8> {
    String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("2045f19c", &format!("{i:08}"))
        .into_bytes()
}

fn verifies(secret: &str, c: &Captured) -> bool {
    let secret = SigningSecret::parse(secret).unwrap();
    let id = c.header("webhook-id").unwrap();
    let ts: i64 = c.header("webhook-timestamp").unwrap().parse().unwrap();
    verify(
        secret.as_bytes(),
        id,
        ts,
        c.body.as_bytes(),
        c.header("webhook-signature").unwrap(),
    )
}

#[tokio::test]
async fn deliveries_are_signed_and_rotation_signs_with_both_secrets_for_a_while() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let created = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "s", "url": rx.url("/")})),
        )
        .await;
    let secret = created.body["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created.body["signed"], true);
    let id = created.body["id"].as_i64().unwrap();
    let base = format!("/namespaces/acme/webhooks/{id}");
    let shown = app.api("GET", &base, None).await.body;
    assert!(
        shown.get("signing_secret").is_none() && !shown.to_string().contains(&secret),
        "shown once"
    );
    app.api("PATCH", &base, Some(json!({"enabled": true})))
        .await;

    app.post_envelope(push_with_id(1)).await;
    let got = rx.next().await;
    assert_eq!(got.header("webhook-id"), got.header("x-herald-delivery"));
    let ts: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert!(
        verifies(&secret, &got),
        "the signature verifies with the secret"
    );
    let mut tampered = got.clone();
    tampered.body.push(' ');
    assert!(
        !verifies(&secret, &tampered),
        "and only over the exact body"
    );

    let rotated = app
        .api("POST", &format!("{base}/rotate-secret"), None)
        .await;
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.body["signing_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(rotated.body["previous_secret_valid_until"].is_string());
    app.post_envelope(push_with_id(2)).await;
    let got = rx.next().await;
    assert_eq!(
        got.header("webhook-signature").unwrap().split(' ').count(),
        2
    );
    assert!(
        verifies(&new_secret, &got) && verifies(&secret, &got),
        "both secrets sign during the overlap"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_410_disables_the_webhook() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer(503);
    rx.answer_header("retry-after", "3");
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "busy", "url": rx.url("/")}))
        .await;
    app.post_envelope(push_with_id(1)).await;
    rx.next().await;
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "retrying")
        .await;
    let next = chrono::DateTime::parse_from_rfc3339(items[0]["next_attempt_at"].as_str().unwrap())
        .unwrap();
    let wait = next.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        wait.num_milliseconds() > 1500,
        "the 200 ms schedule gave way to Retry-After: {wait}"
    );

    let gone = Receiver::start().await;
    gone.answer(410);
    let hook = app
        .enabled_webhook("acme", json!({"name": "gone", "url": gone.url("/")}))
        .await;
    app.post_envelope(push_with_id(2)).await;
    gone.next().await;
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "failed")
        .await;
    assert_eq!(items[0]["attempt_count"], 1, "410 is not retried");
    let w = app
        .api("GET", &format!("/namespaces/acme/webhooks/{hook}"), None)
        .await
        .body;
    assert_eq!(w["enabled"], false);
    let trail = app
        .api("GET", "/activities?namespace=acme", None)
        .await
        .body;
    let entry = &trail["items"][0];
    assert_eq!(entry["action"], "webhook.auto_disabled");
    assert_eq!(entry["actor"], "herald");
    assert!(entry["detail"].as_str().unwrap().contains("410"));
}

#[tokio::test]
async fn a_webhook_failing_for_too_long_is_disabled_and_reenabling_starts_afresh() {
    let app = spawn_app_with(&[
        "--auto-disable-after",
        "1s",
        "--retry-schedule",
        "0s,700ms,700ms,700ms",
    ])
    .await;
    let rx = Receiver::start().await;
    rx.answer(500);
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "down", "url": rx.url("/")}))
        .await;
    let path = format!("/namespaces/acme/webhooks/{hook}");
    app.post_envelope(push_with_id(1)).await;
    eventually(Duration::from_secs(10), "auto-disabled", || async {
        app.api("GET", &path, None).await.body["enabled"] == false
    })
    .await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("herald_webhooks_auto_disabled_total 1"));
    // Re-enabled, it gets a fresh period: one more failure does not disable it again.
    app.api("PATCH", &path, Some(json!({"enabled": true})))
        .await;
    app.post_envelope(push_with_id(2)).await;
    app.wait_deliveries("acme", hook, |d| d[0]["attempt_count"].as_i64() >= Some(1))
        .await;
    assert_stays(
        Duration::from_millis(400),
        "one failure after re-enabling does not disable the webhook again",
        || async { app.api("GET", &path, None).await.body["enabled"] == true },
    )
    .await;
}

#[tokio::test]
async fn failed_deliveries_of_a_window_can_be_recovered() {
    let app = spawn_app_with(&["--retry-schedule", "0s"]).await;
    let rx = Receiver::start().await;
    rx.answer(500);
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    for i in 0..3 {
        app.post_envelope(push_with_id(i)).await;
    }
    app.wait_deliveries("acme", hook, |d| {
        d.as_array().unwrap().len() == 3
            && d.as_array().unwrap().iter().all(|x| x["state"] == "failed")
    })
    .await;
    for _ in 0..3 {
        rx.next().await;
    }
    rx.answer(200);
    let base = format!("/namespaces/acme/webhooks/{hook}");
    let bad = app
        .api(
            "POST",
            &format!("{base}/recover"),
            Some(json!({"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let r = app
        .api(
            "POST",
            &format!("{base}/recover"),
            Some(json!({ "since": since })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["requeued"], 3);
    for _ in 0..3 {
        if rx.next_within(Duration::from_secs(10)).await.is_none() {
            let d = app
                .api("GET", &format!("{base}/deliveries"), None)
                .await
                .body;
            panic!("a recovered delivery was not sent within 10 s: {d:#}");
        }
    }
    app.wait_deliveries("acme", hook, |d| {
        d.as_array()
            .unwrap()
            .iter()
            .all(|x| x["state"] == "succeeded")
    })
    .await;
}

#[tokio::test]
async fn ping_sends_a_synthetic_event_recorded_as_a_delivery() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "p", "url": rx.url("/"), "request_method": "POST"})),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    let ping = app
        .api(
            "POST",
            &format!("/namespaces/acme/webhooks/{id}/ping"),
            None,
        )
        .await;
    assert_eq!(ping.status, 200, "{:?}", ping.body);
    assert_eq!(
        ping.body["state"], "succeeded",
        "a ping works even before the webhook is enabled"
    );
    assert_eq!(ping.body["event"]["action"], "ping");
    let got = rx.next().await;
    assert_eq!(got.header("x-herald-event"), Some("ping"));
    assert_eq!(got.json()["target"]["repository"], "acme/herald-ping");
    let list = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn huge_responses_are_cut_at_64_kib() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.answer_body_size(4 * 1024 * 1024);
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "big", "url": rx.url("/")}))
        .await;
    app.post_envelope(push_with_id(1)).await;
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let detail = app
        .api(
            "GET",
            &format!(
                "/namespaces/acme/webhooks/{hook}/deliveries/{}",
                items[0]["id"]
            ),
            None,
        )
        .await
        .body;
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["response_body"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(attempt["response_truncated"], true);
}

#[tokio::test]
async fn sigkill_mid_burst_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let token = cli_admin_token(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || {
        herald_cmd(dir.path())
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--registry-token",
                "tok",
            ])
            .args([
                "--delivery-allow-networks",
                "127.0.0.1/32",
                "--delivery-timeout",
                "2s",
                "--delivery-lease",
                "3s",
            ])
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let rx = Receiver::start().await;
    let mut herald = start();
    let http = reqwest::Client::new();
    wait_ready(&base).await;
    let api = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    api(
        reqwest::Method::POST,
        "/namespaces".into(),
        json!({"name": "acme"}),
    )
    .await
    .unwrap();
    let hook: Value = serde_json::from_slice(
        &api(
            reqwest::Method::POST,
            "/namespaces/acme/webhooks".into(),
            json!({"name": "d", "url": rx.url("/")}),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap(),
    )
    .unwrap();
    api(
        reqwest::Method::PATCH,
        format!("/namespaces/acme/webhooks/{}", hook["id"]),
        json!({"enabled": true}),
    )
    .await
    .unwrap();

    // A registry-like client: each envelope is retried until a 2xx, across the crash.
    const N: usize = 200;
    let mut killed = false;
    for i in 0..N {
        if i == N / 2 {
            Command::new("kill")
                .args(["-KILL", &herald.id().to_string()])
                .status()
                .unwrap();
            herald.wait().unwrap();
            herald = start();
            killed = true;
        }
        // As the registry does: the same envelope again until Herald takes it.
        eventually(
            Duration::from_secs(30),
            "the envelope was accepted",
            || async {
                http.post(format!("{base}/v2/webhooks/events"))
                    .bearer_auth("tok")
                    .header(
                        "content-type",
                        "application/vnd.docker.distribution.events.v1+json",
                    )
                    .body(push_with_id(i))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
    }
    assert!(killed);
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < N {
        let c = rx
            .next_within(Duration::from_secs(20))
            .await
            .expect("every accepted event arrives");
        *seen
            .entry(c.json()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let twice = seen.values().filter(|&&n| n > 1).count();
    println!("SIGKILL mid-burst: {N} events, all delivered, {twice} more than once");
    let _ = herald.kill();
    let _ = herald.wait();
}

#[tokio::test]
async fn redirects_are_not_followed_and_count_as_failures() {
    let app = spawn_app_with(&["--retry-schedule", "0s,100ms"]).await;
    let rx = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    rx.answer(302);
    rx.answer_header("location", &elsewhere.url("/stolen"));
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "moved", "url": rx.url("/")}))
        .await;
    app.post_envelope(push_with_id(1)).await;
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "failed")
        .await;
    assert_eq!(
        items[0]["attempt_count"], 2,
        "a 3xx is retried like any failure"
    );
    assert_eq!(items[0]["last_status"], 302);
    elsewhere.assert_quiet(Duration::from_millis(200)).await;
}

/// A hundred receivers that do not answer within the test, each behind its own webhook with
/// six events queued: more than the 256 send slots and the 512 claims a process holds with
/// the default `--delivery-concurrency`. A webhook in another namespace whose receiver
/// answers at once must still get each of its deliveries within a second of the ingest.
#[tokio::test]
async fn hanging_receivers_do_not_delay_a_fast_one() {
    const HANGING: usize = 100;
    const EVENTS_EACH: usize = 6;
    const FAST_EVENTS: usize = 10;
    let app = spawn_app_with(&["--delivery-timeout", "30s"]).await;
    // One loopback server, a path per webhook, that answers only after 30 s.
    let called: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen = called.clone();
    let hanging = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().insert(uri.path().to_string());
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hanging).await.unwrap() });
    app.create_namespace("acme").await;
    for i in 0..HANGING {
        app.enabled_webhook(
            "acme",
            json!({"name": format!("hung-{i}"), "url": format!("http://{addr}/hook/{i}")}),
        )
        .await;
    }
    let rx = Receiver::start().await;
    app.create_namespace("fast").await;
    app.enabled_webhook("fast", json!({"name": "fast", "url": rx.url("/")}))
        .await;

    for i in 0..EVENTS_EACH {
        assert_eq!(app.post_envelope(push_with_id(i)).await.status, 200);
    }
    // Every hanging receiver holds a request open before the fast events come.
    eventually(
        Duration::from_secs(10),
        "every hanging receiver was called",
        || async { called.lock().unwrap().len() == HANGING },
    )
    .await;

    let mut slowest = Duration::ZERO;
    for i in 0..FAST_EVENTS {
        let envelope = String::from_utf8(push_with_id(1000 + i))
            .unwrap()
            .replace("acme/web", "fast/web");
        let ingested = tokio::time::Instant::now();
        assert_eq!(app.post_envelope(envelope.into_bytes()).await.status, 200);
        let deadline = ingested + Duration::from_secs(1);
        let got = rx
            .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
            .unwrap_or_else(|| panic!("fast delivery {i} did not arrive within 1 s of its ingest"));
        assert_eq!(got.json()["target"]["repository"], "fast/web");
        slowest = slowest.max(ingested.elapsed());
    }
    println!(
        "{HANGING} hanging receivers with {EVENTS_EACH} events each: {FAST_EVENTS} fast \
         deliveries, the slowest {} ms after its ingest",
        slowest.as_millis()
    );
}

/// A webhook that has been answering quickly holds every fast-lane slot and claim place when
/// its receiver starts to hang; within about a second its requests move to the slow lane
/// and what it had waiting is handed back, so another fast webhook's delivery goes out.
#[tokio::test]
async fn a_receiver_that_starts_hanging_gives_back_its_fast_slots() {
    let app = spawn_app_with(&[
        "--delivery-timeout",
        "30s",
        "--delivery-concurrency",
        "4",
        "--delivery-concurrency-per-webhook",
        "4",
    ])
    .await;
    let turning = Receiver::start().await;
    let steady = Receiver::start().await;
    app.create_namespace("acme").await;
    app.create_namespace("fast").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "turning", "url": turning.url("/")}))
        .await;
    let other = app
        .enabled_webhook("fast", json!({"name": "steady", "url": steady.url("/")}))
        .await;
    let in_fast = |i: usize| {
        String::from_utf8(push_with_id(i))
            .unwrap()
            .replace("acme/web", "fast/web")
            .into_bytes()
    };
    // Both answer quickly at first.
    app.post_envelope(push_with_id(0)).await;
    app.post_envelope(in_fast(1)).await;
    turning.next().await;
    steady.next().await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    app.wait_deliveries("fast", other, |d| d[0]["state"] == "succeeded")
        .await;

    turning.delay(30_000);
    for i in 10..30 {
        assert_eq!(app.post_envelope(push_with_id(i)).await.status, 200);
    }
    for _ in 0..4 {
        turning.next().await;
    }
    let ingested = tokio::time::Instant::now();
    assert_eq!(app.post_envelope(in_fast(2)).await.status, 200);
    let got = steady
        .next_within(Duration::from_secs(3))
        .await
        .expect("the steady receiver's delivery went out once the other moved to the slow lane");
    assert_eq!(got.json()["target"]["repository"], "fast/web");
    let waited = ingested.elapsed();
    let mut sent = 4;
    while turning.next_within(Duration::ZERO).await.is_some() {
        sent += 1;
    }
    assert_eq!(
        sent, 4,
        "the hanging receiver's waiting deliveries were handed back, not sent"
    );
    println!(
        "a receiver that started hanging held the fast lane for {} ms",
        waited.as_millis()
    );
}
