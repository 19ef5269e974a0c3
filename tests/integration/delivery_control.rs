//! Per-webhook delivery control: the rate limit, the circuit breaker and ordered (fifo)
//! delivery, in the claims of both stores and end to end through the real app.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use herald::domain::control::{CircuitChange, CircuitRule, CircuitState, DeliveryOrder, RateLimit};
use herald::domain::delivery::{AttemptRecord, ClaimScope, Outcome, StoredRequest};
use herald::domain::model::{Audit, Health, WebhookPatch};
use herald::domain::names::NamespaceName;
use herald::store::Store;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::store_contract::{acme_with_hook, pg_store, pushes, secs, sqlite_store};

const DAY: Duration = Duration::from_secs(86_400);

/// The event id `push_with_id(i)` gives.
fn event_id(i: usize) -> String {
    format!("{i:08}-7a89-451b-8ea6-bfb7cac6a943")
}

fn acme() -> NamespaceName {
    NamespaceName::parse("acme").unwrap()
}

fn result(delivery_id: i64, lease: i64, outcome: Outcome, status: u16) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        started_at: Utc::now(),
        duration_ms: 3,
        status: Some(status),
        error: (status != 200).then(|| format!("the receiver answered {status}")),
        response_headers: vec![],
        response_body: String::new(),
        response_truncated: false,
        manual: false,
        request: StoredRequest {
            method: "POST".into(),
            url: "http://receiver.example.org/hook".into(),
            headers: vec![],
            body: String::new(),
        },
        body_is_event: true,
        outcome,
        lease: Some(lease),
    }
}

macro_rules! on_both_stores {
    ($($area:ident),* $(,)?) => {$(
        mod $area {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let s = super::sqlite_store().await;
                super::$area(s.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(s) = super::pg_store().await else { return };
                super::$area(s.store.clone()).await;
            }
        }
    )*};
}

on_both_stores!(
    claims_pass_over_an_open_circuit_and_take_one_probe,
    claims_take_a_fifo_webhooks_deliveries_one_at_a_time,
    a_backlog_waits_its_turn_once_its_webhook_turns_fifo,
    a_probe_given_back_goes_again_at_once,
);

