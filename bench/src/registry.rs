//! Herald reading a registry: a stand-in that speaks the distribution API's read side
//! (catalog and tag lists paginated with `Link`, `n` and `last`; manifests by tag and by
//! digest) for a catalog of any size without storing it, the reconcile scenario, and the
//! push-to-receiver latency with facts read against without.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::herald::{memory_mib, AnonPeak, Herald};
use crate::load::{envelope_of, latency_run_of, Latency};
use crate::receiver::{wait_count, Arrivals};
use crate::Sizes;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// distribution's own most entries per catalog page.
const MAX_PAGE: usize = 1000;

/// A registry of `repos` repositories (`acme/r00000`, ...) with `tags` tags each (`t00`,
/// ...), every tag its own manifest. Tags of every `moved_every`-th repository's `t00` point
/// at a newer manifest once it is set: a push the registry never notified.
pub(crate) struct Standin {
    repos: usize,
    tags: usize,
    moved_every: AtomicUsize,
    /// Manifests Herald may read by digest (the moved tags', the latency run's).
    by_digest: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    pub(crate) requests: AtomicU64,
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A small OCI image manifest, different for every `label`.
pub(crate) fn manifest(label: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[],"annotations":{{"org.opencontainers.image.version":"{label}"}}}}"#
    )
    .into_bytes()
}

impl Standin {
    pub(crate) fn new(repos: usize, tags: usize) -> Arc<Self> {
        Arc::new(Self {
            repos,
            tags,
            moved_every: AtomicUsize::new(0),
            by_digest: Mutex::default(),
            requests: AtomicU64::new(0),
        })
    }

    fn repo(i: usize) -> String {
        format!("acme/r{i:05}")
    }

    /// How many tags a move of every `every`-th repository's `t00` changes.
    pub(crate) fn move_tags(&self, every: usize) -> usize {
        self.moved_every.store(every, Ordering::SeqCst);
        self.repos.div_ceil(every)
    }

    /// A manifest Herald may read by digest; its digest.
    pub(crate) fn add(&self, bytes: Vec<u8>) -> String {
        let digest = digest_of(&bytes);
        if let Ok(mut m) = self.by_digest.lock() {
            m.insert(digest.clone(), Arc::new(bytes));
        }
        digest
    }

    fn tag_manifest(&self, repo: usize, tag: usize) -> Vec<u8> {
        let every = self.moved_every.load(Ordering::SeqCst);
        let moved = tag == 0 && every > 0 && repo % every == 0;
        let bytes = manifest(&format!("{repo}-{tag}-{}", u8::from(moved)));
        if moved {
            self.add(bytes.clone());
        }
        bytes
    }

    /// Starts serving on loopback; its address.
    pub(crate) async fn serve(self: &Arc<Self>) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }
}

/// `n` and `last` of a paginated list.
fn page_params(uri: &Uri) -> (usize, Option<String>) {
    let mut n = 100;
    let mut last = None;
    for pair in uri.query().unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("n", v)) => n = v.parse().unwrap_or(100),
            Some(("last", v)) => last = Some(v.replace("%2F", "/").replace("%2f", "/")),
            _ => {}
        }
    }
    (n.clamp(1, MAX_PAGE), last)
}

