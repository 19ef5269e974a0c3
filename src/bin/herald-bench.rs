//! herald-bench: Herald's load benchmark. It starts a real `herald serve` (the sibling binary of
//! the same build) with a fresh data directory, its own fast receiver and its own load client,
//! prints a table and writes BENCHMARKS.md.
//!
//! `cargo build --release --bins && target/release/herald-bench all` (or `all --smoke` for a
//! seconds-long check that the benchmark still works). Herald runs as a separate process so
//! that its RSS can be read from /proc and the load client's CPU and memory are not counted
//! as Herald's, as in production where the registry is another process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load benchmark for Herald; writes BENCHMARKS.md")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Tiny sizes: checks that the benchmark still works (CI), measures nothing useful.
    #[arg(long, global = true)]
    smoke: bool,
    /// Where to write the report.
    #[arg(long, global = true, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// Concurrent keep-alive client connections.
    #[arg(long, global = true, default_value_t = 64)]
    connections: usize,
    /// Events of the end-to-end scenario (default 100,000; smoke 300).
    #[arg(long, global = true)]
    e2e_events: Option<usize>,
    /// Finished deliveries stored before the growth scenario (default 1,000,000; smoke 2,000).
    #[arg(long, global = true)]
    growth_deliveries: Option<usize>,
    /// Seconds of the fixed-rate latency scenario (default 30; smoke 2).
    #[arg(long, global = true)]
    latency_secs: Option<u64>,
    /// A PostgreSQL server to run the scenarios on too; each run creates a fresh database
    /// there and drops it afterwards.
    #[arg(
        long,
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Skip the PostgreSQL runs.
    #[arg(long, global = true)]
    no_postgres: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario, then the report.
    All,
    /// Internal: a trivial HTTP server that reads the body and answers 200.
    TrivialServer { port: u16 },
}

/// Scenario sizes.
struct Sizes {
    ingest_events: usize,
    e2e_events: usize,
    latency_rate: u64,
    latency_secs: u64,
    fanout_webhooks: usize,
    growth_deliveries: usize,
    /// How long to wait for deliveries before giving up on a scenario.
    patience: Duration,
}

impl Sizes {
    fn new(cli: &Cli) -> Self {
        let base = if cli.smoke {
            Self {
                ingest_events: 300,
                e2e_events: 300,
                latency_rate: 100,
                latency_secs: 2,
                fanout_webhooks: 20,
                growth_deliveries: 2_000,
                patience: Duration::from_secs(30),
            }
        } else {
            Self {
                ingest_events: 20_000,
                e2e_events: 100_000,
                latency_rate: 1_000,
                latency_secs: 30,
                fanout_webhooks: 1_000,
                growth_deliveries: 1_000_000,
                patience: Duration::from_secs(600),
            }
        };
        Self {
            e2e_events: cli.e2e_events.unwrap_or(base.e2e_events),
            growth_deliveries: cli.growth_deliveries.unwrap_or(base.growth_deliveries),
            latency_secs: cli.latency_secs.unwrap_or(base.latency_secs),
            ..base
        }
    }
}

const TOKEN: &str = "bench-registry-token";
const TEMPLATE: &str =
    include_str!("../../tests/fixtures/distribution-2.8.2/push-manifest-tagged.json");
