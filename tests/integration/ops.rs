//! Operating Herald: metrics, health, request ids, configuration sources, completions,
//! retention, and graceful shutdown of the real binary.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

#[tokio::test]
async fn metrics_count_events_deliveries_and_requests() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    app.post_envelope(fixture("distribution-2.8.2/push-layer-blob.json"))
        .await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    for expected in [
        "herald_events_received_total{action=\"push\"} 2",
        "herald_events_not_delivered_total{status=\"skipped\",reason=\"blob_push\"} 1",
        "herald_delivery_attempts_total{outcome=\"succeeded\"} 1",
        "herald_delivery_attempt_duration_seconds_count 1",
        "herald_queue_depth{state=\"pending\"} 0",
        "herald_oldest_due_delivery_age_seconds 0",
        "herald_webhooks_auto_disabled_total 0",
        "herald_http_requests_total{route=\"/v2/webhooks/events\",method=\"POST\",status=\"200\"} 2",
        "herald_http_requests_total{route=\"/api/v1/namespaces/{ns}/webhooks/{id}/deliveries\",method=\"GET\",status=\"200\"}",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

/// The not-delivered counter says what was committed: a pull that a webhook's filter asked
/// for was delivered and is not counted as skipped, a duplicate is counted as a duplicate
/// only, and a pull no webhook wants is skipped.
#[tokio::test]
async fn metrics_count_what_ingest_committed() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook(
            "acme",
            json!({"name": "pulls", "url": rx.url("/"), "filters": {"actions": ["pull"], "repositories": ["web"]}}),
        )
        .await;
    let pull = fixture("distribution-2.8.2/pull-manifest.json");
    assert_eq!(app.post_envelope(pull.clone()).await.body["deliveries"], 1);
    assert_eq!(app.post_envelope(pull.clone()).await.body["duplicates"], 1);
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "succeeded")
        .await;
    let metrics = || async {
        app.call("GET", "/metrics", None, None)
            .await
            .body
            .as_str()
            .unwrap()
            .to_string()
    };
    let text = metrics().await;
    assert!(
        !text.contains("reason=\"pull\""),
        "a delivered pull counted as not delivered:\n{text}"
    );
    assert!(text.contains("herald_events_duplicate_total 1"), "{text}");
    // Another repository: no webhook wants this pull.
    let other = String::from_utf8(pull)
        .unwrap()
        .replace("acme/web", "acme/api")
        .replace("\"id\": \"", "\"id\": \"x");
    assert_eq!(
        app.post_envelope(other.into_bytes()).await.body["skipped"],
        1
    );
    let text = metrics().await;
    assert!(
        text.contains("herald_events_not_delivered_total{status=\"skipped\",reason=\"pull\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn readiness_checks_the_database_migrations_writer_and_dispatcher() {
    let app = spawn_app().await;
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["checks"],
        json!({"database": true, "migrations": true, "writer": true, "dispatcher": true, "ingest": true})
    );
    assert_eq!(app.call("GET", "/healthz", None, None).await.status, 200);
}

/// A process whose envelopes keep failing to be stored (a full disk, here a trigger that
/// refuses every event) is not ready, saying why, until one is stored again.
#[tokio::test]
async fn readiness_fails_while_envelopes_cannot_be_stored() {
    let app = spawn_app().await;
    app.raw_sql(
        "CREATE TRIGGER disk_full BEFORE INSERT ON events BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END",
        "CREATE FUNCTION disk_full() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER disk_full BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION disk_full()",
    )
    .await;
    for i in 0..3 {
        let r = app.post_envelope(push_with_id(i)).await;
        assert!(r.status >= 500, "{i}: {} {:?}", r.status, r.body);
        let ready = app.call("GET", "/readyz", None, None).await;
        assert_eq!(
            ready.status == 200,
            i < 2,
            "after {} failures: {:?}",
            i + 1,
            ready.body
        );
    }
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.body["checks"]["ingest"], false, "{:?}", r.body);
    let detail = r.body["detail"]["ingest"].as_str().unwrap();
    assert!(detail.contains("could not be stored"), "{detail}");
    app.raw_sql("DROP TRIGGER disk_full", "DROP TRIGGER disk_full ON events")
        .await;
    assert_eq!(app.post_envelope(push_with_id(9)).await.status, 200);
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Polls `/readyz` until `check` accepts the answer, or fails after 8 s.
async fn wait_readyz(app: &TestApp, check: impl Fn(&Resp) -> bool) -> Resp {
    eventually(Duration::from_secs(8), "/readyz matched", || async {
        let r = app.call("GET", "/readyz", None, None).await;
        check(&r).then_some(r)
    })
    .await
}

