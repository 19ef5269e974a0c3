//! Herald on PostgreSQL: the main paths through the real app, processes with one role
//! each, the wakeup listener, and what happens when the database goes away and comes back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald::config::Config;
use herald::Application;
use serde_json::json;
use sqlx::{Connection, Row};

use crate::helpers::*;
use crate::store_contract::{acme_with_hook, pg_store, pushes, secs, sqlite_store};

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";
/// Processes sharing a database share the key that seals webhook secrets.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn push_with_id(prefix: &str) -> Vec<u8> {
    String::from_utf8(fixture(PUSH))
        .unwrap()
        .replace("2045f19c", prefix)
        .into_bytes()
}

#[tokio::test]
async fn ingest_reaches_the_receiver_on_postgres() {
    let Some(app) = spawn_app_pg(&[]).await else {
        return;
    };
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "d", "url": rx.url("/in"), "request_method": "POST", "username": "bot",
                   "password": "pw-123456", "headers": {"X-Token": "tok-secret"}}),
        )
        .await;
    let r = app.post_envelope(fixture(PUSH)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["deliveries"], 1);
    let got = rx.next().await;
    assert_eq!(
        got.header("authorization"),
        Some("Basic Ym90OnB3LTEyMzQ1Ng==")
    );
    assert_eq!(got.header("x-token"), Some("tok-secret"));
    assert_eq!(got.body, fixture_events(PUSH)[0]);
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let id = items[0]["id"].as_i64().unwrap();
    assert_eq!(
        got.header("x-herald-delivery"),
        Some(id.to_string().as_str())
    );
    let detail = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{hook}/deliveries/{id}"),
            None,
        )
        .await
        .body;
    assert_eq!(detail["attempt_count"], 1);
    assert_eq!(detail["attempts"][0]["status"], 200);
    assert_eq!(detail["request"]["body"], fixture_events(PUSH)[0]);
    assert!(!detail.to_string().contains("tok-secret"));
    // The registry retries: the same event is stored and delivered once.
    let again = app.post_envelope(fixture(PUSH)).await;
    assert_eq!(again.body["duplicates"], 1);
    rx.assert_quiet(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn failures_are_retried_and_retrigger_works_on_postgres() {
    let Some(app) = spawn_app_pg(&[]).await else {
        return;
    };
    let rx = Receiver::start().await;
    rx.answer(500);
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    for _ in 0..3 {
        rx.next().await;
    }
    let items = app
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "failed")
        .await;
    assert_eq!(items[0]["attempt_count"], 3);
    assert_eq!(items[0]["last_error"], "the receiver answered 500");
    rx.answer(200);
    let id = items[0]["id"].as_i64().unwrap();
    let base = format!("/namespaces/acme/webhooks/{hook}");
    let r = app
        .api("POST", &format!("{base}/deliveries/{id}/retrigger"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "succeeded");
    assert_eq!(r.body["attempt_count"], 4);
    assert_eq!(r.body["attempts"][3]["manual"], true);
    let got = rx.next().await;
    assert_eq!(
        got.header("x-herald-delivery"),
        Some(id.to_string().as_str())
    );
    let trail = app
        .api("GET", "/activities?namespace=acme", None)
        .await
        .body;
    assert_eq!(trail["items"][0]["action"], "webhook.delivery.retrigger");
}

#[tokio::test]
async fn api_and_worker_processes_split_the_work() {
    let Some(api) = spawn_app_pg(&["--api", "--secret-key", KEY]).await else {
        return;
    };
    let url = api.db.as_ref().unwrap().url.clone();
    let rx = Receiver::start().await;
    api.create_namespace("acme").await;
    let hook = api
        .enabled_webhook(
            "acme",
            json!({"name": "d", "url": rx.url("/"), "username": "bot", "password": "pw-123456"}),
        )
        .await;
    let r = api.post_envelope(push_with_id("aaaa0001")).await;
    assert_eq!(r.body["deliveries"], 1, "{:?}", r.body);
    rx.assert_quiet(Duration::from_millis(1200)).await;

    // A worker-only process on the same database sends what the API process stored.
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_args([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database",
        &url,
        "--worker",
        "--secret-key",
        KEY,
        "--registry-token",
        "test-registry-token",
        "--delivery-allow-networks",
        "127.0.0.1/32",
        "--template-sandbox-exe",
        env!("CARGO_BIN_EXE_herald"),
    ])
    .unwrap();
    let worker = Application::build(config).await.unwrap();
    let worker_addr = worker.local_addr();
    tokio::spawn(worker.run(std::future::pending()));
    let got = rx.next().await;
    assert_eq!(
        got.header("authorization"),
        Some("Basic Ym90OnB3LTEyMzQ1Ng=="),
        "the worker opens secrets the API process sealed"
    );
    api.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    // New deliveries go out too, whichever process stored them.
    api.post_envelope(push_with_id("aaaa0002")).await;
    rx.next().await;

    // The worker serves health checks and nothing else.
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{worker_addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let no_api = client
        .get(format!("http://{worker_addr}/api/v1/namespaces"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(no_api.status(), 404);
    assert!(no_api.text().await.unwrap().contains("--worker"));
    let no_ingest = client
        .post(format!("http://{worker_addr}/v2/webhooks/events"))
        .bearer_auth("test-registry-token")
        .header("content-type", "application/json")
        .body(push_with_id("aaaa0003"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_ingest.status(), 404);

    // Retrigger works from the API-only process: it sends directly.
    let items = api
        .wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let id = items[0]["id"].as_i64().unwrap();
    let r = api
        .api(
            "POST",
            &format!("/namespaces/acme/webhooks/{hook}/deliveries/{id}/retrigger"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        rx.next().await.header("x-herald-delivery"),
        Some(id.to_string().as_str())
    );
}

#[tokio::test]
async fn a_database_outage_answers_5xx_and_herald_recovers() {
    let Some(app) = spawn_app_pg(&[]).await else {
        return;
    };
    let db = app.db.as_ref().unwrap();
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;

    // As good as a server restart, without touching the shared server: no connection to
    // this database is allowed, and every open one is cut.
    db.admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        db.name
    ))
    .await;
    db.terminate_connections().await;
    let body = push_with_id("bbbb0001");
    let refused = app.post_envelope(body.clone()).await;
    assert!(
        refused.status >= 500,
        "ingest must fail (so the registry retries), not lose the event: {} {:?}",
        refused.status,
        refused.body
    );
    db.admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .await;

    // The registry retries until it gets a 2xx; the pool reconnects, the workers go on.
    let stored = eventually(Duration::from_secs(20), "ingest recovers", || async {
        let r = app.post_envelope(body.clone()).await;
        (r.status == 200).then_some(r.body)
    })
    .await;
    assert_eq!(stored["deliveries"], 1, "{stored:?}");
    let got = rx.next().await;
    assert!(got.body.contains("bbbb0001"));
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
}

/// The backend pid listening for wakeups in `db`, once there is one other than `not`.
async fn listener_pid(db: &crate::pg::PgTestDb, not: Option<i32>) -> i32 {
    eventually(
        Duration::from_secs(15),
        "somebody listens for wakeups",
        || async {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.ok()?;
            let pids: Vec<i32> = sqlx::query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
            )
            .bind(&db.name)
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i32, _>("pid"))
            .collect();
            let _ = conn.close().await;
            pids.into_iter().find(|p| Some(*p) != not)
        },
    )
    .await
}

async fn wait_for_more(count: &AtomicUsize, than: usize) {
    eventually(
        Duration::from_secs(5),
        &format!("a wakeup comes (still {than})"),
        || async { count.load(Ordering::SeqCst) > than },
    )
    .await;
}

#[tokio::test]
async fn wakeups_come_from_other_processes_and_survive_a_lost_connection() {
    let Some(s) = pg_store().await else {
        return;
    };
    let db = s.db.as_ref().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let task = s
        .store
        .wakeups(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }))
        .expect("PostgreSQL wakes the other processes");
    let listening = tokio::spawn(task);
    // Another store on the same database stands for another process.
    let other = {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database",
            &db.url,
        ])
        .unwrap();
        herald::open_store(&config).await.unwrap()
    };
    acme_with_hook(&other).await;
    let first = listener_pid(db, None).await;
    // A listener wakes the workers once when it (re)connects, for what it missed.
    wait_for_more(&count, 0).await;
    let before = count.load(Ordering::SeqCst);
    // Nothing to deliver: no wakeup.
    other
        .ingest(
            &pushes(1, "skip")
                .into_iter()
                .map(|mut e| {
                    // An event no webhook's filters take: a pull.
                    e.disposition = herald::domain::events::Disposition::Skip("test".into());
                    if let Some(f) = e.facts.as_mut() {
                        f.action = herald::domain::events::Action::Pull;
                    }
                    e
                })
                .collect::<Vec<_>>(),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_stays(
        Duration::from_millis(300),
        "an ingest without deliveries wakes nobody",
        || async { count.load(Ordering::SeqCst) == before },
    )
    .await;
    other.ingest(&pushes(1, "ffff"), Utc::now()).await.unwrap();
    wait_for_more(&count, before).await;

    // The connection is cut: the listener comes back by itself and hears the next one.
    let cut = count.load(Ordering::SeqCst);
    db.terminate_connections().await;
    listener_pid(db, Some(first)).await;
    wait_for_more(&count, cut).await;
    let before = count.load(Ordering::SeqCst);
    other.ingest(&pushes(1, "eeee"), Utc::now()).await.unwrap();
    wait_for_more(&count, before).await;
    listening.abort();
}