async fn claims_pass_over_an_open_circuit_and_take_one_probe(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let limit = WebhookPatch {
        rate_limit: Some(Some(RateLimit::per_second(2.5).unwrap())),
        ..Default::default()
    };
    store
        .update_webhook(&acme(), hook, limit, &Audit::new("t", "webhook.update"))
        .await
        .unwrap();
    let now = Utc::now();
    store.ingest(&pushes(3, "cccc"), now).await.unwrap();
    let rule = CircuitRule::new(2, Duration::from_secs(30));

    let first = store
        .webhook_health(hook, Health::Failed, now, DAY, rule)
        .await
        .unwrap();
    assert_eq!(first.circuit, CircuitChange::None);
    let second = store
        .webhook_health(hook, Health::Failed, now, DAY, rule)
        .await
        .unwrap();
    assert_eq!(
        second.circuit,
        CircuitChange::Opened,
        "two failures in a row"
    );
    assert_eq!(second.circuit_failures, 2);
    assert_eq!(
        second.circuit_open_until.map(|t| t.timestamp_millis()),
        Some((now + secs(30)).timestamp_millis())
    );
    let w = store.get_webhook(&acme(), hook).await.unwrap();
    assert_eq!(w.circuit.state, CircuitState::Open);

    // Open: every kind of claim passes over its due deliveries.
    let lease = now + secs(60);
    assert!(store.claim_due(now, lease, 10).await.unwrap().is_empty());
    let only = ClaimScope::Only(std::slice::from_ref(&hook));
    assert!(store
        .claim_due_in(now, lease, 10, only)
        .await
        .unwrap()
        .is_empty());
    let each = ClaimScope::OnePerWebhookSkipping(&[]);
    assert!(store
        .claim_due_in(now, lease, 10, each)
        .await
        .unwrap()
        .is_empty());

    // The cool-down is over: one probe, and the circuit is half-open while it is out.
    // Claims racing for it (as several processes' would, each on its own connection)
    // take one between them.
    let later = now + secs(31);
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due(later, later + secs(60), 10).await })
        })
        .collect();
    let mut probe = Vec::new();
    for claim in racing {
        probe.extend(claim.await.unwrap().unwrap());
    }
    assert_eq!(probe.len(), 1, "{probe:?}");
    assert_eq!(
        probe[0].rate_limit,
        Some(RateLimit::per_second(2.5).unwrap())
    );
    let w = store.get_webhook(&acme(), hook).await.unwrap();
    assert_eq!(w.circuit.state, CircuitState::HalfOpen);
    assert_eq!(w.circuit.probe, Some(probe[0].delivery_id));
    assert!(store
        .claim_due(later, later + secs(60), 10)
        .await
        .unwrap()
        .is_empty());

    // A failed probe opens it again, for twice as long.
    let reopened = store
        .webhook_health(hook, Health::Failed, later, DAY, rule)
        .await
        .unwrap();
    assert_eq!(reopened.circuit, CircuitChange::Reopened);
    store
        .record_attempt(result(
            probe[0].delivery_id,
            probe[0].token,
            Outcome::RetryAt(later),
            500,
        ))
        .await
        .unwrap();
    let before = later + secs(59);
    assert!(store
        .claim_due(before, before + secs(60), 10)
        .await
        .unwrap()
        .is_empty());
    let again = later + secs(61);
    let probe = store.claim_due(again, again + secs(60), 10).await.unwrap();
    assert_eq!(probe.len(), 1);

    // A success closes it, and the rest are due again.
    let closed = store
        .webhook_health(hook, Health::Succeeded, again, DAY, rule)
        .await
        .unwrap();
    assert_eq!(closed.circuit, CircuitChange::Closed);
    store
        .record_attempt(result(
            probe[0].delivery_id,
            probe[0].token,
            Outcome::Succeeded,
            200,
        ))
        .await
        .unwrap();
    let w = store.get_webhook(&acme(), hook).await.unwrap();
    assert_eq!(w.circuit, Default::default());
    let rest = store.claim_due(again, again + secs(60), 10).await.unwrap();
    assert_eq!(rest.len(), 2);
}

async fn claims_take_a_fifo_webhooks_deliveries_one_at_a_time(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let fifo = WebhookPatch {
        ordering: Some(DeliveryOrder::Fifo),
        ..Default::default()
    };
    let w = store
        .update_webhook(&acme(), hook, fifo, &Audit::new("t", "webhook.update"))
        .await
        .unwrap();
    assert_eq!(w.ordering, DeliveryOrder::Fifo);
    let now = Utc::now();
    store.ingest(&pushes(3, "ffff"), now).await.unwrap();
    let lease = now + secs(60);
    // However many claim at once (processes sharing the database), one gets the first.
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due(now, lease, 10).await })
        })
        .collect();
    let mut first = Vec::new();
    for claim in racing {
        first.extend(claim.await.unwrap().unwrap());
    }
    assert_eq!(first.len(), 1, "one at a time: {first:?}");
    assert!(first[0].fifo);
    assert!(
        store.claim_due(now, lease, 10).await.unwrap().is_empty(),
        "the next waits while the first is out"
    );
    // A retry is still the first: the later ones wait for it.
    store
        .record_attempt(result(
            first[0].delivery_id,
            first[0].token,
            Outcome::RetryAt(now),
            500,
        ))
        .await
        .unwrap();
    let retry = store.claim_due(now, lease, 10).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].delivery_id, first[0].delivery_id);
    // Failed for good: the next one goes.
    store
        .record_attempt(result(
            retry[0].delivery_id,
            retry[0].token,
            Outcome::Failed,
            500,
        ))
        .await
        .unwrap();
    let second = store.claim_due(now, lease, 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].delivery_id > first[0].delivery_id);
    store
        .record_attempt(result(
            second[0].delivery_id,
            second[0].token,
            Outcome::Succeeded,
            200,
        ))
        .await
        .unwrap();
    let third = store.claim_due(now, lease, 10).await.unwrap();
    assert_eq!(third.len(), 1);
    assert!(third[0].delivery_id > second[0].delivery_id);
}