/// Holds SQLite's write lock from another connection, as a stuck writer would meet it: the
/// group committer's BEGIN IMMEDIATE waits (up to its 10 s busy timeout) until it is let go.
async fn hold_write_lock(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Sqlite> {
    let url = format!("sqlite://{}", app.dir.path().join("herald.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    pool.begin_with("BEGIN IMMEDIATE").await.unwrap()
}

/// A writer stuck on one batch longer than --ready-stall-timeout takes the process out of
/// service, and it is ready again once the batch is through.
#[tokio::test]
async fn readiness_fails_while_the_writer_is_stuck_and_recovers() {
    let app = spawn_app_with(&["--ready-stall-timeout", "1s"]).await;
    if app.db.is_some() {
        eprintln!("SKIPPED: the group-commit writer is SQLite's");
        return;
    }
    wait_readyz(&app, |r| r.status == 200).await;
    let lock = hold_write_lock(&app).await;
    // An envelope now waits for the writer, and the writer for the lock.
    let request = app
        .client
        .post(app.url("/v2/webhooks/events"))
        .bearer_auth(&app.registry_token)
        .header("content-type", "application/json")
        .body(fixture(PUSH))
        .send();
    let envelope = tokio::spawn(request);
    let r = wait_readyz(&app, |r| r.status == 503).await;
    assert_eq!(r.body["checks"]["writer"], false, "{:#}", r.body);
    assert_eq!(r.body["checks"]["database"], true, "readers still answer");
    lock.rollback().await.unwrap();
    assert_eq!(envelope.await.unwrap().unwrap().status(), 200);
    let r = wait_readyz(&app, |r| r.status == 200).await;
    assert_eq!(r.body["checks"]["writer"], true);
}

/// A claim loop stuck in one round (here: a claim waiting for the writer) takes the
/// process out of service too, and it is ready again once the loop goes round.
#[tokio::test]
async fn readiness_fails_while_the_dispatcher_is_stuck_and_recovers() {
    let app = spawn_app_with(&["--ready-stall-timeout", "1s", "--retry-schedule", "0s,3s"]).await;
    if app.db.is_some() {
        eprintln!("SKIPPED: the claim waits for SQLite's group-commit writer here");
        return;
    }
    let rx = Receiver::start().await;
    rx.answer(500);
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    assert_eq!(app.post_envelope(fixture(PUSH)).await.status, 200);
    rx.next().await;
    app.wait_deliveries("acme", hook, |d| d[0]["state"] == "retrying")
        .await;
    rx.answer(200);
    // The retry falls due about 3 s after the first attempt; its claim then waits.
    let lock = hold_write_lock(&app).await;
    let r = wait_readyz(&app, |r| r.body["checks"]["dispatcher"] == false).await;
    assert_eq!(r.status, 503, "{:#}", r.body);
    lock.rollback().await.unwrap();
    let retry = rx.next().await;
    assert_eq!(retry.header("x-herald-event"), Some("push"));
    let r = wait_readyz(&app, |r| r.status == 200).await;
    assert_eq!(r.body["checks"]["dispatcher"], true);
}

/// The mode bits of every entry of `dir`, by name.
#[cfg(unix)]
fn modes_in(dir: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut modes: Vec<(String, u32)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            (e.file_name().to_string_lossy().into_owned(), mode)
        })
        .collect();
    modes.sort();
    modes
}

/// The database, its WAL and SHM, the token and the key are Herald's user's alone.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_every_file_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let data_arg = data.display().to_string();
    // An empty --registry-token: Herald generates its file too.
    let app = spawn_app_with(&["--data-dir", &data_arg, "--registry-token", ""]).await;
    let token = app.state.registry_token.expose().to_string();
    let v1 = "application/vnd.docker.distribution.events.v1+json";
    let r = app.post_envelope_as(fixture(PUSH), v1, Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory is {mode:o}");
    let modes = modes_in(&data);
    let names: Vec<&str> = modes.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"secret.key"), "{names:?}");
    assert!(names.contains(&"registry-token"), "{names:?}");
    if app.db.is_none() {
        for name in ["herald.db", "herald.db-wal", "herald.db-shm"] {
            assert!(names.contains(&name), "{name} exists: {names:?}");
        }
    }
    for (name, mode) in &modes {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
    }
}

