use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use herald::config::Config;
use herald::store::Store;
use herald::Application;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};

use crate::pg::PgTestDb;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The event objects of a fixture envelope, each as the exact text the registry sent.
/// distribution's tagged manifest push with an event id of its own (`i`, 8 digits).
pub fn push_with_id(i: usize) -> Vec<u8> {
    String::from_utf8(fixture("distribution-2.8.2/push-manifest-tagged.json"))
        .unwrap()
        .replace("2045f19c", &format!("{i:08}"))
        .into_bytes()
}

pub fn fixture_events(name: &str) -> Vec<String> {
    let bytes = fixture(name);
    herald::registry::envelope::split_envelope(&bytes)
        .unwrap()
        .into_iter()
        .map(|raw| raw.get().to_string())
        .collect()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// An admin's API token.
    pub token: String,
    pub registry_token: String,
    pub store: Arc<dyn Store>,
    /// The running app's state, for calling library functions directly.
    pub state: herald::AppState,
    pub dir: tempfile::TempDir,
    /// The app's own PostgreSQL database, dropped with it; `None` on SQLite.
    pub db: Option<PgTestDb>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts Herald on 127.0.0.1:0 with its own temporary data directory and fast retries,
/// on SQLite, or on a fresh PostgreSQL database when `HERALD_TEST_DATABASE=postgres`.
/// The SSRF guard lets deliveries reach 127.0.0.1 only, where the test receivers listen
/// (and webhook hosts that are names are not resolved for warnings);
/// `extra` can pass `--delivery-allow-networks` again to change that.
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    if std::env::var("HERALD_TEST_DATABASE").as_deref() == Ok("postgres") {
        let db = PgTestDb::create()
            .await
            .expect("HERALD_TEST_DATABASE=postgres needs a PostgreSQL server");
        return spawn(extra, Some(db)).await;
    }
    spawn(extra, None).await
}

/// Starts Herald on a fresh PostgreSQL database; `None` (the test is skipped) when there
/// is no PostgreSQL outside CI.
pub async fn spawn_app_pg(extra: &[&str]) -> Option<TestApp> {
    let db = PgTestDb::create().await?;
    Some(spawn(extra, Some(db)).await)
}

