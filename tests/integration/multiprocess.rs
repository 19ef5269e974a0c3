//! Three `herald serve` processes (the real binary) on one PostgreSQL database. Envelopes
//! go to all three, as through a load balancer, with a client that retries until 2xx as
//! the registry does; one process is SIGKILLed mid-run. Every event must still reach the
//! receiver, no delivery may be in flight twice at once, and the only deliveries allowed
//! to arrive twice are those still leased when the process died.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;

use crate::helpers::fixture;
use crate::helpers::{assert_stays, eventually};
use crate::pg::PgTestDb;

const EVENTS: usize = 300;
const PROCESSES: usize = 3;
const KILLED: usize = 1;
const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const REGISTRY_TOKEN: &str = "multiprocess-registry-token";
/// How long the receiver holds each request: long enough for a second sender to overlap.
const HOLD: Duration = Duration::from_millis(40);

/// A `herald` child process, killed when dropped; its stderr is kept for failure reports.
struct Herald {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn herald_command(db_url: &str, data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(["--database", db_url, "--data-dir"])
        .arg(data_dir)
        .env("HERALD_SECRET_KEY", KEY)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "herald=info")
        .env_remove("HERALD_DATABASE_URL")
        .env_remove("HERALD_ROLE_API")
        .env_remove("HERALD_ROLE_WORKER");
    cmd
}

/// Drops terminal colour codes, should a log line carry any.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `herald serve` on port 0 and reads the bound address from its log line.
fn start(db_url: &str, data_dir: &std::path::Path) -> Herald {
    let mut child = herald_command(db_url, data_dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--registry-token",
            REGISTRY_TOKEN,
            // A lease far longer than the test: a dead process's claims must come back
            // through the others' heartbeat check, within seconds.
            "--delivery-timeout",
            "2s",
            "--delivery-lease",
            "120s",
            "--retry-schedule",
            "0s,500ms,500ms,500ms,500ms",
            "--delivery-concurrency-per-webhook",
            "4",
            "--database-max-connections",
            "4",
            "--delivery-allow-networks",
            "127.0.0.1/32",
            "serve",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the herald binary starts");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    // Keeps draining stderr for the life of the process, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = plain(&line);
            if line.contains("Herald is listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                let _ = tx.send(addr);
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "herald serve did not say where it listens:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    Herald { child, addr, log }
}

/// Runs a CLI command of the binary against the database; returns stdout.
fn cli(db_url: &str, data_dir: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let mut child = herald_command(db_url, data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Which of `pids` owns the loopback TCP socket whose local end is `peer` (Linux: the
/// socket's inode in /proc/net/tcp, then the processes' descriptors). `None` elsewhere.
fn sender_pid(peer: SocketAddr, pids: &[u32]) -> Option<u32> {
    let std::net::IpAddr::V4(ip) = peer.ip() else {
        return None;
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        peer.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Inode 0: a closed connection (TIME_WAIT) that once had the same port.
        (fields.get(1) == Some(&local.as_str()) && fields.get(9) != Some(&"0"))
            .then(|| fields.get(9).map(|i| i.to_string()))
            .flatten()
    })?;
    let socket = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.to_string_lossy() == socket)
                })
            })
            .unwrap_or(false)
    })
}

/// A request's client address and, when found out, its process.
type Sender = (SocketAddr, Option<u32>);

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// The herald processes, to tell which one sent a request.
    pids: Vec<u32>,
    /// Requests per registry event id.
    by_event: HashMap<String, usize>,
    /// The sending process of every request and when it came, per delivery id (`None`:
    /// not found out, as when the sender died while its request was arriving).
    by_delivery: HashMap<i64, Vec<(Option<u32>, Instant)>>,
    /// Senders of the requests in flight, per delivery id.
    in_flight: HashMap<i64, Vec<Sender>>,
    /// Deliveries that arrived while the same delivery was still in flight.
    overlaps: Vec<(i64, Vec<Sender>)>,
    requests: usize,
}

type Shared = Arc<Mutex<Seen>>;

