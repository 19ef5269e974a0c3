//! The Herald under test: a `herald serve` process of the same build, its data directory or
//! PostgreSQL database, its REST API, and what is read of it from /proc.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::{TEMPLATE, TEMPLATE_ID, TOKEN};

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `herald` binary next to this one: the same build, so the figures belong to this tree.
pub(crate) fn herald_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let herald = me.with_file_name(format!("herald{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        herald.exists(),
        "{} is missing: build both binaries first, in the same profile:\n  \
         cargo build --release --workspace --bins && target/release/herald-bench all",
        herald.display()
    );
    Ok(herald)
}

/// Waits until the Herald at `base` answers `/readyz` with 200, for a minute at most.
async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("{base}/readyz"))
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

/// A `herald serve` process with its own data directory (and database, on PostgreSQL).
pub(crate) struct Herald {
    pub(crate) binary: PathBuf,
    pub(crate) child: Option<Child>,
    pub(crate) base: String,
    pub(crate) port: u16,
    pub(crate) api_token: String,
    pub(crate) database: Option<String>,
    pub(crate) dir: tempfile::TempDir,
    /// More `serve` flags (a scenario's own settings).
    pub(crate) serve_args: Vec<String>,
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Herald {
    /// A fresh Herald: SQLite in its data directory, or (`pg_admin`) a new PostgreSQL
    /// database, which `drop_bench_databases` removes at the end of the run.
    pub(crate) async fn start(pg_admin: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(pg_admin, &[]).await
    }

    /// A fresh Herald whose `serve` gets `serve_args` too.
    pub(crate) async fn start_with(
        pg_admin: Option<&str>,
        serve_args: &[String],
    ) -> anyhow::Result<Self> {
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
            serve_args: serve_args.to_vec(),
        };
        // The user commands work on an existing database only: `migrate` creates it.
        herald.cli(&["migrate"], "")?;
        herald.cli(&["user", "create", "bench", "--admin"], "bench-password\n")?;
        herald.api_token = herald.cli(&["token", "create", "bench"], "")?;
        herald.spawn().await?;
        Ok(herald)
    }

    pub(crate) fn command(&self) -> Command {
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

    pub(crate) fn cli(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
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

    pub(crate) async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = self.launch(self.port)?;
        self.child = Some(child);
        self.base = format!("http://127.0.0.1:{}", self.port);
        wait_ready(&self.base).await
    }

    /// One more `herald serve` on the same database (PostgreSQL), ready to work; it is
    /// the caller's to stop.
    pub(crate) async fn spawn_another(&self) -> anyhow::Result<Child> {
        let port = free_port()?;
        let mut child = self.launch(port)?;
        if let Err(e) = wait_ready(&format!("http://127.0.0.1:{port}")).await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(child)
    }

    fn launch(&self, port: u16) -> anyhow::Result<Child> {
        let mut cmd = self.command();
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
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
        Ok(cmd
            .arg("serve")
            .args(&self.serve_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?)
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// One sample of the process's `/metrics` (Prometheus text).
    pub(crate) async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.base))
            .await?
            .text()
            .await?)
    }

    pub(crate) fn ingest_url(&self) -> String {
        format!("{}/v2/webhooks/events", self.base)
    }

    /// A namespace `acme` with `n` enabled webhooks to `url`, created over the REST API.
    pub(crate) async fn webhooks(&self, n: usize, url: &str) -> anyhow::Result<()> {
        use reqwest::Method;
        let api = self.api();
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

    /// The REST API as the bench user.
    pub(crate) fn api(&self) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: self.base.clone(),
            token: self.api_token.clone(),
        }
    }

    /// Writes `n` finished deliveries (event, delivery, attempt each) straight into the
    /// stopped Herald's SQLite database: through ingest, a million would take far too long.
    pub(crate) async fn seed_history(&self, n: usize, url: &str) -> anyhow::Result<()> {
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
pub(crate) fn seed_body() -> anyhow::Result<String> {
    Ok(
        serde_json::from_str::<serde_json::Value>(TEMPLATE)?["events"][0]
            .to_string()
            .replace(TEMPLATE_ID, "SEEDID"),
    )
}

/// `seed_history` on PostgreSQL: the same rows, generated server-side.
pub(crate) async fn seed_postgres(database: &str, n: usize, url: &str) -> anyhow::Result<()> {
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
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Api {
    pub(crate) async fn call(
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
        if res.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&res.bytes().await?)?)
    }
}

/// Peak (VmHWM) and current (VmRSS) resident memory of a process, in MiB.
pub(crate) fn memory_mib(pid: u32) -> (f64, f64) {
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
pub(crate) struct AnonPeak {
    pub(crate) peak: Arc<AtomicU64>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl AnonPeak {
    pub(crate) fn start(pid: u32) -> Self {
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

    pub(crate) fn mib(self) -> f64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// Names this run's databases, so that they can all be dropped at the end.
pub(crate) fn run_id() -> u32 {
    static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ID.get_or_init(rand::random::<u32>)
}

pub(crate) async fn admin_pool(admin_url: &str) -> anyhow::Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(admin_url)
        .await?)
}

/// Creates a fresh database for one Herald and returns its URL.
pub(crate) async fn create_database(admin_url: &str) -> anyhow::Result<String> {
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
pub(crate) async fn drop_bench_databases(admin_url: &str) -> anyhow::Result<()> {
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