/// With `TEST_LOG=1` (or any value but `0`), the servers' log, as `RUST_LOG` filters it
/// (default `herald=debug`), goes to the test's output: libtest shows it for the tests that
/// fail. Installed once for the test binary; without `TEST_LOG` the tests are silent.
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let wanted = std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0");
        if wanted {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("herald=debug"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

async fn spawn(extra: &[&str], db: Option<PgTestDb>) -> TestApp {
    init_test_log();
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--registry-token".into(),
        "test-registry-token".into(),
        "--retry-schedule".into(),
        "0s,200ms,200ms".into(),
        "--delivery-timeout".into(),
        "3s".into(),
        "--delivery-allow-networks".into(),
        "127.0.0.1/32".into(),
        "--template-sandbox-exe".into(),
        env!("CARGO_BIN_EXE_herald").into(),
        // Tests never resolve public names (example.org): the SSRF warnings on webhook
        // creation check IP literals only, unless a test asks for more.
        "--webhook-resolve-timeout".into(),
        "0s".into(),
    ];
    if let Some(db) = &db {
        args.extend(["--database".into(), db.url.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::from_args(&args).unwrap();
    let app = Application::build(config).await.expect("Herald starts");
    let addr = app.local_addr();
    let store = app.state().store.clone();
    let state = app.state().clone();
    tokio::spawn(app.run(std::future::pending()));
    let hash = herald::auth::hash_password("admin-password").unwrap();
    let admin = store.create_user("admin", &hash, None, true).await.unwrap();
    let token = herald::auth::new_api_token();
    store
        .create_token(admin.id, "tests", &herald::auth::token_hash(&token))
        .await
        .unwrap();
    TestApp {
        addr,
        client: reqwest::Client::new(),
        token,
        registry_token: "test-registry-token".into(),
        store,
        state,
        dir,
        db,
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Resp {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// An API call as the admin.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(
            method,
            &format!("/api/v1{path}"),
            body,
            Some(&self.token.clone()),
        )
        .await
    }

    /// Posts an envelope as the registry does.
    pub async fn post_envelope(&self, body: Vec<u8>) -> Resp {
        self.post_envelope_as(
            body,
            "application/vnd.docker.distribution.events.v1+json",
            Some(&self.registry_token.clone()),
        )
        .await
    }

    pub async fn post_envelope_as(
        &self,
        body: Vec<u8>,
        content_type: &str,
        token: Option<&str>,
    ) -> Resp {
        let mut req = self
            .client
            .post(self.url("/v2/webhooks/events"))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn create_namespace(&self, name: &str) {
        let r = self
            .api(
                "POST",
                "/namespaces",
                Some(serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    /// Creates an enabled webhook and returns its id.
    pub async fn enabled_webhook(&self, ns: &str, body: Value) -> i64 {
        let r = self
            .api("POST", &format!("/namespaces/{ns}/webhooks"), Some(body))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_i64().unwrap();
        let r = self
            .api(
                "PATCH",
                &format!("/namespaces/{ns}/webhooks/{id}"),
                Some(serde_json::json!({ "enabled": true })),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        id
    }

    /// Runs SQL on the app's database behind Herald's back: the given statements for
    /// SQLite (a connection of its own to `herald.db`) or for PostgreSQL.
    pub async fn raw_sql(&self, sqlite: &str, postgres: &str) {
        use sqlx::{Connection, Executor};
        match &self.db {
            Some(db) => {
                let mut conn = db.connect().await;
                conn.execute(postgres)
                    .await
                    .unwrap_or_else(|e| panic!("{postgres}: {e}"));
                let _ = conn.close().await;
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.dir.path().join("herald.db"))
                    .busy_timeout(Duration::from_secs(10));
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                conn.execute(sqlite)
                    .await
                    .unwrap_or_else(|e| panic!("{sqlite}: {e}"));
                let _ = conn.close().await;
            }
        }
    }

    /// Polls until `check` accepts the delivery list of a webhook, or fails after 10 s.
    pub async fn wait_deliveries(
        &self,
        ns: &str,
        id: i64,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/namespaces/{ns}/webhooks/{id}/deliveries");
        eventually(
            Duration::from_secs(10),
            "the deliveries matched",
            || async {
                let r = self.api("GET", &path, None).await;
                if check(&r.body["items"]) {
                    Ok(r.body["items"].clone())
                } else {
                    Err(format!("{:#}", r.body))
                }
            },
        )
        .await
    }
}

/// A request as a receiver saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Response headers to add, and the size of the response body (0: "received").
type ExtraAnswer = (Vec<(String, String)>, usize);

/// How a receiver answers CloudEvents webhook validation (`OPTIONS` with
/// `WebHook-Request-Origin`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Validation {
    /// Not part of the handshake: 200 without `WebHook-Allowed-Origin`, as most receivers.
    #[default]
    Ignore,
    /// `WebHook-Allowed-Origin: <origin>`.
    Allow(String),
    /// 403, no header.
    Refuse,
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Captured>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    extra: Arc<std::sync::Mutex<ExtraAnswer>>,
    validation: Arc<std::sync::Mutex<Validation>>,
    /// The `WebHook-Request-Origin` of each validation request, in order.
    validations: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A real HTTP receiver on loopback that records every request and answers `status`.
pub struct Receiver {
    pub addr: SocketAddr,
    rx: Mutex<mpsc::UnboundedReceiver<Captured>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    /// Response headers to add, and the size of the response body (0: "received").
    extra: Arc<std::sync::Mutex<ExtraAnswer>>,
    validation: Arc<std::sync::Mutex<Validation>>,
    validations: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// A receiver on another loopback address (`127.0.0.2:0`), for tests of the SSRF guard.
    pub async fn start_on(bind: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let extra = Arc::new(std::sync::Mutex::new((Vec::new(), 0)));
        let validation = Arc::new(std::sync::Mutex::new(Validation::default()));
        let validations = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = ReceiverState {
            tx,
            status: status.clone(),
            delay_ms: delay_ms.clone(),
            extra: extra.clone(),
            validation: validation.clone(),
            validations: validations.clone(),
        };
        let app = axum::Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            rx: Mutex::new(rx),
            status,
            delay_ms,
            extra,
            validation,
            validations,
        }
    }

    /// How to answer CloudEvents webhook validation from now on.
    pub fn validation(&self, answer: Validation) {
        *self.validation.lock().unwrap() = answer;
    }

    /// The origins of the validation requests received so far (they are not recorded as
    /// requests).
    pub fn validations(&self) -> Vec<String> {
        self.validations.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers only after `ms` milliseconds (the request is recorded when it arrives).
    pub fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Adds a header to every answer.
    pub fn answer_header(&self, name: &str, value: &str) {
        self.extra
            .lock()
            .unwrap()
            .0
            .push((name.into(), value.into()));
    }

    /// Answers with a body of `size` bytes.
    pub fn answer_body_size(&self, size: usize) {
        self.extra.lock().unwrap().1 = size;
    }

    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The next request, or `None` after `wait`.
    pub async fn next_within(&self, wait: Duration) -> Option<Captured> {
        tokio::time::timeout(wait, self.rx.lock().await.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn next(&self) -> Captured {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("the receiver got a request in time")
    }

    /// Asserts nothing more arrives within `wait`.
    pub async fn assert_quiet(&self, wait: Duration) {
        if let Some(c) = self.next_within(wait).await {
            panic!("unexpected request: {} {} {}", c.method, c.path, c.body);
        }
    }
}

async fn record(
    State(state): State<ReceiverState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let origin = headers
        .get("webhook-request-origin")
        .and_then(|v| v.to_str().ok());
    if let (&Method::OPTIONS, Some(origin)) = (&method, origin) {
        state.validations.lock().unwrap().push(origin.to_string());
        let answer = state.validation.lock().unwrap().clone();
        return match answer {
            Validation::Ignore => StatusCode::OK.into_response(),
            Validation::Allow(o) => {
                (StatusCode::OK, [("WebHook-Allowed-Origin", o)]).into_response()
            }
            Validation::Refuse => StatusCode::FORBIDDEN.into_response(),
        };
    }
    let _ = state.tx.send(Captured {
        method: method.to_string(),
        path: uri.to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    let (headers, size) = state.extra.lock().unwrap().clone();
    let body = if size == 0 {
        "received".to_string()
    } else {
        "x".repeat(size)
    };
    let mut response = axum::response::IntoResponse::into_response((status, body));
    for (name, value) in headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

/// The `herald` binary of this build with `dir` as its data directory and no stray
/// settings from the environment.
pub fn herald_cmd(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env("HERALD_DATA_DIR", dir)
        .env_remove("HERALD_LISTEN")
        .env_remove("HERALD_DELIVERY_TIMEOUT")
        .env_remove("HERALD_CONFIG");
    cmd
}

/// A bare TCP listener that records whether anything connected to it.
pub struct Trap {
    pub addr: SocketAddr,
    connected: Arc<std::sync::atomic::AtomicBool>,
}

impl Trap {
    /// `None` when the address cannot be bound on this machine.
    pub async fn bind(addr: &str) -> Option<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = connected.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
        Some(Self { addr, connected })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn was_reached(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

/// `herald serve` with its stderr read line by line on a thread, so it never blocks.
pub struct LoggedServe {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl LoggedServe {
    /// Starts `cmd` (a `herald ... serve`) with its stderr piped to a reader thread.
    pub fn spawn(mut cmd: std::process::Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The server's process id, to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line (so far or within 20 s) that `pick` accepts.
    pub fn wait_for(&mut self, pick: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pick(l)) {
            return l.clone();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pick(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no such log line; the log was:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// `http://<addr>` from the "Herald is listening" line.
    pub fn base_url(&mut self) -> String {
        let listening = self.wait_for(|l| l.contains("Herald is listening"));
        let addr = listening
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_string();
        format!("http://{addr}")
    }

    /// Stops the server and returns every line it logged (waiting at most 5 s for the rest).
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break, // the pipe closed, or the deadline passed
            }
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for LoggedServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTPS receiver with a self-signed certificate for 127.0.0.1; counts the HTTP
/// requests that got through the handshake.
pub struct TlsReceiver {
    pub url: String,
    pub addr: SocketAddr,
    pub cert_pem: String,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn tls_receiver() -> TlsReceiver {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_der = certified.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                if tls.read(&mut buf).await.unwrap_or(0) > 0 {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    TlsReceiver {
        url: format!("https://{addr}/hook"),
        addr,
        cert_pem: certified.cert.pem(),
        requests,
    }
}

/// Creates an admin through the CLI, as a new user would, and returns an API token for it.
pub fn cli_admin_token(dir: &std::path::Path) -> String {
    cli_admin_token_in(dir, None)
}

/// [`cli_admin_token`] for the Herald whose database is `database` (else the data
/// directory's SQLite).
pub fn cli_admin_token_in(dir: &std::path::Path, database: Option<&str>) -> String {
    use std::io::Write;
    let herald_cmd = |dir: &std::path::Path| {
        let mut cmd = herald_cmd(dir);
        if let Some(url) = database {
            cmd.env("HERALD_DATABASE_URL", url);
        }
        cmd
    };
    // The user commands need an existing Herald: `migrate` makes one, as `serve` would.
    let migrate = herald_cmd(dir).arg("migrate").output().unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let mut create = herald_cmd(dir)
        .args(["user", "create", "admin", "--admin"])
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
    let out = herald_cmd(dir)
        .args(["token", "create", "admin"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What a check passed to [`eventually`] answers once it holds: `true`, `Some(value)` or
/// `Ok(value)`. An `Err(text)` says what was seen instead, for the failure's message.
pub trait Settled {
    type Value;
    fn settled(self) -> Result<Self::Value, Option<String>>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Result<(), Option<String>> {
        self.then_some(()).ok_or(None)
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Settled for Result<T, String> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Polls `check` every 20 ms until it holds (`true` or `Some(value)`) and returns its value;
/// panics naming `what` once `within` has passed. Tests wait for conditions like this, never
/// for a fixed time.
pub async fn eventually<F, Fut>(
    within: Duration,
    what: &str,
    mut check: F,
) -> <Fut::Output as Settled>::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: Settled,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = match check().await.settled() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}{}",
            seen.map(|s| format!("; last seen: {s}"))
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `check` holds throughout `window` (polled every 20 ms), failing as soon as it
/// does not: for "nothing happens within X", the one kind of wait that no condition can end.
pub async fn assert_stays<F, Fut>(window: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + window;
    loop {
        assert!(check().await, "no longer true within {window:?}: {what}");
        if tokio::time::Instant::now() >= end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a `herald serve` child at `base` answers `/readyz` with 200.
pub async fn wait_ready(base: &str) {
    eventually(Duration::from_secs(20), "herald became ready", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
}