const TEMPLATE_ID: &str = "2045f19c-7a89-451b-8ea6-bfb7cac6a943";
const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// A one-event envelope (a manifest push to `acme/web`) with a unique event id.
fn envelope(id: &str) -> Vec<u8> {
    TEMPLATE.replace(TEMPLATE_ID, id).into_bytes()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `herald` binary next to this one: the same build, so the figures belong to this tree.
fn herald_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let herald = me.with_file_name(format!("herald{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        herald.exists(),
        "{} is missing: build both binaries first, in the same profile:\n  \
         cargo build --release --bins && target/release/herald-bench all",
        herald.display()
    );
    Ok(herald)
}

/// A `herald serve` process with its own data directory (and database, on PostgreSQL).
struct Herald {
    binary: PathBuf,
    child: Option<Child>,
    base: String,
    port: u16,
    api_token: String,
    database: Option<String>,
    dir: tempfile::TempDir,
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Herald {
    /// A fresh Herald: SQLite in its data directory, or (`pg_admin`) a new PostgreSQL
    /// database, which `drop_bench_databases` removes at the end of the run.
    async fn start(pg_admin: Option<&str>) -> anyhow::Result<Self> {
        let binary = herald_binary()?;
        let database = match pg_admin {
            Some(admin) => Some(create_database(admin).await?),
            None => None,
        };
        let dir = tempfile::tempdir_in(std::env::temp_dir())?;
        let mut herald = Self {
            binary,
            child: None,
            base: String::new(),
            port: free_port()?,
            api_token: String::new(),
            database,
            dir,
        };
        // The user commands work on an existing database only: `migrate` creates it.
        herald.cli(&["migrate"], "")?;
        herald.cli(&["user", "create", "bench", "--admin"], "bench-password\n")?;
        herald.api_token = herald.cli(&["token", "create", "bench"], "")?;
        herald.spawn().await?;
        Ok(herald)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.env("HERALD_DATA_DIR", self.dir.path())
            .env("HERALD_REGISTRY_TOKEN", TOKEN)
            // Fixed, so PostgreSQL runs do not warn about a per-directory key.
            .env(
                "HERALD_SECRET_KEY",
                "aGVyYWxkLWJlbmNoLXNlY3JldC1rZXktMzItYnl0ZXM=",
            )
            .env("RUST_LOG", "herald=warn");
        if let Some(db) = &self.database {
            cmd.env("HERALD_DATABASE_URL", db);
        }
        cmd
    }

    fn cli(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "herald {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = self.command();
        cmd.args(["--listen", &format!("127.0.0.1:{}", self.port)])
            // History must stay put during the growth scenario.
            .args(["--retention-days", "36500"])
            .args(["--retention-max-per-webhook", "100000000"]);
        // A later Herald refuses loopback receivers unless told; main has no such flag.
        let help = Command::new(&self.binary)
            .args(["serve", "--help"])
            .output()?;
        if String::from_utf8_lossy(&help.stdout).contains("--delivery-allow-networks") {
            cmd.args(["--delivery-allow-networks", "127.0.0.1/32"]);
        }
        let child = cmd
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        self.child = Some(child);
        self.base = format!("http://127.0.0.1:{}", self.port);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "herald did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn ingest_url(&self) -> String {
        format!("{}/v2/webhooks/events", self.base)
    }

    /// A namespace `acme` with `n` enabled webhooks to `url`, created over the REST API.
    async fn webhooks(&self, n: usize, url: &str) -> anyhow::Result<()> {
        use reqwest::Method;
        let api = Api {
            client: reqwest::Client::new(),
            base: self.base.clone(),
            token: self.api_token.clone(),
        };
        api.call(
            Method::POST,
            "/namespaces",
            serde_json::json!({"name": "acme"}),
        )
        .await?;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let (api, url) = (api.clone(), url.to_string());
            tasks.spawn(async move {
                for i in (worker..n).step_by(8) {
                    let hook = api
                        .call(
                            Method::POST,
                            "/namespaces/acme/webhooks",
                            serde_json::json!({"name": format!("hook-{i}"), "url": url, "request_method": "POST"}),
                        )
                        .await?;
                    api.call(
                        Method::PATCH,
                        &format!("/namespaces/acme/webhooks/{}", hook["id"]),
                        serde_json::json!({"enabled": true}),
                    )
                    .await?;
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Writes `n` finished deliveries (event, delivery, attempt each) straight into the
    /// stopped Herald's SQLite database: through ingest, a million would take far too long.
    async fn seed_history(&self, n: usize, url: &str) -> anyhow::Result<()> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
        use sqlx::ConnectOptions;
        if let Some(database) = &self.database {
            return seed_postgres(database, n, url).await;
        }
        let options = SqliteConnectOptions::new()
            .filename(self.dir.path().join("herald.db"))
            .journal_mode(SqliteJournalMode::Wal);
        let mut db = options.connect().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let body = seed_body()?;
        let mut tx = sqlx::Connection::begin(&mut db).await?;
        sqlx::query(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1) \
             INSERT INTO events (registry_id, action, repository, namespace, tag, digest, \
             media_type, status, body, received_at) \
             SELECT 'seed-' || i, 'push', 'acme/web', 'acme', 'latest', 'sha256:seed' || i, \
             'application/vnd.docker.distribution.manifest.v2+json', 'accepted', \
             replace(?2, 'SEEDID', 'seed-' || i), ?3 - (?1 - i) FROM c",
        )
        .bind(n as i64)
        .bind(&body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO deliveries (webhook_id, event_id, state, attempts, last_status, \
             request_method, request_url, request_headers, created_at, updated_at) \
             SELECT (SELECT min(id) FROM webhooks), id, 'succeeded', 1, 200, 'POST', ?1, \
             '[[\"Content-Type\",\"application/json\"]]', received_at, received_at \
             FROM events WHERE registry_id LIKE 'seed-%'",
        )
        .bind(url)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, \
             response_headers, response_body) \
             SELECT id, created_at, 1, 200, '[[\"content-length\",\"2\"]]', 'ok' FROM deliveries",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The seeded events' body: the template event with `SEEDID` where its id goes.
fn seed_body() -> anyhow::Result<String> {
    Ok(
        serde_json::from_str::<serde_json::Value>(TEMPLATE)?["events"][0]
            .to_string()
            .replace(TEMPLATE_ID, "SEEDID"),
    )
}

/// `seed_history` on PostgreSQL: the same rows, generated server-side.
async fn seed_postgres(database: &str, n: usize, url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(database).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let body = seed_body()?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO events (registry_id, action, repository, namespace, tag, digest, \
         media_type, status, body, received_at) \
         SELECT 'seed-' || i, 'push', 'acme/web', 'acme', 'latest', 'sha256:seed' || i, \
         'application/vnd.docker.distribution.manifest.v2+json', 'accepted', \
         replace($2, 'SEEDID', 'seed-' || i), $3 - ($1 - i) FROM generate_series(1, $1) AS i",
    )
    .bind(n as i64)
    .bind(&body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (webhook_id, event_id, state, attempts, last_status, \
         request_method, request_url, request_headers, created_at, updated_at) \
         SELECT (SELECT min(id) FROM webhooks), id, 'succeeded', 1, 200, 'POST', $1, \
         '[[\"Content-Type\",\"application/json\"]]', received_at, received_at \
         FROM events WHERE registry_id LIKE 'seed-%'",
    )
    .bind(url)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, \
         response_headers, response_body) \
         SELECT id, created_at, 1, 200, '[[\"content-length\",\"2\"]]', 'ok' FROM deliveries",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(&mut db).await?;
    Ok(())
}

/// Herald's REST API as the bench's admin user.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let res = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "{path}: {}", res.status());
        Ok(serde_json::from_slice(&res.bytes().await?)?)
    }
}

/// Peak (VmHWM) and current (VmRSS) resident memory of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Samples a process's anonymous resident memory (heap and stacks: RssAnon, without the
/// mapped database file) every 50 ms until dropped; the peak in KiB.
struct AnonPeak {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl AnonPeak {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find(|l| l.starts_with("RssAnon:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .unwrap_or(0);
                seen.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { peak, task }
    }

    fn mib(self) -> f64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// The receiver: counts arrivals and, when asked, remembers when each event arrived.
#[derive(Clone, Default)]
struct Arrivals {
    count: Arc<AtomicU64>,
    times: Arc<Mutex<Vec<(String, Instant)>>>,
    record_times: Arc<AtomicBool>,
}

async fn receive(State(a): State<Arrivals>, body: Bytes) -> &'static str {
    let now = Instant::now();
    a.count.fetch_add(1, Ordering::Relaxed);
    if a.record_times.load(Ordering::Relaxed) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(id) = v["id"].as_str() {
                if let Ok(mut t) = a.times.lock() {
                    t.push((id.to_string(), now));
                }
            }
        }
    }
    "ok"
}

async fn start_receiver() -> anyhow::Result<(SocketAddr, Arrivals)> {
    let arrivals = Arrivals::default();
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, arrivals))
}

