//! Deliveries born claimed: ingest leases a fast webhook's deliveries, and the first of a
//! webhook not heard from, to its own process and hands them to the dispatcher in memory;
//! fifo and rate-limited webhooks' deliveries are claimed as ever, so their rules hold.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// The value of a counter line of `/metrics`, 0 when it is not there yet.
async fn counter(app: &TestApp, line: &str) -> u64 {
    let text = app.call("GET", "/metrics", None, None).await.body;
    let text = text.as_str().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn succeeded(app: &TestApp, n: u64) {
    eventually(
        Duration::from_secs(10),
        "every delivery succeeded",
        || async {
            let done = counter(app, "herald_delivery_attempts_total{outcome=\"succeeded\"}").await;
            if done == n {
                Ok(())
            } else {
                Err(format!("{done} of {n}"))
            }
        },
    )
    .await;
}

const HANDED_OFF: &str = "herald_deliveries_taken_total{by=\"hand_off\"}";
const CLAIMED: &str = "herald_deliveries_taken_total{by=\"claim\"}";

#[tokio::test]
async fn a_fast_webhooks_deliveries_are_born_claimed_and_sent_once() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    // Not heard from yet: its first delivery is handed off to the slow lane, as its
    // first claim would have taken it.
    app.post_envelope(push_with_id(0)).await;
    succeeded(&app, 1).await;
    assert_eq!(counter(&app, HANDED_OFF).await, 1);
    assert_eq!(counter(&app, CLAIMED).await, 0);
    const N: usize = 20;
    for i in 1..=N {
        assert_eq!(
            app.post_envelope(push_with_id(i)).await.body["deliveries"],
            1
        );
    }
    succeeded(&app, N as u64 + 1).await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..=N {
        ids.insert(rx.next().await.json()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), N + 1, "each event delivered");
    rx.assert_quiet(Duration::from_millis(300)).await;
    let (handed, claimed) = (
        counter(&app, HANDED_OFF).await,
        counter(&app, CLAIMED).await,
    );
    assert_eq!(handed + claimed, N as u64 + 1, "each delivery started once");
    assert!(
        handed >= N as u64 / 2,
        "a fast webhook's deliveries are born claimed: {handed} handed off, {claimed} claimed"
    );
}

/// A handed-off delivery is sent with its webhook's settings as they are when it is
/// ingested: the dispatcher's copy from before a change is not used.
#[tokio::test]
async fn a_webhook_changed_between_hand_offs_is_sent_as_it_is_now() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/before")}))
        .await;
    // Until one is handed off, so the dispatcher holds a copy of the settings.
    let mut sent = 0;
    eventually(Duration::from_secs(10), "a delivery handed off", || {
        sent += 1;
        let (app, i) = (&app, sent);
        async move {
            app.post_envelope(push_with_id(i)).await;
            succeeded(app, i as u64).await;
            match counter(app, HANDED_OFF).await {
                0 => Err("none yet".to_string()),
                _ => Ok(()),
            }
        }
    })
    .await;
    for _ in 0..sent {
        assert_eq!(rx.next().await.path, "/before");
    }
    let patch = json!({"url": rx.url("/after")});
    let path = format!("/namespaces/acme/webhooks/{hook}");
    assert_eq!(app.api("PATCH", &path, Some(patch)).await.status, 200);
    let header = format!("{path}/headers/X-Team");
    let put = app
        .api("PUT", &header, Some(json!({"value": "blue"})))
        .await;
    assert_eq!(put.status, 201);
    let handed = counter(&app, HANDED_OFF).await;
    app.post_envelope(push_with_id(100)).await;
    succeeded(&app, sent as u64 + 1).await;
    let c = rx.next().await;
    assert_eq!(
        (c.path.as_str(), c.header("x-team")),
        ("/after", Some("blue"))
    );
    assert_eq!(
        counter(&app, HANDED_OFF).await,
        handed + 1,
        "it was handed off, not claimed"
    );
}

#[tokio::test]
async fn fifo_and_rate_limited_webhooks_are_never_handed_off() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    app.enabled_webhook(
        "acme",
        json!({"name": "ordered", "url": rx.url("/fifo"), "ordering": "fifo"}),
    )
    .await;
    app.enabled_webhook(
        "acme",
        json!({"name": "limited", "url": rx.url("/limited"), "rate_limit": 1000}),
    )
    .await;
    app.post_envelope(push_with_id(0)).await;
    succeeded(&app, 2).await;
    const N: usize = 10;
    for i in 1..=N {
        app.post_envelope(push_with_id(i)).await;
    }
    succeeded(&app, 2 * (N as u64 + 1)).await;
    assert_eq!(counter(&app, HANDED_OFF).await, 0);
    assert_eq!(counter(&app, CLAIMED).await, 2 * (N as u64 + 1));
    assert!(
        counter(&app, "herald_claim_round_seconds_count").await >= 1,
        "claims' rounds are timed"
    );
    // Fifo order held: the receiver saw the ordered webhook's events as they were pushed.
    let mut order = Vec::new();
    for _ in 0..2 * (N + 1) {
        let c = rx.next().await;
        if c.path == "/fifo" {
            order.push(c.json()["id"].as_str().unwrap().to_string());
        }
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order.len(), N + 1);
    assert_eq!(order, sorted, "in push order");
}

/// One event for many webhooks not heard from: each first delivery is handed off, in a
/// slow-lane place, so none waits for a claim round.
#[tokio::test]
async fn an_event_for_new_webhooks_is_handed_to_each_at_once() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    const N: usize = 20;
    for i in 0..N {
        let path = format!("/{i}");
        app.enabled_webhook(
            "acme",
            json!({"name": format!("d{i}"), "url": rx.url(&path)}),
        )
        .await;
    }
    let r = app.post_envelope(push_with_id(0)).await;
    assert_eq!(r.body["deliveries"], N);
    succeeded(&app, N as u64).await;
    let mut paths = std::collections::HashSet::new();
    for _ in 0..N {
        paths.insert(rx.next().await.path);
    }
    assert_eq!(paths.len(), N, "each webhook got it once");
    assert_eq!(counter(&app, HANDED_OFF).await, N as u64);
    assert_eq!(counter(&app, CLAIMED).await, 0);
}