#[tokio::test]
async fn sqlite_has_no_cross_process_wakeups() {
    let s = sqlite_store().await;
    assert!(s.store.wakeups(Arc::new(|| {})).is_none());
}

#[tokio::test]
async fn claims_skip_rows_another_transaction_holds() {
    let Some(s) = pg_store().await else {
        return;
    };
    let db = s.db.as_ref().unwrap();
    acme_with_hook(&s.store).await;
    let now = Utc::now();
    s.store.ingest(&pushes(3, "abcd"), now).await.unwrap();
    let mut conn = db.connect().await;
    let mut tx = conn.begin().await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT id FROM deliveries ORDER BY id LIMIT 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    // Neither waits for the held row nor takes it.
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        s.store.claim_due(now, now + secs(10), 10),
    )
    .await
    .expect("a claim does not wait for a locked row")
    .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|c| c.delivery_id != held));
    tx.rollback().await.unwrap();
    let rest = s.store.claim_due(now, now + secs(10), 10).await.unwrap();
    let ids: Vec<i64> = rest.iter().map(|c| c.delivery_id).collect();
    assert_eq!(ids, [held]);
}

/// A table's scans as the statistics show them: sequential, and of its primary key. The
/// other client sessions on the database are ended first (the store's pool connects again
/// when next used): a session passes its statistics on as it exits, else only when it has
/// been idle for a while. Autovacuum, which counts no scans, is left alone.
async fn scans(conn: &mut sqlx::PgConnection, table: &str) -> (i64, i64) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_type = 'client backend'",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let conn = tokio::sync::Mutex::new(conn);
    eventually(
        Duration::from_secs(10),
        "the other sessions ended",
        || async {
            let mut conn = conn.lock().await;
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
            )
            .fetch_one(&mut **conn)
            .await
            .unwrap();
            others == 0
        },
    )
    .await;
    let conn = conn.into_inner();
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT t.seq_scan, i.idx_scan FROM pg_stat_user_tables t \
         JOIN pg_stat_user_indexes i ON i.relid = t.relid AND i.indexrelname = t.relname || '_pkey' \
         WHERE t.relname = $1",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// A claim's jobs are read by primary key, however many deliveries are stored: PostgreSQL