/// An existing data directory (and database) that others could read is tightened.
#[cfg(unix)]
#[tokio::test]
async fn an_existing_open_data_directory_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let open_file = |name: &str, contents: &str| {
        let path = data.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    open_file("secret.key", &format!("{key}\n"));
    if std::env::var("HERALD_TEST_DATABASE").as_deref() != Ok("postgres") {
        open_file("herald.db", "");
    }
    let data_arg = data.display().to_string();
    let app = spawn_app_with(&["--data-dir", &data_arg]).await;
    assert_eq!(app.post_envelope(fixture(PUSH)).await.status, 200);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory is {mode:o}");
    for (name, mode) in modes_in(&data) {
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 16);
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "from-the-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "from-the-caller");
}

#[tokio::test]
async fn retention_removes_old_and_excess_finished_deliveries_only() {
    let app = spawn_app_with(&["--retention-days", "30", "--retention-max-per-webhook", "3"]).await;
    let rx = Receiver::start().await;
    app.create_namespace("acme").await;
    let hook = app
        .enabled_webhook("acme", json!({"name": "d", "url": rx.url("/")}))
        .await;
    // Two deliveries "from 40 days ago", then five recent ones.
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    for i in 0..2 {
        let events = herald::registry::envelope::parse_envelope(&push_with_id(i)).unwrap();
        app.store.ingest(&events, old).await.unwrap();
    }
    for i in 10..15 {
        app.post_envelope(push_with_id(i)).await;
    }
    let items = app
        .wait_deliveries("acme", hook, |d| {
            d.as_array().unwrap().len() == 7
                && d.as_array()
                    .unwrap()
                    .iter()
                    .all(|x| x["state"] == "succeeded")
        })
        .await;
    assert_eq!(items.as_array().unwrap().len(), 7);
    // One still waiting to be sent is never pruned, however old.
    rx.answer(500);
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{hook}"),
        Some(json!({"enabled": false})),
    )
    .await;
    let events = herald::registry::envelope::parse_envelope(&push_with_id(99)).unwrap();
    let hook2 = app
        .enabled_webhook("acme", json!({"name": "paused", "url": rx.url("/x")}))
        .await;
    app.api(
        "PATCH",
        &format!("/namespaces/acme/webhooks/{hook2}"),
        Some(json!({"url": "http://127.0.0.1:1/"})),
    )
    .await;
    app.store.ingest(&events, old).await.unwrap();

    let deleted = herald::maintenance::sweep(&app.state).await.unwrap();
    let left = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{hook}/deliveries"),
            None,
        )
        .await
        .body;
    let left: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 3, "the newest three are kept: {left:?}");
    assert!(left.iter().all(|id| id.starts_with("000000")));
    assert!(deleted >= 4, "two old + two beyond the cap, got {deleted}");
    let other = app
        .api(
            "GET",
            &format!("/namespaces/acme/webhooks/{hook2}/deliveries"),
            None,
        )
        .await
        .body;
    assert_eq!(
        other["items"].as_array().unwrap().len(),
        1,
        "unfinished deliveries stay"
    );
}