/// Posts `n` one-event envelopes over `connections` concurrent keep-alive connections,
/// retrying like the registry until each is answered 2xx; returns envelopes/s.
async fn blast(url: &str, prefix: &str, n: usize, connections: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections.min(n.max(1)) {
        let (client, next, url, failures) = (
            client.clone(),
            next.clone(),
            url.to_string(),
            failures.clone(),
        );
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i as usize >= n {
                    return;
                }
                let body = Bytes::from(envelope(&format!("{prefix}-{i:012}")));
                loop {
                    let res = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", MEDIA_TYPE)
                        .body(body.clone())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            break;
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  ({failed} answers were not 2xx and were retried)");
    }
    Ok(rate)
}

/// Waits until `target` deliveries arrived; how long that took, or None after `limit`.
async fn wait_count(arrivals: &Arrivals, target: u64, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while arrivals.count.load(Ordering::Relaxed) < target {
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(started.elapsed())
}

struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
    /// Envelopes Herald did not accept (503 beyond --ingest-max-in-flight, or errors).
    refused: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Sends at `rate` per second for `secs`; latency is from the ingest answer to the
/// receiver's arrival (zero when the delivery arrived before the answer was read).
async fn latency_run(
    url: &str,
    prefix: &str,
    arrivals: &Arrivals,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Latency> {
    if let Ok(mut t) = arrivals.times.lock() {
        t.clear();
    }
    arrivals.record_times.store(true, Ordering::SeqCst);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let total = rate * secs;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let (client, url, answered, refused) = (
            client.clone(),
            url.to_string(),
            answered.clone(),
            refused.clone(),
        );
        let id = format!("{prefix}-{i:012}");
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", MEDIA_TYPE)
                .body(envelope(&id))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    let at = Instant::now();
                    if let Ok(mut a) = answered.lock() {
                        a.push((id, at));
                    }
                }
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Let the last deliveries arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected = answered.lock().map(|a| a.len()).unwrap_or(0);
    while arrivals.times.lock().map(|t| t.len()).unwrap_or(0) < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    arrivals.record_times.store(false, Ordering::SeqCst);
    let arrived: std::collections::HashMap<String, Instant> = arrivals
        .times
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let mut ms: Vec<f64> = answered
        .lock()
        .map(|a| {
            a.iter()
                .filter_map(|(id, at)| {
                    arrived
                        .get(id)
                        .map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0)
                })
                .collect()
        })
        .unwrap_or_default();
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Latency {
        p50: percentile(&ms, 0.5),
        p99: percentile(&ms, 0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
        samples: ms.len(),
        refused: refused.load(Ordering::Relaxed),
    })
}

/// One backend's figures.
#[derive(Default)]
struct Results {
    ingest: f64,
    e2e: Option<f64>,
    latency: Option<Latency>,
    rss_idle: f64,
    rss_peak: f64,
    rss_anon_peak: f64,
    fanout_ms: Option<f64>,
    growth_ingest: Option<f64>,
    growth_latency: Option<Latency>,
    notes: Vec<String>,
}

/// Names this run's databases, so that they can all be dropped at the end.
fn run_id() -> u32 {
    static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ID.get_or_init(rand::random::<u32>)
}

async fn admin_pool(admin_url: &str) -> anyhow::Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(admin_url)
        .await?)
}