/// Creates namespace `acme` and an enabled webhook with `extra` settings to `url`.
async fn hook_with(app: &TestApp, url: String, extra: Value) -> i64 {
    app.create_namespace("acme").await;
    let mut body = json!({"name": "controlled", "url": url, "request_method": "POST"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.enabled_webhook("acme", body).await
}

async fn webhook(app: &TestApp, id: i64) -> Value {
    app.api("GET", &format!("/namespaces/acme/webhooks/{id}"), None)
        .await
        .body
}

#[tokio::test]
async fn a_rate_limit_spreads_deliveries_without_failing_any() {
    let app = spawn_app().await;
    let rx = OrderedReceiver::start(0, String::new(), Duration::ZERO).await;
    let id = hook_with(&app, rx.url(), json!({"rate_limit": 5})).await;
    let shown = webhook(&app, id).await;
    assert_eq!(shown["rate_limit"], 5.0);
    assert_eq!(shown["circuit"], "closed");
    assert_eq!(shown["ordering"], "none");
    const N: usize = 30;
    for i in 0..N {
        assert_eq!(app.post_envelope(push_with_id(i)).await.status, 200);
    }
    eventually(
        Duration::from_secs(20),
        "every delivery arrives",
        || async { rx.seen().len() >= N },
    )
    .await;
    let arrivals = rx.arrivals();
    // Burst 5, then 5 a second: no second holds more than 10 (one of slack for timing).
    for (i, start) in arrivals.iter().enumerate() {
        let within = arrivals[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(within <= 11, "{within} deliveries within a second of #{i}");
    }
    let span = arrivals[N - 1].duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_secs(4),
        "30 at 5/s took only {span:?}"
    );
    let items = app
        .wait_deliveries("acme", id, |items| {
            items.as_array().unwrap().len() == N
                && items
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|d| d["state"] == "succeeded")
        })
        .await;
    for d in items.as_array().unwrap() {
        assert_eq!(d["attempt_count"], 1, "waiting is not an attempt: {d}");
    }
    assert_eq!(rx.seen().len(), N, "each sent once");
}

#[tokio::test]
async fn rate_limit_and_ordering_are_checked_and_can_be_cleared() {
    let app = spawn_app().await;
    let id = hook_with(
        &app,
        "http://127.0.0.1:9/".into(),
        json!({"rate_limit": 0.5, "ordering": "fifo"}),
    )
    .await;
    let path = format!("/namespaces/acme/webhooks/{id}");
    let shown = webhook(&app, id).await;
    assert_eq!(
        (shown["rate_limit"].clone(), shown["ordering"].clone()),
        (json!(0.5), json!("fifo"))
    );
    for (body, field) in [
        (json!({"rate_limit": 0}), "rate_limit"),
        (json!({"rate_limit": -3}), "rate_limit"),
        (json!({"rate_limit": 100000}), "rate_limit"),
        (json!({"ordering": "lifo"}), "ordering"),
    ] {
        let r = app.api("PATCH", &path, Some(body.clone())).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {:?}", r.body);
    }
    let r = app
        .api("PATCH", &path, Some(json!({"circuit": "closed"})))
        .await;
    assert!(
        matches!(r.status, 400 | 422),
        "circuit is read-only: {:?}",
        r.body
    );
    // The OpenAPI document describes the fields, `circuit` as output only.
    let doc = app
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .body;
    let schemas = &doc["components"]["schemas"];
    for field in ["rate_limit", "ordering", "circuit", "circuit_probe_at"] {
        assert!(
            schemas["WebhookView"]["properties"].get(field).is_some(),
            "WebhookView lacks {field}"
        );
    }
    let input = &schemas["WebhookInput"]["properties"];
    assert!(input.get("rate_limit").is_some() && input.get("ordering").is_some());
    assert!(input.get("circuit").is_none(), "circuit is read-only");

    let r = app
        .api(
            "PATCH",
            &path,
            Some(json!({"rate_limit": null, "ordering": "none"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["rate_limit"], Value::Null);
    assert_eq!(r.body["ordering"], "none");
}

#[tokio::test]
async fn the_breaker_stops_attempts_probes_once_per_cool_down_and_closes() {
    let app = spawn_app_with(&[
        "--circuit-failures",
        "3",
        "--circuit-cooldown",
        "1s",
        "--retry-schedule",
        "0s,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
        "--delivery-concurrency-per-webhook",
        "1",
    ])
    .await;
    let rx = Receiver::start().await;
    rx.answer(500);
    let id = hook_with(&app, rx.url("/"), json!({})).await;
    // A webhook of the team that hears when the circuit opens (operational events).
    let ops = Receiver::start().await;
    app.enabled_webhook(
        "acme",
        json!({"name": "ops", "url": ops.url("/"), "format": "cloudevents",
               "filters": {"actions": ["webhook.circuit_opened"]}}),
    )
    .await;
    const N: usize = 6;
    for i in 0..N {
        assert_eq!(app.post_envelope(push_with_id(i)).await.status, 200);
    }
    eventually(Duration::from_secs(10), "the circuit opens", || async {
        webhook(&app, id).await["circuit"] == "open"
    })
    .await;
    let web = crate::web::sign_in_as(&app, "admin", "admin-password").await;
    let page_path = format!("/namespaces/acme/webhooks/{id}");
    let (status, page) = web.get(&app, &page_path).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"id="circuit""#) && page.contains("circuit open")
            || page.contains("circuit half-open"),
        "the page shows the circuit: {page}"
    );
    // Three failures opened it; only requests already out then (one in the fast lane,
    // two in the slow lane, while the webhook moves between them) came after.
    let mut before = Vec::new();
    while let Some(c) = rx.next_within(Duration::from_millis(100)).await {
        before.push(c);
    }
    let opened_at = Instant::now();
    assert!(
        (3..=6).contains(&before.len()),
        "{} attempts before the circuit held them",
        before.len()
    );
    // One probe after the cool-down (1 s), nothing before it.
    let probe = rx.next_within(Duration::from_secs(5)).await;
    assert!(probe.is_some(), "no probe after the cool-down");
    let first_probe = Instant::now();
    assert!(
        first_probe.duration_since(opened_at) >= Duration::from_millis(600),
        "the probe came {:?} after the circuit opened",
        first_probe.duration_since(opened_at)
    );
    eventually(
        Duration::from_secs(5),
        "the failed probe opens it again",
        || async { webhook(&app, id).await["circuit"] == "open" },
    )
    .await;
    rx.answer(200);
    // Twice the cool-down now: quiet for most of it, then exactly one probe.
    rx.assert_quiet(Duration::from_millis(1500)).await;
    let second = rx.next_within(Duration::from_secs(5)).await;
    assert!(second.is_some(), "no second probe");
    assert!(
        first_probe.elapsed() >= Duration::from_millis(1900),
        "the second probe came {:?} after the first",
        first_probe.elapsed()
    );
    // It succeeded: closed, and the backlog drains.
    let items = app
        .wait_deliveries("acme", id, |items| {
            items
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["state"] == "succeeded")
        })
        .await;
    assert_eq!(items.as_array().unwrap().len(), N);
    assert_eq!(webhook(&app, id).await["circuit"], "closed");
    let (_, page) = web.get(&app, &page_path).await;
    assert!(!page.contains(r#"id="circuit""#), "closed: no badge");
    // The opening was announced once; the failed probe that reopened it was not.
    let event = ops.next().await.json();
    assert_eq!(event["type"], "io.herald.webhook.circuit_opened");
    assert_eq!(
        event["data"]["detail"],
        "3 attempts in a row failed; paused for 1s"
    );
    ops.assert_quiet(Duration::from_millis(300)).await;
    let attempts: i64 = items
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempt_count"].as_i64().unwrap())
        .sum();
    // The failures before the circuit held them, the failed probe, one success each.
    let sent = before.len() + 1 + N;
    assert_eq!(
        attempts as usize, sent,
        "waiting for the circuit burnt no attempts"
    );
}

/// A receiver that records the event ids in the order they arrive, and when, and fails
/// the first event's first `fail_first` requests.
struct OrderedReceiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl OrderedReceiver {
    async fn start(fail_first: usize, first_id: String, hold: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let log = log.clone();
            let first_id = first_id.clone();
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let id = event["id"].as_str().unwrap_or_default().to_string();
                let tries = {
                    let mut seen = log.lock().unwrap();
                    seen.push((id.clone(), Instant::now()));
                    seen.iter().filter(|(s, _)| *s == id).count()
                };
                tokio::time::sleep(hold).await;
                if id == first_id && tries <= fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .collect()
    }
}

#[tokio::test]
async fn fifo_deliveries_do_not_overtake_one_that_is_retried() {
    let app = spawn_app().await;
    let rx = OrderedReceiver::start(2, event_id(0), Duration::from_millis(30)).await;
    let id = hook_with(&app, rx.url(), json!({"ordering": "fifo"})).await;
    const N: usize = 5;
    for i in 0..N {
        assert_eq!(app.post_envelope(push_with_id(i)).await.status, 200);
    }
    app.wait_deliveries("acme", id, |items| {
        let items = items.as_array().unwrap();
        items.len() == N && items.iter().all(|d| d["state"] == "succeeded")
    })
    .await;
    let expected: Vec<String> = [0, 0, 0, 1, 2, 3, 4].into_iter().map(event_id).collect();
    assert_eq!(rx.seen(), expected, "failed twice, then in order");
}

/// An admin token for a Herald on `database` (SQLite in `dir` when `None`), made with the
/// CLI as an operator would.
fn admin_token(dir: &std::path::Path, database: Option<&str>) -> String {
    use std::io::Write;
    let cmd = |args: &[&str]| {
        let mut cmd = herald_cmd(dir);
        if let Some(url) = database {
            cmd.args(["--database", url]).env("HERALD_SECRET_KEY", KEY);
        }
        cmd.args(args);
        cmd
    };
    assert!(cmd(&["migrate"]).status().unwrap().success());
    let mut create = cmd(&["user", "create", "admin", "--admin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"admin-password\n")
        .unwrap();
    assert!(create.wait().unwrap().success());
    let out = cmd(&["token", "create", "admin"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn serve(dir: &std::path::Path, database: Option<&str>) -> LoggedServe {
    let mut cmd = herald_cmd(dir);
    if let Some(url) = database {
        cmd.args(["--database", url]).env("HERALD_SECRET_KEY", KEY);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--registry-token", "tok"])
        .args(["--delivery-allow-networks", "127.0.0.1/32"])
        .args(["--delivery-timeout", "5s", "--delivery-lease", "40s"])
        .args(["--retry-schedule", "0s,200ms,200ms,200ms"])
        .env("NO_COLOR", "1")
        .arg("serve");
    LoggedServe::spawn(cmd)
}

#[tokio::test]
async fn fifo_order_survives_a_sigkilled_process() {
    let pg = if std::env::var("HERALD_TEST_DATABASE").as_deref() == Ok("postgres") {
        Some(
            crate::pg::PgTestDb::create()
                .await
                .expect("HERALD_TEST_DATABASE=postgres needs a PostgreSQL server"),
        )
    } else {
        None
    };
    let database = pg.as_ref().map(|db| db.url.clone());
    let dir = tempfile::tempdir().unwrap();
    let token = admin_token(dir.path(), database.as_deref());
    // Each answer takes a while, so the process is killed with a delivery out.
    let rx = OrderedReceiver::start(0, String::new(), Duration::from_secs(1)).await;
    let mut first = serve(dir.path(), database.as_deref());
    let base = first.base_url();
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    call(
        reqwest::Method::POST,
        "/namespaces".into(),
        json!({"name": "acme"}),
    )
    .await
    .unwrap();
    let hook: Value = call(
        reqwest::Method::POST,
        "/namespaces/acme/webhooks".into(),
        json!({"name": "ordered", "url": rx.url(), "request_method": "POST", "ordering": "fifo"}),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .map(|b| serde_json::from_slice(&b).unwrap())
    .unwrap();
    let id = hook["id"].as_i64().unwrap();
    call(
        reqwest::Method::PATCH,
        format!("/namespaces/acme/webhooks/{id}"),
        json!({"enabled": true}),
    )
    .await
    .unwrap();
    const N: usize = 6;
    for i in 0..N {
        let r = http
            .post(format!("{base}/v2/webhooks/events"))
            .bearer_auth("tok")
            .header("content-type", "application/json")
            .body(push_with_id(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Killed while the third delivery is out.
    eventually(
        Duration::from_secs(10),
        "the third delivery arrives",
        || async { rx.seen().len() >= 3 },
    )
    .await;
    first.stop();
    let second = serve(dir.path(), database.as_deref());
    let mut second = second;
    let base = second.base_url();
    wait_ready(&base).await;
    eventually(Duration::from_secs(40), "every event arrives", || async {
        let seen = rx.seen();
        (0..N).all(|i| seen.contains(&event_id(i)))
    })
    .await;
    let seen = rx.seen();
    let order: Vec<usize> = seen
        .iter()
        .map(|s| (0..N).find(|&i| event_id(i) == *s).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "fifo order broken by the restart: {order:?}"
    );
    assert!(
        order.len() > N,
        "the delivery out when the process died is sent again, before the next: {order:?}"
    );
    second.stop();
}

async fn a_backlog_waits_its_turn_once_its_webhook_turns_fifo(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(3, "eeee"), now).await.unwrap();
    let turn = |ordering| {
        let store = store.clone();
        async move {
            let patch = WebhookPatch {
                ordering: Some(ordering),
                ..Default::default()
            };
            let audit = Audit::new("t", "webhook.update");
            store
                .update_webhook(&acme(), hook, patch, &audit)
                .await
                .unwrap();
        }
    };
    // Written while the webhook was unordered, the three are ordered from the change on.
    turn(DeliveryOrder::Fifo).await;
    let lease = now + secs(60);
    let first = store.claim_due(now, lease, 10).await.unwrap();
    assert_eq!(first.len(), 1, "one at a time after the change: {first:?}");
    assert!(store.claim_due(now, lease, 10).await.unwrap().is_empty());
    // Back to no order: the other two go at once.
    turn(DeliveryOrder::None).await;
    let rest = store.claim_due(now, lease, 10).await.unwrap();
    assert_eq!(rest.len(), 2, "unordered again: {rest:?}");
    assert!(rest.iter().all(|c| c.delivery_id > first[0].delivery_id));
}

async fn a_probe_given_back_goes_again_at_once(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(2, "dddd"), now).await.unwrap();
    let rule = CircuitRule::new(1, Duration::from_secs(30));
    let opened = store
        .webhook_health(hook, Health::Failed, now, DAY, rule)
        .await
        .unwrap();
    assert_eq!(opened.circuit, CircuitChange::Opened);
    let later = now + secs(31);
    let lease = later + secs(60);
    let probe = store.claim_due(later, lease, 10).await.unwrap();
    assert_eq!(probe.len(), 1, "one probe: {probe:?}");
    assert!(store.claim_due(later, lease, 10).await.unwrap().is_empty());
    // Its process stops and gives it back: the probe may go again now, not when the claim
    // would have ended a minute later.
    store.release(&[probe[0].delivery_id]).await.unwrap();
    let again = store.claim_due(later, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1, "a probe again: {again:?}");
    // The same when a restarted process gives back every claim.
    store.release_all_claims().await.unwrap();
    let third = store.claim_due(later, lease, 10).await.unwrap();
    assert_eq!(third.len(), 1, "a probe after the restart: {third:?}");
    let w = store.get_webhook(&acme(), hook).await.unwrap();
    assert_eq!(w.circuit.state, CircuitState::HalfOpen);
}
