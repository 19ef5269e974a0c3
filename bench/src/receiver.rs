//! The receiving end: a fast webhook receiver that counts (and, when asked, times) what
//! arrives, and the trivial server that gives the machine's baseline.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;

/// The receiver: counts arrivals and, when asked, remembers when each event arrived.
#[derive(Clone, Default)]
pub(crate) struct Arrivals {
    pub(crate) count: Arc<AtomicU64>,
    pub(crate) times: Arc<Mutex<Vec<(String, Instant)>>>,
    pub(crate) record_times: Arc<AtomicBool>,
    /// The distinct event ids that arrived since `count_distinct` was called: a delivery
    /// sent again after a crash counts once.
    distinct: Arc<Mutex<Option<HashSet<String>>>>,
}

impl Arrivals {
    pub(crate) fn count_distinct(&self) {
        if let Ok(mut d) = self.distinct.lock() {
            *d = Some(HashSet::new());
        }
    }

    /// Counts one delivery whose body is `body` and, when asked, notes when its event
    /// arrived: the HTTP receiver and the brokers' consumers alike.
    pub(crate) fn arrived(&self, body: &[u8]) {
        let now = Instant::now();
        self.count.fetch_add(1, Ordering::Relaxed);
        let id = || {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
        };
        if self.record_times.load(Ordering::Relaxed) {
            if let (Some(id), Ok(mut t)) = (id(), self.times.lock()) {
                t.push((id, now));
            }
        }
        if let Ok(mut distinct) = self.distinct.lock() {
            if let (Some(d), Some(id)) = (distinct.as_mut(), id()) {
                d.insert(id);
            }
        }
    }

    pub(crate) fn distinct(&self) -> usize {
        self.distinct
            .lock()
            .ok()
            .and_then(|d| d.as_ref().map(HashSet::len))
            .unwrap_or(0)
    }
}

pub(crate) async fn receive(State(a): State<Arrivals>, body: Bytes) -> &'static str {
    a.arrived(&body);
    "ok"
}

pub(crate) async fn start_receiver() -> anyhow::Result<(SocketAddr, Arrivals)> {
    let arrivals = Arrivals::default();
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, arrivals))
}

/// Waits until `target` deliveries arrived; how long that took, or None after `limit`.
pub(crate) async fn wait_count(
    arrivals: &Arrivals,
    target: u64,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while arrivals.count.load(Ordering::Relaxed) < target {
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(started.elapsed())
}

/// Waits until `target` distinct events arrived (see [`Arrivals::count_distinct`]).
pub(crate) async fn wait_distinct(arrivals: &Arrivals, target: usize, limit: Duration) -> bool {
    let started = Instant::now();
    while arrivals.distinct() < target {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

pub(crate) async fn trivial_server(port: u16) -> anyhow::Result<()> {
    async fn ok(_body: Bytes) -> &'static str {
        "{}"
    }
    let app = axum::Router::new().fallback(ok);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