/// guessed the claimed ids' list at 100 rows and hashed it against a scan of the whole
/// table, a read that grew with the history (14 ms per claim at 20,000 deliveries).
#[tokio::test]
async fn a_claims_jobs_are_read_by_key_not_by_scanning_the_table() {
    let Some(s) = pg_store().await else {
        return;
    };
    let db = s.db.as_ref().unwrap();
    acme_with_hook(&s.store).await;
    s.store
        .ingest(&pushes(3000, "scan"), Utc::now())
        .await
        .unwrap();
    let mut conn = db.connect().await;
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM deliveries ORDER BY id LIMIT 50")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let (seq_before, key_before) = scans(&mut conn, "deliveries").await;
    for _ in 0..10 {
        assert_eq!(s.store.load_jobs(&ids).await.unwrap().len(), 50);
    }
    let (seq_after, key_after) = scans(&mut conn, "deliveries").await;
    assert_eq!(seq_after, seq_before, "the loads scanned the whole table");
    assert!(
        key_after >= key_before + 10,
        "ten loads read the primary key {} times",
        key_after - key_before
    );
}

/// Counts each delivery's requests and notes any that arrive while the same delivery is
/// still being answered.
#[derive(Default)]
struct Tally {
    sends: std::collections::HashMap<String, usize>,
    in_flight: std::collections::HashSet<String>,
    overlaps: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_waited_past_its_lease_does_not_send_what_another_took() {
    // One send at a time per webhook and process, each answered after 700 ms, leases of
    // 1.5 s: most claims expire while waiting for their turn, and the other process (or
    // this one) claims them again. Nobody dies, so each delivery goes out exactly once.
    let flags = [
        "--secret-key",
        KEY,
        "--delivery-timeout",
        "1s",
        "--delivery-lease",
        "1500ms",
        "--delivery-concurrency-per-webhook",
        "1",
    ];
    let Some(a) = spawn_app_pg(&flags).await else {
        return;
    };
    let url = a.db.as_ref().unwrap().url.clone();
    let tally: Arc<std::sync::Mutex<Tally>> = Arc::default();
    let state = tally.clone();
    let slow = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let tally = state.clone();
        async move {
            let id = headers
                .get("x-herald-delivery")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            {
                let mut t = tally.lock().unwrap();
                *t.sends.entry(id.clone()).or_default() += 1;
                if !t.in_flight.insert(id.clone()) {
                    t.overlaps.push(id.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            tally.lock().unwrap().in_flight.remove(&id);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rx_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow).await.unwrap() });
    a.create_namespace("acme").await;
    let hook = a
        .enabled_webhook(
            "acme",
            json!({"name": "slow", "url": format!("http://{rx_addr}/")}),
        )
        .await;
    for i in 0..6 {
        let r = a.post_envelope(push_with_id(&format!("cafe{i:04}"))).await;
        assert_eq!(r.status, 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database",
        &url,
        "--worker",
        "--delivery-allow-networks",
        "127.0.0.1/32",
        "--template-sandbox-exe",
        env!("CARGO_BIN_EXE_herald"),
    ];
    args.extend(flags);
    let b = Application::build(Config::from_args(args).unwrap())
        .await
        .unwrap();
    tokio::spawn(b.run(std::future::pending()));

    let items = eventually(
        Duration::from_secs(30),
        "all 6 deliveries succeed",
        || async {
            let body = a
                .api(
                    "GET",
                    &format!("/namespaces/acme/webhooks/{hook}/deliveries"),
                    None,
                )
                .await
                .body;
            let items = body["items"].as_array().cloned().unwrap_or_default();
            (items.len() == 6 && items.iter().all(|d| d["state"] == "succeeded")).then_some(items)
        },
    )
    .await;
    assert!(items.iter().all(|d| d["attempt_count"] == 1), "{items:?}");
    // Past one more lease (1.5 s), no delivery is sent again.
    assert_stays(
        Duration::from_millis(1500),
        "no delivery is sent again once all succeeded",
        || async {
            let t = tally.lock().unwrap();
            t.sends.len() == 6 && t.sends.values().all(|n| *n == 1)
        },
    )
    .await;
    let t = tally.lock().unwrap();
    assert!(
        t.overlaps.is_empty(),
        "sent twice at once: {:?}",
        t.overlaps
    );
    assert_eq!(t.sends.len(), 6);
    assert!(
        t.sends.values().all(|n| *n == 1),
        "each delivery exactly once: {:?}",
        t.sends
    );
}