/// Creates a fresh database for one Herald and returns its URL.
async fn create_database(admin_url: &str) -> anyhow::Result<String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let admin = admin_pool(admin_url).await?;
    let name = format!(
        "herald_bench_{}_{}",
        run_id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}

/// Drops every database this run created.
async fn drop_bench_databases(admin_url: &str) -> anyhow::Result<()> {
    let admin = admin_pool(admin_url).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("herald_bench_{}_%", run_id()))
            .fetch_all(&admin)
            .await?;
    for name in names {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await?;
    }
    Ok(())
}

/// Scenarios 1-6 against one backend (`database`: None for SQLite).
async fn run_suite(
    cli: &Cli,
    sizes: &Sizes,
    pg_admin: Option<&str>,
    trivial_rate: f64,
) -> anyhow::Result<Results> {
    let mut r = Results::default();
    let (rx_addr, arrivals) = start_receiver().await?;
    let receiver_url = format!("http://{rx_addr}/hook");
    let run = rand::random::<u32>();

    // 1. Ingest.
    let herald = Herald::start(pg_admin).await?;
    herald.webhooks(1, &receiver_url).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.rss_idle = memory_mib(herald.pid()).1;
    let anon = AnonPeak::start(herald.pid());
    println!("  ingest: {} envelopes", sizes.ingest_events);
    r.ingest = blast(
        &herald.ingest_url(),
        &format!("i{run}"),
        sizes.ingest_events,
        cli.connections,
    )
    .await?;
    println!(
        "  ingest: {:.0}/s ({:.2} of trivial)",
        r.ingest,
        r.ingest / trivial_rate
    );
    if wait_count(&arrivals, sizes.ingest_events as u64, sizes.patience)
        .await
        .is_none()
    {
        r.notes
            .push("the ingest scenario's deliveries did not all arrive in time".into());
    }

    // 2. End-to-end: ingest and delivery at once, until the last delivery arrived.
    arrivals.count.store(0, Ordering::SeqCst);
    let n = sizes.e2e_events;
    println!("  end-to-end: {n} events");
    let started = Instant::now();
    let ingest = tokio::spawn({
        let (url, c, prefix) = (herald.ingest_url(), cli.connections, format!("e{run}"));
        async move { blast(&url, &prefix, n, c).await }
    });
    let delivered = wait_count(&arrivals, n as u64, sizes.patience).await;
    ingest.await??;
    match delivered {
        Some(_) => r.e2e = Some(n as f64 / started.elapsed().as_secs_f64()),
        None => r.notes.push(format!(
            "end-to-end: only {} of {n} delivered within {} s",
            arrivals.count.load(Ordering::SeqCst),
            sizes.patience.as_secs()
        )),
    }
    println!("  end-to-end: {:?}/s", r.e2e.map(|x| x.round()));
    // Drain whatever is left before measuring latency.
    wait_count(&arrivals, n as u64, sizes.patience).await;

    // 3. Latency at a fixed rate.
    println!(
        "  latency: {}/s for {} s",
        sizes.latency_rate, sizes.latency_secs
    );
    let latency = latency_run(
        &herald.ingest_url(),
        &format!("l{run}"),
        &arrivals,
        sizes.latency_rate,
        sizes.latency_secs,
    )
    .await?;
    println!(
        "  latency p50 {:.1} ms, p99 {:.1} ms",
        latency.p50, latency.p99
    );
    r.latency = Some(latency);
    r.rss_peak = memory_mib(herald.pid()).0;
    r.rss_anon_peak = anon.mib();
    drop(herald);

    // 4. Fan-out: one event, `fanout_webhooks` enabled webhooks.
    let herald = Herald::start(pg_admin).await?;
    herald
        .webhooks(sizes.fanout_webhooks, &receiver_url)
        .await?;
    arrivals.count.store(0, Ordering::SeqCst);
    let started = Instant::now();
    blast(&herald.ingest_url(), &format!("f{run}"), 1, 1).await?;
    r.fanout_ms = wait_count(&arrivals, sizes.fanout_webhooks as u64, sizes.patience)
        .await
        .map(|_| started.elapsed().as_secs_f64() * 1000.0);
    println!("  fan-out: {:?} ms", r.fanout_ms.map(|x| x.round()));
    drop(herald);

    // 5. Growth: 1 and 3 again with history stored.
    {
        let mut herald = Herald::start(pg_admin).await?;
        herald.webhooks(1, &receiver_url).await?;
        // The webhook exists; stop Herald to write history into its database directly.
        herald.stop();
        let seeded = sizes.growth_deliveries;
        println!("  growth: seeding {seeded} finished deliveries");
        let seed_started = Instant::now();
        herald.seed_history(seeded, &receiver_url).await?;
        r.notes.push(format!(
            "growth: {seeded} finished deliveries (with their events and attempts) were written \
             into the stopped Herald's database directly, in {:.0} s, then Herald was restarted",
            seed_started.elapsed().as_secs_f64()
        ));
        herald.spawn().await?;
        arrivals.count.store(0, Ordering::SeqCst);
        r.growth_ingest = Some(
            blast(
                &herald.ingest_url(),
                &format!("g{run}"),
                sizes.ingest_events,
                cli.connections,
            )
            .await?,
        );
        wait_count(&arrivals, sizes.ingest_events as u64, sizes.patience).await;
        let latency = latency_run(
            &herald.ingest_url(),
            &format!("gl{run}"),
            &arrivals,
            sizes.latency_rate,
            sizes.latency_secs,
        )
        .await?;
        println!(
            "  growth: ingest {:.0}/s, p99 {:.1} ms",
            r.growth_ingest.unwrap_or_default(),
            latency.p99
        );
        r.growth_latency = Some(latency);
    }
    Ok(r)
}