/// A page of a list: its `names`, and when `more` follow, the `Link` to them.
fn listed(path: &str, key: &str, names: &[String], n: usize, more: bool) -> Response {
    let body = serde_json::json!({ key: names }).to_string();
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let (true, Some(last)) = (more, names.last()) {
        let link = format!(
            "<{path}?last={}&n={n}>; rel=\"next\"",
            last.replace('/', "%2F")
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

async fn answer(
    State(s): State<Arc<Standin>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let path = uri.path().trim_start_matches("/v2/").to_string();
    if path.is_empty() {
        return "{}".into_response();
    }
    if path == "_catalog" {
        // Only the page asked for is made: memory does not grow with the catalog.
        let (n, last) = page_params(&uri);
        let from = last
            .and_then(|l| {
                l.strip_prefix("acme/r")
                    .and_then(|i| i.parse::<usize>().ok())
            })
            .map_or(0, |i| i + 1);
        let to = (from + n).min(s.repos);
        let names: Vec<String> = (from..to).map(Standin::repo).collect();
        return listed("/v2/_catalog", "repositories", &names, n, to < s.repos);
    }
    let Some((repo, rest)) = path.strip_prefix("acme/r").and_then(|p| p.split_once('/')) else {
        return by_digest(&s, &path, &method);
    };
    let Ok(repo) = repo.parse::<usize>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if rest == "tags/list" {
        let (n, last) = page_params(&uri);
        let tags: Vec<String> = (0..s.tags).map(|t| format!("t{t:02}")).collect();
        let from = last.map_or(0, |l| tags.partition_point(|t| *t <= l));
        let to = (from + n).min(tags.len());
        let path = format!("/v2/{}/tags/list", Standin::repo(repo));
        return listed(&path, "tags", &tags[from..to], n, to < tags.len());
    }
    let Some(reference) = rest.strip_prefix("manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(tag) = reference
        .strip_prefix('t')
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|t| *t < s.tags && repo < s.repos)
    else {
        return by_digest(&s, &path, &method);
    };
    let bytes = s.tag_manifest(repo, tag);
    manifest_response(&bytes, &method)
}

fn by_digest(s: &Standin, path: &str, method: &Method) -> Response {
    let Some((_, digest)) = path.rsplit_once("/manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found = s.by_digest.lock().ok().and_then(|m| m.get(digest).cloned());
    match found {
        Some(bytes) => manifest_response(&bytes, method),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn manifest_response(bytes: &[u8], method: &Method) -> Response {
    let headers = [
        (header::CONTENT_TYPE, MANIFEST_TYPE.to_string()),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest_of(bytes),
        ),
    ];
    if *method == Method::HEAD {
        (headers, ()).into_response()
    } else {
        (headers, bytes.to_vec()).into_response()
    }
}

/// What a reconcile of one catalog cost.
#[derive(Default, Clone)]
pub(crate) struct ReconcileFigures {
    pub(crate) learn_secs: Option<f64>,
    pub(crate) learn_rate: Option<f64>,
    pub(crate) second_secs: Option<f64>,
    pub(crate) pushes: Option<f64>,
    pub(crate) arrived: Option<f64>,
    /// Anonymous memory (heap, stacks) at its peak during the learning run, MiB; and with
    /// a catalog a tenth the size, to show it does not grow with the catalog.
    pub(crate) anon_peak: f64,
    pub(crate) anon_peak_small: f64,
    pub(crate) rss_peak: f64,
}

/// Waits for the default source's reconcile to finish a run other than `before`; the
/// status.
async fn finished(
    herald: &Herald,
    before: Option<&str>,
    limit: Duration,
) -> anyhow::Result<serde_json::Value> {
    let api = herald.api();
    let deadline = Instant::now() + limit;
    loop {
        let r = api
            .call(
                reqwest::Method::GET,
                "/sources/default/reconcile",
                serde_json::Value::Null,
            )
            .await?;
        if r["state"] == "idle" && r["learned"] == true && r["finished_at"].as_str() != before {
            anyhow::ensure!(
                r["error"].is_null(),
                "the reconcile stopped: {}",
                r["error"]
            );
            return Ok(r);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no reconcile within {limit:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seconds(r: &serde_json::Value) -> Option<f64> {
    let at = |k: &str| {
        r[k].as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    Some((at("finished_at")? - at("started_at")?).num_milliseconds() as f64 / 1000.0)
}

fn reading_args(addr: SocketAddr) -> Vec<String> {
    [
        "--registry-url",
        &format!("http://{addr}"),
        "--reconcile-interval",
        "0s",
        // The bench measures what a reconcile costs, not its pacing (20/s by default).
        "--reconcile-rate",
        "10000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One learning run of a fresh Herald over `repos` x `tags`: the Herald (still running),
/// the stand-in, the status and the anonymous memory's peak.
async fn learn(
    pg_admin: Option<&str>,
    repos: usize,
    tags: usize,
    patience: Duration,
) -> anyhow::Result<(Herald, Arc<Standin>, serde_json::Value, f64)> {
    let standin = Standin::new(repos, tags);
    let addr = standin.serve().await?;
    // Herald reconciles when it starts: the first run learns the catalog.
    let herald = Herald::start_with(pg_admin, &reading_args(addr)).await?;
    let anon = AnonPeak::start(herald.pid());
    let status = finished(&herald, None, patience).await?;
    Ok((herald, standin, status, anon.mib()))
}

/// The reconcile scenario: the time, request rate and peak memory of a first run over
/// `repos` x `tags`, then a second run that finds the moved tags and delivers them.
pub(crate) async fn reconcile_scenario(
    sizes: &Sizes,
    pg_admin: Option<&str>,
    receiver_url: &str,
    arrivals: &Arrivals,
) -> anyhow::Result<ReconcileFigures> {
    let mut f = ReconcileFigures::default();
    let (repos, tags) = (sizes.reconcile_repos, sizes.reconcile_tags);
    let small = learn(pg_admin, (repos / 10).max(1), tags, sizes.patience).await?;
    f.anon_peak_small = small.3;
    drop(small);

    println!("  reconcile: {repos} repositories x {tags} tags");
    let (herald, standin, first, anon) = learn(pg_admin, repos, tags, sizes.patience).await?;
    f.anon_peak = anon;
    f.rss_peak = memory_mib(herald.pid()).0;
    f.learn_secs = seconds(&first);
    let requests = standin.requests.load(Ordering::SeqCst) as f64;
    f.learn_rate = f.learn_secs.map(|s| requests / s.max(0.001));
    println!(
        "  reconcile: learned in {:?} s, {:?} requests/s, heap peak {anon:.1} MiB ({:.1} MiB at a tenth the size)",
        f.learn_secs,
        f.learn_rate.map(f64::round),
        f.anon_peak_small
    );

    herald.webhooks(1, receiver_url).await?;
    arrivals.count.store(0, Ordering::SeqCst);
    let moved = standin.move_tags(100);
    herald
        .api()
        .call(
            reqwest::Method::POST,
            "/sources/default/reconcile",
            serde_json::Value::Null,
        )
        .await?;
    let second = finished(&herald, first["finished_at"].as_str(), sizes.patience).await?;
    f.second_secs = seconds(&second);
    f.pushes = second["pushes"].as_f64();
    f.arrived = wait_count(arrivals, moved as u64, sizes.patience)
        .await
        .map(|_| arrivals.count.load(Ordering::SeqCst) as f64);
    println!(
        "  reconcile: second run {:?} s, {:?} pushes made of {moved} moved tags, {:?} delivered",
        f.second_secs, f.pushes, f.arrived
    );
    Ok(f)
}

/// Push-to-receiver latency at the latency scenario's rate, Herald reading the registry:
/// first with a webhook that does not filter on facts (they are read beside the delivery),
/// then with one that does (`kinds`), which waits for each manifest to be read. Every push
/// names a manifest of its own, so no read is served from the cache.
pub(crate) async fn facts_latency(
    sizes: &Sizes,
    pg_admin: Option<&str>,
    receiver_url: &str,
    arrivals: &Arrivals,
    run: u32,
) -> anyhow::Result<(Latency, Latency)> {
    let standin = Standin::new(0, 0);
    let addr = standin.serve().await?;
    let herald = Herald::start_with(pg_admin, &reading_args(addr)).await?;
    herald.webhooks(1, receiver_url).await?;
    let total = sizes.latency_rate * sizes.latency_secs;
    let measure = |label: &'static str| {
        let digests: Vec<String> = (0..total)
            .map(|i| standin.add(manifest(&format!("{label}-{run}-{i}"))))
            .collect();
        move |id: &str, i: u64| envelope_of(id, &digests[i as usize])
    };
    let plain = measure("plain");
    println!("  facts: latency without a facts filter");
    let without = latency_run_of(
        &herald.ingest_url(),
        &format!("fp{run}"),
        arrivals,
        sizes.latency_rate,
        total,
        &plain,
    )
    .await?;
    let api = herald.api();
    let hooks = api
        .call(
            reqwest::Method::GET,
            "/namespaces/acme/webhooks",
            serde_json::Value::Null,
        )
        .await?;
    let items = hooks.get("items").unwrap_or(&hooks);
    let id = items[0]["id"].clone();
    api.call(
        reqwest::Method::PATCH,
        &format!("/namespaces/acme/webhooks/{id}"),
        serde_json::json!({"filters": {"kinds": ["image"]}}),
    )
    .await?;
    let needing = measure("facts");
    println!("  facts: latency with a facts filter");
    let with = latency_run_of(
        &herald.ingest_url(),
        &format!("ff{run}"),
        arrivals,
        sizes.latency_rate,
        total,
        &needing,
    )
    .await?;
    println!(
        "  facts: p99 {:.1} ms without, {:.1} ms with ({} and {} samples)",
        without.p99, with.p99, without.samples, with.samples
    );
    Ok((without, with))
}