#[test]
fn configuration_comes_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9001\"\nregistry_token = \"from-file\"\nretry_schedule = [\"0s\", \"1m\"]\n[delivery]\ntimeout = \"7s\"\nconcurrency = 11\n",
    )
    .unwrap();
    let run = |extra_env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = herald_cmd(dir.path());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd
            .arg("--config")
            .arg(&file)
            .args(args)
            .arg("config")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[], &[]);
    for line in [
        "listen = 127.0.0.1:9001",
        "delivery_timeout = 7s",
        "delivery_concurrency = 11",
        "retry_schedule = 0s,1m",
    ] {
        // Each line is `key = value  # source`.
        assert!(
            text.lines()
                .any(|l| l.split("  #").next().map(str::trim_end) == Some(line)),
            "missing {line} in\n{text}"
        );
    }
    assert!(
        text.contains("registry_token = ********") && !text.contains("from-file"),
        "secrets are masked"
    );
    let text = run(&[("HERALD_DELIVERY_TIMEOUT", "8s")], &[]);
    assert!(
        text.contains("delivery_timeout = 8s"),
        "the environment wins over the file"
    );
    let text = run(
        &[("HERALD_DELIVERY_TIMEOUT", "8s")],
        &["--delivery-timeout", "9s"],
    );
    assert!(
        text.contains("delivery_timeout = 9s"),
        "a flag wins over both"
    );

    std::fs::write(&file, "[delivery]\ntimout = \"7s\"\n").unwrap();
    let out = herald_cmd(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("unknown configuration key 'delivery.timout'"));

    std::fs::write(&file, "retry_schedule = \"soon\"\n").unwrap();
    let out = herald_cmd(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key 'retry_schedule' is invalid") && err.contains("soon"),
        "{err}"
    );
}

#[test]
fn shell_completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = herald_cmd(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("registry-config"),
            "{shell} completion knows the subcommands"
        );
    }
}

