//! Starting again after a crash, and refusing to start wrongly: one process owns a SQLite data
//! directory and gives back the dead run's claims at once; a process with another secret key
//! than the database's refuses to start instead of failing deliveries.

use std::process::{Child, Stdio};
use std::time::Duration;

use herald::config::Config;
use herald::Application;
use serde_json::{json, Value};

use crate::helpers::*;

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHhscGRoXGBUWExQREg8QDQ4LDAkKBwgFBgMEAQI=";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `herald serve` child, killed when dropped, so a failing test leaves no process behind.
struct Serve(Child);

impl Serve {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `herald serve` on SQLite with the default lease (2 x 30 s + 30 s), so a delivery that
/// waited for its lease would take 90 s.
fn serve(dir: &std::path::Path, port: u16) -> Serve {
    Serve(serve_child(dir, port))
}

fn serve_child(dir: &std::path::Path, port: u16) -> Child {
    herald_cmd(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--registry-token", "tok"])
        .args(["--delivery-allow-networks", "127.0.0.1/32"])
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A `herald serve` on SQLite with an enabled webhook to `rx` in namespace acme.
struct Crashing {
    dir: tempfile::TempDir,
    port: u16,
    herald: Serve,
    http: reqwest::Client,
}

impl Crashing {
    async fn start(rx: &Receiver) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = cli_admin_token(dir.path());
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let herald = serve(dir.path(), port);
        wait_ready(&base).await;
        let http = reqwest::Client::new();
        let api = |method: reqwest::Method, path: &str, body: Value| {
            http.request(method, format!("{base}/api/v1{path}"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        api(
            reqwest::Method::POST,
            "/namespaces",
            json!({"name": "acme"}),
        )
        .await
        .unwrap();
        let hook: Value = api(
            reqwest::Method::POST,
            "/namespaces/acme/webhooks",
            json!({"name": "d", "url": rx.url("/")}),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
        api(
            reqwest::Method::PATCH,
            &format!("/namespaces/acme/webhooks/{}", hook["id"]),
            json!({"enabled": true}),
        )
        .await
        .unwrap();
        Self {
            dir,
            port,
            herald,
            http,
        }
    }

    async fn push(&self, i: usize) {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}/v2/webhooks/events", self.port))
            .bearer_auth("tok")
            .header("content-type", "application/json")
            .body(push_with_id(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Kills the process and starts another on the same data directory; all of `ids` must
    /// then arrive well before the dead run's 90-s leases end.
    async fn kill_and_expect(mut self, rx: &Receiver, ids: std::ops::Range<usize>) {
        self.herald.kill();
        rx.delay(0);
        let restarted = tokio::time::Instant::now();
        let _herald = serve(self.dir.path(), self.port);
        let mut seen = std::collections::HashSet::new();
        while seen.len() < ids.len() {
            let c = rx
                .next_within(Duration::from_secs(15))
                .await
                .expect("the dead run's deliveries are sent again without waiting for their lease");
            let id = c.json()["id"].as_str().unwrap().to_string();
            if ids.clone().any(|i| id.contains(&format!("{i:08}"))) {
                seen.insert(id);
            }
        }
        let took = restarted.elapsed();
        assert!(
            took < Duration::from_secs(15),
            "took {took:?}, the lease is 90 s"
        );
    }
}

#[tokio::test]
async fn after_sigkill_a_restarted_sqlite_herald_sends_what_the_dead_one_held_at_once() {
    let rx = Receiver::start().await;
    // The receiver hangs, so the first run holds its deliveries' claims when it dies.
    rx.delay(120_000);
    let herald = Crashing::start(&rx).await;
    const N: usize = 5;
    for i in 0..N {
        herald.push(i).await;
    }
    // Deliveries are out (claimed, their requests hanging) before the kill: a receiver
    // not heard from yet is in the slow lane, which sends two of a webhook at once.
    rx.next().await;
    rx.next().await;
    herald.kill_and_expect(&rx, 0..N).await;
}

/// Deliveries born claimed by ingest are leased like claimed ones: a crash right after the
/// registry's 200 leaves them to the next start, which sends them at once.
#[tokio::test]
async fn after_sigkill_deliveries_born_claimed_are_sent_at_once() {
    let rx = Receiver::start().await;
    let herald = Crashing::start(&rx).await;
    // Quick answers put the webhook in the fast lane, where ingest hands deliveries off.
    let handed_off = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("herald_deliveries_taken_total{by=\"hand_off\"} "))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut warm = 100;
    while handed_off(herald.metrics().await) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery was born claimed"
        );
        herald.push(warm).await;
        rx.next().await;
        warm += 1;
    }
    let before = handed_off(herald.metrics().await);
    rx.delay(120_000);
    const N: usize = 5;
    for i in 0..N {
        herald.push(i).await;
    }
    assert_eq!(handed_off(herald.metrics().await), before + N);
    // All out (the fast lane sends 8 of a webhook at once), their requests hanging.
    for _ in 0..N {
        rx.next().await;
    }
    herald.kill_and_expect(&rx, 0..N).await;
}

#[tokio::test]
async fn a_second_herald_on_the_same_sqlite_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = serve(dir.path(), port);
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    let second = serve_child(dir.path(), free_port());
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another `herald serve`") && stderr.contains(&first.id().to_string()),
        "{stderr}"
    );
    first.kill();
}

fn config(dir: &std::path::Path, key: &str, db: Option<&str>) -> Config {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--secret-key".into(),
        key.into(),
        "--template-sandbox-exe".into(),
        env!("CARGO_BIN_EXE_herald").into(),
    ];
    if let Some(db) = db {
        args.extend(["--database".into(), db.to_string()]);
    }
    Config::from_args(&args).unwrap()
}

async fn refuses_another_key(db: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let first = Application::build(config(dir.path(), KEY_A, db))
        .await
        .expect("the first start records its key");
    let store = first.state().store.clone();
    drop(first);
    let refused = Application::build(config(dir.path(), KEY_B, db)).await;
    let message = format!("{:#}", refused.err().expect("another key is refused"));
    assert!(message.contains("HERALD_SECRET_KEY"), "{message}");
    Application::build(config(dir.path(), KEY_A, db))
        .await
        .expect("the right key still starts");
    drop(store);
}

#[tokio::test]
async fn a_process_with_another_secret_key_refuses_to_start_on_sqlite() {
    refuses_another_key(None).await;
}

#[tokio::test]
async fn a_process_with_another_secret_key_refuses_to_start_on_postgres() {
    let Some(db) = crate::pg::PgTestDb::create().await else {
        return;
    };
    refuses_another_key(Some(&db.url)).await;
}

/// A data directory whose `secret.key` was deleted: the start is refused, saying to put
/// the key back, and no new key is written in its place (one that could never open the
/// database's secrets, and would be in the way of the real one).
#[tokio::test]
async fn a_start_without_its_deleted_secret_key_is_refused_and_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = ["--listen", "127.0.0.1:0", "--data-dir"]
        .map(String::from)
        .to_vec();
    args.push(dir.path().display().to_string());
    args.extend([
        "--template-sandbox-exe".into(),
        env!("CARGO_BIN_EXE_herald").into(),
    ]);
    let first = Application::build(Config::from_args(&args).unwrap())
        .await
        .expect("the first start makes a key");
    drop(first);
    let key_file = dir.path().join("secret.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let refused = Application::build(Config::from_args(&args).unwrap()).await;
    let message = format!(
        "{:#}",
        refused.err().expect("a start without the key is refused")
    );
    assert!(
        message.contains("secret.key")
            && message.contains("is missing")
            && message.contains("backup"),
        "{message}"
    );
    assert!(!key_file.exists(), "no new key was written");
    std::fs::write(&key_file, key).unwrap();
    Application::build(Config::from_args(&args).unwrap())
        .await
        .expect("with its key back it starts");
}