struct Report {
    rows: Vec<[String; 4]>,
}

impl Report {
    fn add(&mut self, figure: &str, sqlite: String, pg: String, target: &str) {
        println!("{figure:<48} {sqlite:>14} {pg:>14}   {target}");
        self.rows.push([figure.into(), sqlite, pg, target.into()]);
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

fn build_report(sizes: &Sizes, trivial: f64, s: &Results, p: Option<&Results>) -> Report {
    let mut report = Report { rows: Vec::new() };
    println!(
        "\n{:<48} {:>14} {:>14}   target",
        "figure", "SQLite", "PostgreSQL"
    );
    let both = |f: &dyn Fn(&Results) -> Option<f64>, d: usize| {
        (fmt(f(s), d), p.map(|p| fmt(f(p), d)).unwrap_or("-".into()))
    };
    let (a, b) = both(&|_| Some(trivial), 0);
    report.add("1. trivial HTTP server, same client (req/s)", a, b, "");
    let (a, b) = both(&|r| Some(r.ingest), 0);
    report.add("1. Herald ingest (envelopes/s)", a, b, "");
    let (a, b) = both(&|r| Some(r.ingest / trivial), 2);
    report.add("1. ingest share of trivial", a, b, ">= 0.5");
    let (a, b) = both(&|r| r.e2e, 0);
    report.add(
        &format!("2. end-to-end deliveries/s ({} events)", sizes.e2e_events),
        a,
        b,
        ">= 10,000",
    );
    let lat = |r: &Results, f: fn(&Latency) -> f64| r.latency.as_ref().map(f);
    let (a, b) = both(&|r| lat(r, |l| l.p50), 1);
    report.add(
        &format!("3. latency p50 at {}/s (ms)", sizes.latency_rate),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| lat(r, |l| l.p99), 1);
    report.add(
        &format!("3. latency p99 at {}/s (ms)", sizes.latency_rate),
        a,
        b,
        "<= 20",
    );
    let (a, b) = both(&|r| lat(r, |l| l.max), 1);
    report.add(
        &format!("3. latency max at {}/s (ms)", sizes.latency_rate),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| lat(r, |l| l.samples as f64), 0);
    report.add("3. latency samples", a, b, "");
    let (a, b) = both(&|r| lat(r, |l| l.refused as f64), 0);
    report.add(
        &format!("3. envelopes refused (503) at {}/s", sizes.latency_rate),
        a,
        b,
        "",
    );
    let (a, b) = both(&|r| r.fanout_ms, 0);
    report.add(
        &format!("4. fan-out to {} webhooks (ms)", sizes.fanout_webhooks),
        a,
        b,
        "<= 1000",
    );
    let stored = sizes.growth_deliveries;
    let (a, b) = both(&|r| r.growth_ingest, 0);
    report.add(
        &format!("5. ingest with {stored} stored (envelopes/s)"),
        a,
        b,
        "",
    );
    let (a, b) = both(
        &|r| r.growth_ingest.map(|g| (r.ingest / g - 1.0) * 100.0),
        1,
    );
    report.add("5. ingest slowdown from history (%)", a, b, "<= 10");
    let (a, b) = both(&|r| r.growth_latency.as_ref().map(|l| l.p99), 1);
    report.add(
        &format!("5. latency p99 with {stored} stored (ms)"),
        a,
        b,
        "",
    );
    let (a, b) = both(
        &|r| {
            let base = r.latency.as_ref()?.p99;
            r.growth_latency
                .as_ref()
                .map(|l| (l.p99 / base - 1.0) * 100.0)
        },
        1,
    );
    report.add("5. latency p99 slowdown from history (%)", a, b, "<= 10");
    let (a, b) = both(&|r| Some(r.rss_idle), 1);
    report.add("6. Herald RSS at idle (MiB)", a, b, "");
    let (a, b) = both(&|r| Some(r.rss_peak), 1);
    report.add("6. Herald peak RSS during 1-3 (MiB)", a, b, "<= 100");
    let (a, b) = both(&|r| Some(r.rss_anon_peak), 1);
    report.add(
        "6. of which anonymous (heap, stacks) at its peak (MiB)",
        a,
        b,
        "",
    );
    report
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem:.0} GiB memory, Linux {} {}; data directory on the \
         filesystem of {} (real fsync)",
        kernel.trim(),
        std::env::consts::ARCH,
        std::env::temp_dir().display()
    )
}

