//! Group commit for ingest: envelopes that arrive while a commit is under way are stored
//! together in the next transaction, so N concurrent envelopes cost one fsync, not N.
//!
//! Durability is unchanged: each request is answered only once the transaction holding its
//! events has committed, and when that transaction fails every request in it gets the error
//! (5xx, so the registry retries). Batching adds no waiting: a lone envelope is stored at
//! once; only envelopes that queued up during the previous commit are grouped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::registry::envelope::IncomingEvent;
use crate::store::{IngestSummary, Store, StoreError, StoreResult};

/// At most this many envelopes share a transaction, so one commit stays short.
const MAX_BATCH: usize = 256;

struct Job {
    events: Arc<[IncomingEvent]>,
    reply: oneshot::Sender<StoreResult<IngestSummary>>,
}

/// Hands envelopes to the one task that stores them; see the module documentation.
pub struct IngestBatcher {
    queue: mpsc::UnboundedSender<Job>,
    batches: Arc<AtomicU64>,
}

impl IngestBatcher {
    /// Starts the storing task on the current Tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let batches = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(store, rx, batches.clone()));
        Self { queue, batches }
    }

    /// Stores one envelope's events; returns once they are committed (or failed).
    pub async fn ingest(&self, events: Arc<[IncomingEvent]>) -> StoreResult<IngestSummary> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { events, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Transactions committed (or attempted) so far: fewer than envelopes under load.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(
        "the ingest batcher has stopped".into(),
    ))
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Job>, batches: Arc<AtomicU64>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batches.fetch_add(1, Ordering::Relaxed);
        let envelopes: Vec<&[IncomingEvent]> = batch.iter().map(|j| &*j.events).collect();
        let result = store.ingest_many(&envelopes, Utc::now()).await;
        drop(envelopes);
        match result {
            Ok(summaries) if summaries.len() == batch.len() => {
                for (job, summary) in batch.into_iter().zip(summaries) {
                    let _ = job.reply.send(Ok(summary));
                }
            }
            Ok(_) => {
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Database(sqlx::Error::Protocol(
                            "the store answered a different number of envelopes".into(),
                        ))));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, envelopes = batch.len(), "storing an ingest batch failed");
                let text = e.to_string();
                let mut first = Some(e);
                for job in batch {
                    // The original error for one, its description for the rest: all are 5xx.
                    let err = first.take().unwrap_or_else(|| {
                        StoreError::Database(sqlx::Error::Protocol(text.clone()))
                    });
                    let _ = job.reply.send(Err(err));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::envelope::parse_envelope;
    use crate::store::sqlite::SqliteStore;

    async fn store(dir: &tempfile::TempDir) -> (Arc<dyn Store>, String) {
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = SqliteStore::connect(&url).await.expect("open");
        store.migrate().await.expect("migrate");
        (Arc::new(store), url)
    }

    fn events(id: &str) -> Arc<[IncomingEvent]> {
        let body = format!(
            r#"{{"events":[{{"id":"{id}","action":"push","target":{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"nons/web","digest":"sha256:1","tag":"1"}}}}]}}"#
        );
        parse_envelope(body.as_bytes()).expect("envelope").into()
    }

    async fn stored(store: &Arc<dyn Store>) -> Vec<String> {
        store
            .list_events(500, None)
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|e| e.registry_id)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_envelopes_are_committed_before_each_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = store(&dir).await;
        let batcher = Arc::new(IngestBatcher::start(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let (batcher, store) = (batcher.clone(), store.clone());
            tasks.spawn(async move {
                let id = format!("ev-{i}");
                let summary = batcher.ingest(events(&id)).await.expect("ingest");
                // Read through the other pool: the answer came after the commit.
                assert!(stored(&store).await.contains(&id), "{id} not committed");
                summary
            });
        }
        let mut skipped = 0;
        while let Some(summary) = tasks.join_next().await {
            skipped += summary.expect("task").skipped;
        }
        assert_eq!(skipped, 100, "each request gets its own envelope's summary");
        assert_eq!(stored(&store).await.len(), 100);
        assert!(
            batcher.batches() < 100,
            "concurrent envelopes share commits ({} batches)",
            batcher.batches()
        );
        // The same event again is a duplicate, as without batching.
        let again = batcher.ingest(events("ev-1")).await.expect("ingest");
        assert_eq!(again.duplicates, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_fails_every_request_in_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, url) = store(&dir).await;
        // Every insert of an event now fails, as a full disk would.
        let poison = sqlx::SqlitePool::connect(&url).await.expect("connect");
        sqlx::query(
            "CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        )
        .execute(&poison)
        .await
        .expect("trigger");
        let batcher = Arc::new(IngestBatcher::start(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let batcher = batcher.clone();
            tasks.spawn(async move { batcher.ingest(events(&format!("ev-{i}"))).await });
        }
        while let Some(result) = tasks.join_next().await {
            let err = result.expect("task").expect_err("must fail");
            assert!(err.to_string().contains("disk full"), "{err}");
            // The API maps a database error to 500, so the registry retries.
            let status =
                axum::response::IntoResponse::into_response(crate::error::AppError::from(err))
                    .status();
            assert_eq!(status, 500);
        }
        assert!(batcher.batches() < 50);
        sqlx::query("DROP TRIGGER fail")
            .execute(&poison)
            .await
            .expect("drop");
        assert!(stored(&store).await.is_empty());
    }
}
