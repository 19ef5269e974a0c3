//! Reads what each manifest push was, from the registry, after ingest committed it: ingest
//! never waits for a registry. The webhooks that filter on what was pushed get their
//! deliveries here, in the transaction that records the facts; when the registry cannot be
//! read within `--facts-wait`, their deliveries are recorded as not sent, with why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::RegistryError;
use super::reader::Registries;
use crate::domain::artifact::{bounded_tags, from_manifest, ArtifactFacts};
use crate::domain::registry::{FactsRead, PendingFacts};
use crate::metrics::OutcomeLabel;

/// Events read at once.
const BATCH: i64 = 64;
/// Manifests read from registries at once.
const CONCURRENCY: usize = 8;
/// Batches of reads being recorded at once.
const RECORDING: usize = 4;
/// How long a failed read waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Why facts are not there yet.
enum NotRead {
    /// Worth another try until `--facts-wait` runs out.
    Retry(String),
    /// No try would do better.
    Final(String),
}

/// Reads facts whenever ingest says there are some to read, and every second for what was
/// left (another process's, or after a failed read). Reads go on in parallel; what they
/// came to is recorded a batch at a time, each batch whatever reads have finished, so a
/// push's deliveries wait for no slower read and the store commits once per batch, not
/// twice per push; a few batches are recorded at once. `wake` tells the dispatcher about
/// the deliveries made.
pub async fn run(registries: Arc<Registries>, wait: Duration, wake: Arc<dyn Fn() + Send + Sync>) {
    let mut retry_at: HashMap<i64, Instant> = HashMap::new();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    loop {
        tokio::select! {
            _ = registries.facts_wanted.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let pending = match registries.store().pending_facts(BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the events whose facts are to be read");
                continue;
            }
        };
        let now = Instant::now();
        retry_at.retain(|id, _| pending.iter().any(|p| p.event_id == *id));
        let mut reads = JoinSet::new();
        for p in pending
            .into_iter()
            .filter(|p| retry_at.get(&p.event_id).is_none_or(|at| *at <= now))
        {
            let (registries, slots) = (registries.clone(), slots.clone());
            reads.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let id = p.event_id;
                (id, resolve(&registries, p, wait).await)
            });
        }
        // Recorded beside the reads still going, a few batches at once: PostgreSQL commits
        // them in parallel, SQLite's one writer takes them in turn, one commit each.
        let mut records: JoinSet<Vec<i64>> = JoinSet::new();
        let again = |ids: Vec<i64>, retry_at: &mut HashMap<i64, Instant>| {
            for id in ids {
                retry_at.insert(id, Instant::now() + RETRY_AFTER);
            }
        };
        while let Some(first) = reads.join_next().await {
            let mut done = Vec::new();
            let mut take = |joined: Result<(i64, Option<FactsRead>), _>| match joined {
                Ok((_, Some(read))) => done.push(read),
                Ok((id, None)) => {
                    retry_at.insert(id, Instant::now() + RETRY_AFTER);
                }
                Err(_) => {}
            };
            take(first);
            while let Some(next) = reads.try_join_next() {
                take(next);
            }
            while records.len() >= RECORDING {
                if let Some(Ok(ids)) = records.join_next().await {
                    again(ids, &mut retry_at);
                }
            }
            let (registries, wake) = (registries.clone(), wake.clone());
            records.spawn(async move { record(&registries, &done, &*wake).await });
        }
        while let Some(joined) = records.join_next().await {
            if let Ok(ids) = joined {
                again(ids, &mut retry_at);
            }
        }
    }
}

/// Records finished reads in one transaction; the events to try again (none, or all of
/// them when the store failed).
async fn record(
    registries: &Registries,
    done: &[FactsRead],
    wake: &(dyn Fn() + Send + Sync),
) -> Vec<i64> {
    if done.is_empty() {
        return Vec::new();
    }
    let made = match registries.store().complete_facts(done, Utc::now()).await {
        Ok(made) => made,
        Err(e) => {
            tracing::warn!(error = %e, reads = done.len(), "cannot record the facts of pushes");
            return done.iter().map(|r| r.event_id).collect();
        }
    };
    let mut woken = false;
    for (read, made) in done.iter().zip(made) {
        // `None`: another process recorded it first.
        let Some(made) = made else { continue };
        let outcome = if read.outcome.is_ok() {
            "read"
        } else {
            "failed"
        };
        registries
            .metrics()
            .facts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        if let Err(why) = &read.outcome {
            tracing::warn!(event_id = read.event_id, error = %why,
                "the facts of a push could not be read; webhooks that filter on them did not get it");
        }
        woken |= made > 0;
    }
    if woken {
        wake();
    }
    Vec::new()
}

/// Reads one event's facts; `None` when it is to be tried again.
async fn resolve(registries: &Registries, p: PendingFacts, wait: Duration) -> Option<FactsRead> {
    let (outcome, cache) = match read(registries, &p).await {
        Ok((mut facts, fresh)) => {
            if let Some(subject) = facts.subject.clone() {
                match registries
                    .store()
                    .tags_of_digest(&p.source, &p.repository, &subject)
                    .await
                {
                    Ok(tags) => facts.subject_tags = bounded_tags(tags),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the tags of a referrer's subject");
                        return None;
                    }
                }
            }
            (Ok(facts), fresh.then(|| p.digest.clone()))
        }
        Err(NotRead::Final(why)) => (Err(why), None),
        Err(NotRead::Retry(why)) => {
            let waited = Utc::now() - p.received_at;
            if waited.to_std().unwrap_or_default() < wait {
                return None;
            }
            let why = format!(
                "the registry could not be read within {}: {why}",
                humantime::format_duration(wait)
            );
            (Err(why), None)
        }
    };
    Some(FactsRead {
        event_id: p.event_id,
        outcome,
        cache,
    })
}

/// The manifest's facts: from the cache (digests are immutable), else from the registry
/// (then `true`: to be kept).
async fn read(registries: &Registries, p: &PendingFacts) -> Result<(ArtifactFacts, bool), NotRead> {
    if let Ok(Some(facts)) = registries.store().cached_manifest(&p.digest).await {
        registries
            .metrics()
            .facts
            .get_or_create(&OutcomeLabel {
                outcome: "cached".into(),
            })
            .inc();
        return Ok((facts, false));
    }
    let client = match registries.client(&p.source).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(NotRead::Final(
                "Herald may no longer read this source's registry".into(),
            ))
        }
        Err(e) => return Err(NotRead::Retry(e)),
    };
    let manifest = match client.manifest(&p.repository, &p.digest).await {
        Ok(m) => {
            registries.record(&p.source, Ok(()));
            m
        }
        Err(RegistryError::NotFound(_)) => {
            registries.record(&p.source, Ok(()));
            return Err(NotRead::Final(format!(
                "the registry no longer has the manifest {}@{}",
                p.repository, p.digest
            )));
        }
        Err(e) => {
            registries.record(&p.source, Err(&e));
            return Err(NotRead::Retry(e.to_string()));
        }
    };
    // Read with the push's tag (a cosign tag makes a referrer of a digest); a digest is
    // pushed under one such tag, so the facts are kept for the digest as they are.
    let facts = from_manifest(&manifest.media_type, &manifest.bytes, p.tag.as_deref())
        .map_err(|e| NotRead::Final(e.to_string()))?;
    Ok((facts, true))
}