/// Marks where the hand-written analysis starts; a new run keeps it.
const ANALYSIS_MARK: &str = "## What is in the way";

fn write_report(path: &Path, cli: &Cli, report: &Report, notes: &[String]) -> anyhow::Result<()> {
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.find(ANALYSIS_MARK).map(|i| old[i..].to_string()));
    let mut md = String::from("# Herald benchmarks\n\n");
    md.push_str(&format!(
        "Written by `herald-bench all{}` on {} UTC.\n\nMachine: {}.\n\nHerald runs as its own \
         process (`herald serve`, release build, default settings: SQLite in WAL mode with \
         synchronous=FULL, i.e. an fsync per commit); the load client ({} keep-alive \
         connections) and the receiver share the benchmark process; all traffic is on loopback. \
         Each event is a one-event envelope (a tagged manifest push) with a unique id.\n\n",
        if cli.smoke { " --smoke" } else { "" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        machine(),
        cli.connections,
    ));
    if cli.smoke {
        md.push_str("**Smoke run: sizes are tiny, the figures mean nothing.**\n\n");
    }
    md.push_str("| figure | SQLite | PostgreSQL | target (SQLite) |\n|---|---:|---:|---|\n");
    for [figure, s, p, target] in &report.rows {
        md.push_str(&format!("| {figure} | {s} | {p} | {target} |\n"));
    }
    if !notes.is_empty() {
        md.push('\n');
        for n in notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    md.push('\n');
    if let Some(kept) = kept {
        md.push_str(&kept);
    }
    std::fs::write(path, md)?;
    Ok(())
}

async fn trivial_server(port: u16) -> anyhow::Result<()> {
    async fn ok(_body: Bytes) -> &'static str {
        "{}"
    }
    let app = axum::Router::new().fallback(ok);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn run_all(cli: &Cli) -> anyhow::Result<()> {
    herald_binary()?;
    let sizes = Sizes::new(cli);
    // 1. The trivial server: the same client against a server that does nothing, in its own
    // process like Herald, gives what this machine's loopback and client allow.
    let port = free_port()?;
    let mut trivial = Command::new(std::env::current_exe()?)
        .args(["trivial-server", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trivial_rate = blast(
        &format!("http://127.0.0.1:{port}/v2/webhooks/events"),
        "t",
        sizes.ingest_events,
        cli.connections,
    )
    .await;
    let _ = trivial.kill();
    let _ = trivial.wait();
    let trivial_rate = trivial_rate?;
    println!("trivial server: {trivial_rate:.0} req/s");

    println!("SQLite:");
    let sqlite = run_suite(cli, &sizes, None, trivial_rate).await?;
    let mut notes: Vec<String> = sqlite
        .notes
        .iter()
        .map(|n| format!("SQLite: {n}"))
        .collect();
    let pg = if cli.no_postgres {
        notes.push("PostgreSQL: not run (--no-postgres)".into());
        None
    } else {
        match admin_pool(&cli.postgres).await {
            Err(e) => {
                println!("PostgreSQL: skipped ({e})");
                notes.push(format!("PostgreSQL: not run ({e})"));
                None
            }
            Ok(pool) => {
                pool.close().await;
                println!("PostgreSQL:");
                let result = run_suite(cli, &sizes, Some(&cli.postgres), trivial_rate).await;
                drop_bench_databases(&cli.postgres)
                    .await
                    .context("dropping the bench databases")?;
                let result = result?;
                notes.extend(result.notes.iter().map(|n| format!("PostgreSQL: {n}")));
                notes.push(
                    "PostgreSQL: the server runs on the same 2 cores as Herald and the load client"
                        .into(),
                );
                Some(result)
            }
        }
    };
    let report = build_report(&sizes, trivial_rate, &sqlite, pg.as_ref());
    write_report(&cli.output, cli, &report, &notes)?;
    println!("wrote {}", cli.output.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match &cli.command {
        Cmd::TrivialServer { port } => runtime.block_on(trivial_server(*port)),
        Cmd::All => runtime.block_on(run_all(&cli)),
    }
}