async fn receive(
    State(seen): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let pids = seen.lock().unwrap().pids.clone();
    let pid = sender_pid(peer, &pids);
    let delivery: i64 = headers
        .get("x-herald-delivery")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    let event = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_default();
    {
        let mut s = seen.lock().unwrap();
        s.requests += 1;
        *s.by_event.entry(event).or_default() += 1;
        s.by_delivery
            .entry(delivery)
            .or_default()
            .push((pid, Instant::now()));
        let senders = s.in_flight.entry(delivery).or_default();
        senders.push((peer, pid));
        if senders.len() > 1 {
            let senders = senders.clone();
            s.overlaps.push((delivery, senders));
        }
    }
    // The request is over when the handler ends, or is dropped because its sender died.
    let _done = InFlight {
        seen: seen.clone(),
        delivery,
        peer,
    };
    tokio::time::sleep(HOLD).await;
    "ok"
}

struct InFlight {
    seen: Shared,
    delivery: i64,
    peer: SocketAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.seen.lock() {
            if let Some(senders) = s.in_flight.get_mut(&self.delivery) {
                if let Some(i) = senders.iter().position(|(p, _)| *p == self.peer) {
                    senders.remove(i);
                }
            }
        }
    }
}

/// On failure, shows what the processes logged.
struct LogsOnPanic<'a>(&'a [Herald]);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, h) in self.0.iter().enumerate() {
                let log = h.log.lock().unwrap();
                let tail = &log[log.len().saturating_sub(40)..];
                eprintln!("--- herald #{i} ({}):\n{}", h.addr, tail.join("\n"));
            }
        }
    }
}