struct Serve(Option<Child>);

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serve(dir: &std::path::Path, port: u16) -> Serve {
    Serve(Some(
        herald_cmd(dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--registry-token",
                "tok",
                "--log-format",
                "json",
            ])
            .args(["--delivery-allow-networks", "127.0.0.1/32"])
            .args(["--shutdown-grace", "300ms", "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

#[tokio::test]
async fn sigterm_finishes_or_hands_back_deliveries_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let token = cli_admin_token(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let rx = Receiver::start().await;
    rx.delay(1500);

    let mut first = serve(dir.path(), port);
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str, body: Value| {
        http.request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        api(
            reqwest::Method::POST,
            "/namespaces",
            json!({"name": "acme"})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    let hook: Value = serde_json::from_slice(
        &api(
            reqwest::Method::POST,
            "/namespaces/acme/webhooks",
            json!({"name": "slow", "url": rx.url("/")}),
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
        &format!("/namespaces/acme/webhooks/{}", hook["id"]),
        json!({"enabled": true}),
    )
    .await
    .unwrap();
    const N: usize = 10;
    for i in 0..N {
        let res = http
            .post(format!("{base}/v2/webhooks/events"))
            .bearer_auth("tok")
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(push_with_id(i))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    fn note(seen: &mut HashMap<String, usize>, c: Captured) {
        *seen
            .entry(c.json()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    note(&mut seen, rx.next().await);

    // SIGTERM while deliveries are in flight: exit 0 within the grace.
    let mut child = first.0.take().expect("the first process");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = eventually(Duration::from_secs(10), "herald stopped on SIGTERM", || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "a graceful stop exits 0, got {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let json_lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !json_lines.is_empty() && json_lines.len() == stderr.lines().count(),
        "--log-format json: {stderr}"
    );
    assert!(
        json_lines
            .iter()
            .any(|l| l["span"]["request_id"].is_string()),
        "log lines carry the request id"
    );
    assert!(
        !stderr.contains("tok\""),
        "the registry token is never logged"
    );

    // Restarted, Herald sends whatever was handed back: every event arrives.
    let _second = serve(dir.path(), port);
    wait_ready(&base).await;
    rx.delay(0);
    while seen.len() < N {
        let c = rx
            .next_within(Duration::from_secs(20))
            .await
            .expect("every event arrives after the restart");
        note(&mut seen, c);
    }
    let twice = seen.values().filter(|&&n| n > 1).count();
    println!(
        "graceful shutdown: {N} events, {twice} delivered more than once (handed back mid-send)"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc = app
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .body;
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("post", "/v2/webhooks/events"),
        ("post", "/v2/sources/{name}/events"),
        ("get", "/api/v1/sources"),
        ("post", "/api/v1/sources"),
        ("get", "/api/v1/sources/{name}"),
        ("patch", "/api/v1/sources/{name}"),
        ("delete", "/api/v1/sources/{name}"),
        ("post", "/api/v1/sources/{name}/reconcile"),
        ("get", "/api/v1/sources/{name}/reconcile"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/v1/namespaces"),
        ("post", "/api/v1/namespaces"),
        ("get", "/api/v1/namespaces/{ns}"),
        ("delete", "/api/v1/namespaces/{ns}"),
        ("get", "/api/v1/namespaces/{ns}/webhooks"),
        ("post", "/api/v1/namespaces/{ns}/webhooks"),
        ("get", "/api/v1/namespaces/{ns}/webhooks/{id}"),
        ("patch", "/api/v1/namespaces/{ns}/webhooks/{id}"),
        ("delete", "/api/v1/namespaces/{ns}/webhooks/{id}"),
        (
            "put",
            "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}",
        ),
        (
            "delete",
            "/api/v1/namespaces/{ns}/webhooks/{id}/headers/{name}",
        ),
        (
            "post",
            "/api/v1/namespaces/{ns}/webhooks/{id}/rotate-secret",
        ),
        ("post", "/api/v1/namespaces/{ns}/webhooks/{id}/recover"),
        ("post", "/api/v1/namespaces/{ns}/webhooks/{id}/ping"),
        ("get", "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries"),
        (
            "get",
            "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}",
        ),
        (
            "post",
            "/api/v1/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}/retrigger",
        ),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/activities"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/me"),
        ("patch", "/api/v1/users/{name}"),
        ("get", "/api/v1/teams"),
        ("post", "/api/v1/teams"),
        ("get", "/api/v1/teams/{team}"),
        ("put", "/api/v1/teams/{team}/members/{user}"),
        ("delete", "/api/v1/teams/{team}/members/{user}"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        expected.len(),
        "the document has routes this test does not know: {:?}",
        paths.keys()
    );
    // Each documented route is served (the router is built from the same annotations).
    for (method, path) in expected {
        let concrete = path
            .replace("{ns}", "acme")
            .replace("{id}", "1")
            .replace("{delivery}", "1")
            .replace("{name}", "x")
            .replace("{team}", "t")
            .replace("{user}", "u");
        let r = app
            .call(&method.to_uppercase(), &concrete, None, None)
            .await;
        assert!(
            r.status != 404 || r.body["error"]["message"] != "no such route",
            "{method} {path} is not served"
        );
        assert_ne!(r.status, 405, "{method} {path}");
    }
    for schema in [
        "WebhookView",
        "DeliveryDetail",
        "ErrorBody",
        "Namespace",
        "Team",
        "Activity",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
}

/// Which webhooks are failing, in the metrics: counts by state, and each failing webhook by
/// id with how long it has failed (bounded: the longest failing 50). A receiver that
/// refuses connections shows within a few attempts, its circuit open.
#[tokio::test]
async fn metrics_name_the_failing_webhooks() {
    let app = spawn_app_with(&["--circuit-failures", "2"]).await;
    app.create_namespace("acme").await;
    let dead = app
        .enabled_webhook(
            "acme",
            json!({"name": "dead", "url": "http://127.0.0.1:9/"}),
        )
        .await;
    let rx = Receiver::start().await;
    app.enabled_webhook("acme", json!({"name": "fine", "url": rx.url("/")}))
        .await;
    app.post_envelope(fixture(PUSH)).await;
    rx.next().await;
    app.wait_deliveries("acme", dead, |d| d[0]["attempt_count"].as_i64() >= Some(2))
        .await;
    let text = eventually(Duration::from_secs(10), "the metrics name it", || async {
        let m = app.call("GET", "/metrics", None, None).await;
        let text = m.body.as_str().unwrap_or_default().to_string();
        (text.contains("herald_webhooks{state=\"circuit_open\"} 1")
            && text.contains(&format!(
                "herald_webhook_failing_seconds{{webhook_id=\"{dead}\",namespace=\"acme\"}}"
            )))
        .then_some(text)
    })
    .await;
    for line in [
        "herald_webhooks{state=\"enabled\"} 2",
        "herald_webhooks{state=\"disabled\"} 0",
        "herald_webhooks{state=\"failing\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
