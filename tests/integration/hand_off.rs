//! Deliveries born claimed: ingest leases a fast webhook's deliveries to its own process and
//! hands them to the dispatcher in memory; fifo and rate-limited webhooks' deliveries are
//! claimed as ever, so their rules hold.

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
    // Not heard from yet: its first delivery is claimed, in the slow lane.
    app.post_envelope(push_with_id(0)).await;
    succeeded(&app, 1).await;
    assert_eq!(counter(&app, HANDED_OFF).await, 0);
    assert_eq!(counter(&app, CLAIMED).await, 1);
    assert!(
        counter(&app, "herald_claim_round_seconds_count").await >= 1,
        "the claim's round is timed"
    );
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
    if app.db.is_some() {
        // PostgreSQL: not yet (DispatcherConfig::hand_off); the store's side is in the
        // store contract.
        assert_eq!(handed, 0);
    } else {
        assert!(
            handed >= N as u64 / 2,
            "a fast webhook's deliveries are born claimed: {handed} handed off, {claimed} claimed"
        );
    }
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