/// An admin's API token and `PROCESSES` running `herald serve` on the test database, each
/// with a data directory of its own (kept while the processes run).
fn three_processes(db: &PgTestDb) -> (Vec<tempfile::TempDir>, String, Vec<Herald>) {
    let dirs: Vec<tempfile::TempDir> = (0..PROCESSES)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    // The user commands need the schema: `migrate` makes it, as `serve` would.
    cli(&db.url, dirs[0].path(), &["migrate"], "");
    cli(
        &db.url,
        dirs[0].path(),
        &["user", "create", "admin", "--admin"],
        "admin-password\n",
    );
    let token = cli(&db.url, dirs[0].path(), &["token", "create", "admin"], "")
        .trim()
        .to_string();
    let procs = dirs.iter().map(|d| start(&db.url, d.path())).collect();
    (dirs, token, procs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_work_and_survive_a_kill() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let started = Instant::now();
    let (_dirs, token, mut procs) = three_processes(&db);

    let seen: Shared = Arc::new(Mutex::new(Seen {
        pids: procs.iter().map(|p| p.child.id()).collect(),
        ..Default::default()
    }));
    let killed_pid = procs[KILLED].child.id();
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let api = format!("http://{}/api/v1", procs[0].addr);
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post("/namespaces", serde_json::json!({"name": "acme"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "/namespaces/acme/webhooks",
        serde_json::json!({"name": "rx", "url": format!("http://{receiver}/hook"), "request_method": "POST"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let hook: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let r = client
        .patch(format!("{api}/namespaces/acme/webhooks/{}", hook["id"]))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(serde_json::json!({"enabled": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Three posters, each retrying an envelope on the next process until one answers 2xx.
    let addrs: Vec<SocketAddr> = procs.iter().map(|p| p.addr).collect();
    let template = String::from_utf8(fixture(PUSH)).unwrap();
    let posted = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let mut posters = Vec::new();
    for p in 0..3 {
        let (client, addrs, template) = (client.clone(), addrs.clone(), template.clone());
        let (posted, retried) = (posted.clone(), retried.clone());
        posters.push(tokio::spawn(async move {
            for i in (p..EVENTS).step_by(3) {
                let body = template.replace("2045f19c", &format!("{i:08x}"));
                let mut target = i % PROCESSES;
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let sent = client
                        .post(format!("http://{}/v2/webhooks/events", addrs[target]))
                        .bearer_auth(REGISTRY_TOKEN)
                        .header(
                            "content-type",
                            "application/vnd.docker.distribution.events.v1+json",
                        )
                        .body(body.clone())
                        .send()
                        .await;
                    if matches!(&sent, Ok(r) if r.status().is_success()) {
                        break;
                    }
                    assert!(Instant::now() < deadline, "envelope {i} never accepted");
                    retried.fetch_add(1, Ordering::SeqCst);
                    target = (target + 1) % PROCESSES;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                posted.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Mid-run: half the envelopes in and deliveries under way, one process dies.
    eventually(Duration::from_secs(60), "the run got going", || async {
        posted.load(Ordering::SeqCst) >= EVENTS / 2 && seen.lock().unwrap().requests >= 30
    })
    .await;
    let kill = Instant::now();
    procs[KILLED].child.kill().unwrap(); // SIGKILL
    procs[KILLED].child.wait().unwrap();
    let killed_at = chrono::Utc::now().timestamp_millis();
    // What was leased at that moment: the dead process's claims are among these.
    let mut conn = db.connect().await;
    let leased: HashSet<i64> = sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE state IN ('pending', 'retrying') AND locked_until > $1",
    )
    .bind(killed_at)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let _logs = LogsOnPanic(&procs);

    for p in posters {
        p.await.unwrap();
    }
    // Every event arrives within 15 s of the kill (its claims are given back when its
    // heartbeat is missed, not after the 120 s lease), and the database agrees that every
    // delivery succeeded.
    let succeeded = || async {
        let mut conn = db.connect().await;
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        done
    };
    let left = Duration::from_secs(15).saturating_sub(kill.elapsed());
    eventually(
        left,
        "every event arrived and every delivery succeeded within 15 s of the kill",
        || async {
            seen.lock().unwrap().by_event.len() >= EVENTS && succeeded().await == EVENTS as i64
        },
    )
    .await;
    // Nothing arrives twice later: no second send of anything delivered.
    let arrived = seen.lock().unwrap().requests;
    assert_stays(Duration::from_millis(500), "no late resends", || async {
        seen.lock().unwrap().requests == arrived
    })
    .await;

    let deliveries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let s = seen.lock().unwrap();
    // A sender that cannot be found any more is the killed process, caught dying; any
    // other request must be traced to its (live) process.
    let near_kill = |at: &Instant| {
        at.saturating_duration_since(kill) < Duration::from_secs(1)
            && kill.saturating_duration_since(*at) < Duration::from_secs(1)
    };
    let sender = |(pid, at): &(Option<u32>, Instant)| match pid {
        Some(pid) => Some(*pid),
        None if near_kill(at) || !cfg!(target_os = "linux") => Some(killed_pid),
        None => None,
    };
    let duplicates: Vec<(i64, Vec<Option<u32>>)> = s
        .by_delivery
        .iter()
        .filter(|(_, sends)| sends.len() > 1)
        .map(|(d, sends)| (*d, sends.iter().map(sender).collect()))
        .collect();
    // A second send is allowed only when the first came from the killed process (it sent,
    // then died before recording) and the delivery was under a lease when it died.
    let unexplained: Vec<&(i64, Vec<Option<u32>>)> = duplicates
        .iter()
        .filter(|(d, senders)| !leased.contains(d) || !senders.contains(&Some(killed_pid)))
        .collect();
    let mut per_process: HashMap<Option<u32>, usize> = HashMap::new();
    for send in s.by_delivery.values().flatten() {
        *per_process.entry(sender(send)).or_default() += 1;
    }
    let unattributed = per_process.get(&None).copied().unwrap_or(0);
    println!(
        "multi-process run: {EVENTS} events, {deliveries} deliveries, {} requests received \
         (per process: {per_process:?}), {} duplicate deliveries {duplicates:?}, {} overlaps, \
         {} leased when process #{KILLED} (pid {killed_pid}) was killed, {} ingest retries, \
         {:.1}s (pid {killed_pid} counts requests whose sender died as they arrived)",
        s.requests,
        duplicates.len(),
        s.overlaps.len(),
        leased.len(),
        retried.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    // A sender can vanish from /proc before it is looked up (under load, a request of the
    // killed process may arrive more than a second around the kill): such requests are
    // allowed only for deliveries the killed process held.
    let unknown_outside_lease: Vec<i64> = s
        .by_delivery
        .iter()
        .filter(|(d, sends)| sends.iter().any(|send| sender(send).is_none()) && !leased.contains(d))
        .map(|(d, _)| *d)
        .collect();
    assert!(
        unknown_outside_lease.is_empty(),
        "{unattributed} requests of unknown senders, for deliveries the killed process did not hold: {unknown_outside_lease:?}"
    );
    assert_eq!(
        deliveries, EVENTS as i64,
        "one delivery per event, none lost or doubled"
    );
    assert!(
        s.by_event
            .keys()
            .all(|e| e.ends_with("-7a89-451b-8ea6-bfb7cac6a943")),
        "only our events arrived"
    );
    assert!(
        s.overlaps.is_empty(),
        "deliveries sent by two processes at once: {:?}",
        s.overlaps
    );
    assert!(
        unexplained.is_empty(),
        "deliveries sent twice that the killed process did not hold: {unexplained:?}"
    );
    assert_eq!(
        s.by_delivery.get(&-1),
        None,
        "every request names its delivery"
    );
}

/// A webhook's rate limit is shared by the processes that claim its deliveries: three
/// processes together deliver at the limit, not three times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_processes() {
    const LIMITED: usize = 24;
    const RATE: f64 = 4.0;
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let (_dirs, token, procs) = three_processes(&db);
    let _logs = LogsOnPanic(&procs);

    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(at): State<Arc<Mutex<Vec<Instant>>>>, _body: axum::body::Bytes| async move {
                at.lock().unwrap().push(Instant::now());
                "ok"
            },
        )
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let api = format!("http://{}/api/v1", procs[0].addr);
    let send = |method: reqwest::Method, path: String, body: serde_json::Value| {
        client
            .request(method, format!("{api}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = send(
        reqwest::Method::POST,
        "/namespaces".into(),
        serde_json::json!({"name": "acme"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = send(
        reqwest::Method::POST,
        "/namespaces/acme/webhooks".into(),
        serde_json::json!({"name": "ci", "url": format!("http://{receiver}/hook"),
            "request_method": "POST", "rate_limit": RATE}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let hook: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let r = send(
        reqwest::Method::PATCH,
        format!("/namespaces/acme/webhooks/{}", hook["id"]),
        serde_json::json!({"enabled": true}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);

    // Every process has heartbeaten since the last one registered, so each counts three.
    eventually(Duration::from_secs(30), "the processes saw each other", || async {
        let mut conn = db.connect().await;
        let (live, counted): (i64, bool) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MIN(heartbeat_at) > MAX(started_at) + 100, false) FROM workers",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        live == PROCESSES as i64 && counted
    })
    .await;

    let template = String::from_utf8(fixture(PUSH)).unwrap();
    for i in 0..LIMITED {
        let body = template.replace("2045f19c", &format!("{i:08x}"));
        let r = client
            .post(format!(
                "http://{}/v2/webhooks/events",
                procs[i % PROCESSES].addr
            ))
            .bearer_auth(REGISTRY_TOKEN)
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "envelope {i}: {}", r.status());
    }
    eventually(
        Duration::from_secs(60),
        "every limited delivery arrived",
        || async { arrivals.lock().unwrap().len() >= LIMITED },
    )
    .await;
    // At 4/s with a burst of a second's worth (each process: its third, rounded up), the 24
    // take about 4.5 s; three processes each keeping the whole limit would take about 1 s.
    let at = arrivals.lock().unwrap().clone();
    let span = at[at.len() - 1].duration_since(at[0]);
    assert!(
        span >= Duration::from_secs(3),
        "{LIMITED} deliveries at {RATE}/s across {PROCESSES} processes arrived within {span:?}"
    );
}
