//! Reads what each manifest push was, from the registry, after ingest committed it: ingest
//! never waits for a registry. The webhooks that filter on what was pushed get their
//! deliveries here, in the transaction that records the facts; when the registry cannot be
//! read within `--facts-wait`, their deliveries are recorded as not sent, with why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinSet;

use super::client::RegistryError;
use super::reader::Registries;
use crate::domain::artifact::{bounded_tags, from_manifest, ArtifactFacts};
use crate::domain::registry::PendingFacts;
use crate::metrics::OutcomeLabel;

/// Events read at once.
const BATCH: i64 = 64;
/// Manifests read from registries at once.
const CONCURRENCY: usize = 8;
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
/// left (another process's, or after a failed read). `wake` tells the dispatcher about
/// the deliveries made.
pub async fn run(registries: Arc<Registries>, wait: Duration, wake: Arc<dyn Fn() + Send + Sync>) {
    let mut retry_at: HashMap<i64, Instant> = HashMap::new();
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
        let due: Vec<PendingFacts> = pending
            .into_iter()
            .filter(|p| retry_at.get(&p.event_id).is_none_or(|at| *at <= now))
            .collect();
        let mut reads = JoinSet::new();
        for p in due {
            if reads.len() >= CONCURRENCY {
                if let Some(Ok((id, retry))) = reads.join_next().await {
                    note_retry(&mut retry_at, id, retry);
                }
            }
            let registries = registries.clone();
            let wake = wake.clone();
            reads.spawn(async move {
                let id = p.event_id;
                (id, resolve(&registries, p, wait, &*wake).await)
            });
        }
        while let Some(joined) = reads.join_next().await {
            if let Ok((id, retry)) = joined {
                note_retry(&mut retry_at, id, retry);
            }
        }
    }
}

fn note_retry(retry_at: &mut HashMap<i64, Instant>, id: i64, retry: bool) {
    if retry {
        retry_at.insert(id, Instant::now() + RETRY_AFTER);
    } else {
        retry_at.remove(&id);
    }
}

/// Reads one event's facts and records them; true when it is to be tried again.
async fn resolve(
    registries: &Registries,
    p: PendingFacts,
    wait: Duration,
    wake: &(dyn Fn() + Send + Sync),
) -> bool {
    let outcome = match read(registries, &p).await {
        Ok(mut facts) => {
            if let Some(subject) = facts.subject.clone() {
                match registries
                    .store()
                    .tags_of_digest(&p.source, &p.repository, &subject)
                    .await
                {
                    Ok(tags) => facts.subject_tags = bounded_tags(tags),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the tags of a referrer's subject");
                        return true;
                    }
                }
            }
            Ok(facts)
        }
        Err(NotRead::Final(why)) => Err(why),
        Err(NotRead::Retry(why)) => {
            let waited = Utc::now() - p.received_at;
            if waited.to_std().unwrap_or_default() < wait {
                return true;
            }
            Err(format!(
                "the registry could not be read within {}: {why}",
                humantime::format_duration(wait)
            ))
        }
    };
    let label = if outcome.is_ok() { "read" } else { "failed" };
    match registries
        .store()
        .complete_facts(p.event_id, &outcome, Utc::now())
        .await
    {
        Ok(Some(made)) => {
            registries
                .metrics()
                .facts
                .get_or_create(&OutcomeLabel {
                    outcome: label.into(),
                })
                .inc();
            if made > 0 {
                wake();
            }
            if let Err(why) = &outcome {
                tracing::warn!(event_id = p.event_id, source = %p.source, error = %why,
                    "the facts of a push could not be read; webhooks that filter on them did not get it");
            }
            false
        }
        // Another process recorded it first.
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(event_id = p.event_id, error = %e, "cannot record the facts of a push");
            true
        }
    }
}

/// The manifest's facts: from the cache (digests are immutable), else from the registry.
async fn read(registries: &Registries, p: &PendingFacts) -> Result<ArtifactFacts, NotRead> {
    if let Ok(Some(facts)) = registries.store().cached_manifest(&p.digest).await {
        registries
            .metrics()
            .facts
            .get_or_create(&OutcomeLabel {
                outcome: "cached".into(),
            })
            .inc();
        return Ok(facts);
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
    if let Err(e) = registries.store().cache_manifest(&p.digest, &facts).await {
        tracing::warn!(error = %e, "cannot keep a manifest's facts");
    }
    Ok(facts)
}
