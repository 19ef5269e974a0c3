//! The load client: envelopes as the registry posts them, as fast as they are accepted
//! (`blast`) or at a fixed rate, timing each delivery's arrival (`latency_run`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::receiver::Arrivals;

pub(crate) const TOKEN: &str = "bench-registry-token";
pub(crate) const TEMPLATE: &str =
    include_str!("../../tests/fixtures/distribution-2.8.2/push-manifest-tagged.json");
pub(crate) const TEMPLATE_ID: &str = "2045f19c-7a89-451b-8ea6-bfb7cac6a943";
pub(crate) const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The manifest digest the template's push names.
pub(crate) const TEMPLATE_DIGEST: &str =
    "sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31";

/// A one-event envelope (a manifest push to `acme/web`) with a unique event id.
pub(crate) fn envelope(id: &str) -> Vec<u8> {
    TEMPLATE.replace(TEMPLATE_ID, id).into_bytes()
}

/// The same push, of the manifest `digest`.
pub(crate) fn envelope_of(id: &str, digest: &str) -> Vec<u8> {
    TEMPLATE
        .replace(TEMPLATE_ID, id)
        .replace(TEMPLATE_DIGEST, digest)
        .into_bytes()
}

/// Posts `n` one-event envelopes over `connections` concurrent keep-alive connections,
/// retrying like the registry until each is accepted 2xx; returns envelopes/s.
pub(crate) async fn blast(
    url: &str,
    prefix: &str,
    n: usize,
    connections: usize,
) -> anyhow::Result<f64> {
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

pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) samples: usize,
    /// Envelopes Herald did not accept (503 beyond --ingest-max-in-flight, or errors).
    pub(crate) refused: u64,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Sends at `rate` per second for `secs`; latency is from the envelope's send to the
/// receiver's arrival, for the envelopes Herald accepted. (Not from the ingest's answer: a
/// delivery born claimed often arrives before the answer is read.)
pub(crate) async fn latency_run(
    url: &str,
    prefix: &str,
    arrivals: &Arrivals,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Latency> {
    latency_run_of(url, prefix, arrivals, rate, rate * secs, &|id, _| {
        envelope(id)
    })
    .await
}

/// `latency_run` of `total` envelopes, made by `body(id, i)`.
pub(crate) async fn latency_run_of(
    url: &str,
    prefix: &str,
    arrivals: &Arrivals,
    rate: u64,
    total: u64,
    body: &(dyn Fn(&str, u64) -> Vec<u8> + Sync),
) -> anyhow::Result<Latency> {
    if let Ok(mut t) = arrivals.times.lock() {
        t.clear();
    }
    arrivals.record_times.store(true, Ordering::SeqCst);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let accepted: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let (client, url, accepted, refused) = (
            client.clone(),
            url.to_string(),
            accepted.clone(),
            refused.clone(),
        );
        let id = format!("{prefix}-{i:012}");
        let bytes = body(&id, i);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let res = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", MEDIA_TYPE)
                .body(bytes)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    if let Ok(mut a) = accepted.lock() {
                        a.push((id, sent));
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
    let expected = accepted.lock().map(|a| a.len()).unwrap_or(0);
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
    let mut ms: Vec<f64> = accepted
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
