//! Group commit for SQLite's one writer.
//!
//! Every commit is an fsync (about 0.7 ms on the benchmark machine) and SQLite has a single
//! writer, so committing each envelope and each delivery result on its own caps Herald at
//! roughly a thousand writes a second, whatever the CPU could do. The hot writes (envelopes,
//! delivery results, claims) therefore go to one thread that stores everything queued up
//! during the previous commit in a single transaction. A job that fails (a lost claim, a
//! constraint) is undone alone and the others in its transaction still commit (see `write`).
//!
//! The thread owns its own connection (rusqlite) and runs each batch synchronously, because
//! a batch is hundreds of statements: through sqlx every statement is a hop to the
//! connection's worker thread and back, and on two busy cores those hops, not SQLite, were
//! most of a batch's time.
//!
//! Durability is unchanged: a caller is answered only after the transaction holding its job
//! has committed, and when that commit fails every job in it gets the error (the registry
//! sees a 5xx and retries; a worker leaves the delivery to be claimed again). Nothing waits
//! to fill a batch: a lone job is written at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::domain::control::RateLimit;
use crate::domain::delivery::{
    decide, AttemptRecord, BornClaimed, Candidate, Claim, HandOff, IngestSummary,
    BORN_CLAIMED_TOKEN,
};
use crate::domain::events::{Disposition, IncomingEvent, TagUpdate};
use crate::store::sql::control::{claim_gate, CANDIDATE_COLUMNS, TAKE_PROBE};
use crate::store::writer::{Busy, MAX_BATCH};
use crate::store::{lease_lost, to_ms, StoreError, StoreResult};

/// The writer's page cache, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = -16_384;

/// A write that may share its transaction with others.
pub(super) enum Job {
    Ingest {
        events: Vec<IncomingEvent>,
        now: DateTime<Utc>,
        hand_off: Option<Arc<dyn HandOff>>,
    },
    Attempt(Box<AttemptRecord>),
    /// Takes those of `ids` still due and free at `now`, until `lease_until`.
    Claim {
        ids: Vec<i64>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    },
}

/// What a job wrote.
pub(super) enum Done {
    Ingested(IngestSummary),
    Recorded,
    Claimed(Vec<Claim>),
}

struct Queued {
    job: Job,
    reply: oneshot::Sender<StoreResult<Done>>,
}

/// The queue into the writing thread; cheap to clone.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Queued>,
    commits: Arc<AtomicU64>,
    busy: Arc<Busy>,
}

impl GroupCommit {
    /// Opens the writer's connection to the database file and starts its thread, which
    /// ends when every handle is gone.
    pub fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // The same settings as the sqlx pools: WAL, an fsync per commit, foreign keys.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Inserts land on random leaves of the unique index over registry ids; with a long
        // history those pages outgrow SQLite's default 2 MiB cache.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        let (queue, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let busy = Arc::new(Busy::new());
        let heartbeat = busy.clone();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || run(conn, rx, counter, &heartbeat))
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self {
            queue,
            commits,
            busy,
        })
    }

    /// Writes the job; returns once its transaction has committed (or failed).
    pub async fn submit(&self, job: Job) -> StoreResult<Done> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { job, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Transactions attempted so far: fewer than jobs when writes arrive together.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How long the thread has been writing its current batch; `None` while it waits for
    /// work. A batch normally takes milliseconds: one that lasts is a stuck writer (a lock
    /// held elsewhere, a disk that does not answer), or a thread that died mid-batch.
    pub fn busy_for(&self) -> Option<Duration> {
        self.busy.busy_for()
    }
}

fn stopped() -> StoreError {
    StoreError::Writer("it has stopped".into())
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    commits: Arc<AtomicU64>,
    busy: &Busy,
) {
    conn.set_prepared_statement_cache_capacity(32);
    loop {
        busy.idle();
        let Some(first) = rx.blocking_recv() else {
            return;
        };
        busy.start();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commits.fetch_add(1, Ordering::Relaxed);
        match write(&mut conn, &batch) {
            Ok(results) => {
                for (queued, result) in batch.into_iter().zip(results) {
                    let _ = queued.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "a group commit failed");
                let text = e.to_string();
                let mut first = Some(e);
                for queued in batch {
                    // The original error for one, its description for the rest.
                    let err = first
                        .take()
                        .unwrap_or_else(|| StoreError::Writer(format!("the batch failed: {text}")));
                    let _ = queued.reply.send(Err(err));
                }
            }
        }
    }
}

/// One transaction for the whole batch; the outer error means nothing of it was committed.
/// Jobs run back to back; only when one fails is the batch rolled back and run again with
/// a savepoint around each job, so the failure is undone alone and the others still commit.
fn write(conn: &mut Connection, batch: &[Queued]) -> StoreResult<Vec<StoreResult<Done>>> {
    match write_together(conn, batch)? {
        Some(results) => Ok(results),
        None => write_isolated(conn, batch),
    }
}

/// The whole batch without savepoints; `None` (nothing committed) when a job failed.
fn write_together(
    conn: &mut Connection,
    batch: &[Queued],
) -> StoreResult<Option<Vec<StoreResult<Done>>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cache = NamespaceCache::new();
    let mut results = Vec::with_capacity(batch.len());
    for queued in batch {
        match apply(&tx, &queued.job, &mut cache) {
            Ok(done) => results.push(Ok(done)),
            Err(_) => {
                tx.rollback()?;
                return Ok(None);
            }
        }
    }
    tx.commit()?;
    Ok(Some(results))
}

/// The batch with a savepoint around each job: a failing job is undone alone.
fn write_isolated(conn: &mut Connection, batch: &[Queued]) -> StoreResult<Vec<StoreResult<Done>>> {
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut cache = NamespaceCache::new();
    let mut results = Vec::with_capacity(batch.len());
    for queued in batch {
        let savepoint = tx.savepoint()?;
        let result = apply(&savepoint, &queued.job, &mut cache);
        if result.is_ok() {
            savepoint.commit()?;
        } else {
            savepoint.finish()?;
        }
        results.push(result);
    }
    tx.commit()?;
    Ok(results)
}

fn apply(conn: &Connection, job: &Job, cache: &mut NamespaceCache) -> StoreResult<Done> {
    match job {
        Job::Ingest {
            events,
            now,
            hand_off,
        } => ingest(conn, events, *now, hand_off.as_deref(), cache).map(Done::Ingested),
        Job::Attempt(record) => record_attempt(conn, record).map(|()| Done::Recorded),
        Job::Claim {
            ids,
            now,
            lease_until,
        } => claim(conn, ids, *now, *lease_until).map(Done::Claimed),
    }
}

/// Per namespace name: its enabled webhooks as ingest weighs them, `None` if it does not
/// exist. Kept for one transaction: nothing else writes webhooks while it is open.
type NamespaceCache = HashMap<String, Option<Vec<Candidate>>>;

/// Looks the namespace up unless this transaction already did.
fn load_candidates(
    conn: &Connection,
    namespace: &str,
    cache: &mut NamespaceCache,
) -> StoreResult<()> {
    if cache.contains_key(namespace) {
        return Ok(());
    }
    let id: Option<i64> = conn
        .prepare_cached("SELECT id FROM namespaces WHERE name = ?1")?
        .query_row([namespace], |row| row.get(0))
        .optional()?;
    let found = match id {
        None => None,
        Some(id) => {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {CANDIDATE_COLUMNS} FROM webhooks w \
                 WHERE w.namespace_id = ?1 AND w.enabled = 1"
            ))?;
            let rows = statement.query_map([id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, bool>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })?;
            let mut list = Vec::new();
            for row in rows {
                let (id, fifo, plain, revision, filters, format) = row?;
                list.push(Candidate::new(
                    id,
                    fifo,
                    plain,
                    revision,
                    filters.as_deref(),
                    &format,
                ));
            }
            Some(list)
        }
    };
    cache.insert(namespace.to_string(), found);
    Ok(())
}

/// `Store::ingest`: the events, and a pending delivery per webhook each one is for.
fn ingest(
    conn: &Connection,
    events: &[IncomingEvent],
    now: DateTime<Utc>,
    hand_off: Option<&dyn HandOff>,
    cache: &mut NamespaceCache,
) -> StoreResult<IngestSummary> {
    let mut summary = IngestSummary::default();
    let now = to_ms(now);
    let lease_until = hand_off.map(|h| to_ms(h.lease_until()));
    for (index, event) in events.iter().enumerate() {
        // Decide the event's fate before storing it, so the row says why.
        let found = match (&event.disposition, &event.namespace) {
            (Disposition::Ignore(_), _) | (_, None) => None,
            (_, Some(ns)) => {
                load_candidates(conn, ns.as_str(), cache)?;
                cache.get(ns.as_str()).and_then(|c| c.as_deref())
            }
        };
        let (status, reason, webhooks) = decide(event, found);
        let inserted: Option<i64> = conn
            .prepare_cached(
                "INSERT INTO events (registry_id, action, repository, namespace, tag, digest, \
                 media_type, actor, status, reason, body, received_at, source, occurred_at, \
                 facts_state, synthesized) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
                 ON CONFLICT (registry_id) DO NOTHING RETURNING id",
            )?
            .query_row(
                params![
                    event.registry_id,
                    event.action,
                    event.repository,
                    event.namespace.as_ref().map(|n| n.as_str()),
                    event.tag,
                    event.digest,
                    event.media_type,
                    event.actor,
                    status,
                    reason,
                    event.body,
                    now,
                    event.source,
                    event.occurred_at.map(to_ms),
                    event.facts_pending().then_some("pending"),
                    event.synthesized,
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(event_id) = inserted else {
            summary.duplicates += 1;
            continue;
        };
        summary.count(status, reason.as_deref());
        if let Some(update) = event.tag_update() {
            update_tag(conn, event.source_name(), &update, now)?;
        }
        let mut insert = conn.prepare_cached(
            "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
             created_at, updated_at, fifo) VALUES (?1, ?2, 'pending', ?3, ?3, ?3, ?4)",
        )?;
        for to in webhooks {
            summary.deliveries += 1;
            let born_claimed = match (hand_off, lease_until) {
                (Some(h), Some(until)) if to.may_hand_off && h.take(to.webhook_id) => until,
                _ => {
                    insert.execute(params![to.webhook_id, event_id, now, to.fifo])?;
                    continue;
                }
            };
            let delivery_id: i64 = conn
                .prepare_cached(
                    "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
                     created_at, updated_at, fifo, locked_until, lease_token) \
                     VALUES (?1, ?2, 'pending', ?3, ?3, ?3, 0, ?4, ?5) RETURNING id",
                )?
                .query_row(
                    params![
                        to.webhook_id,
                        event_id,
                        now,
                        born_claimed,
                        BORN_CLAIMED_TOKEN
                    ],
                    |row| row.get(0),
                )?;
            summary.handed_off.push(BornClaimed {
                claim: Claim {
                    delivery_id,
                    webhook_id: to.webhook_id,
                    token: BORN_CLAIMED_TOKEN,
                    rate_limit: None,
                    fifo: false,
                },
                event: index,
                revision: to.revision,
            });
        }
    }
    Ok(summary)
}

/// Keeps the source's tag map as the event says (see `IncomingEvent::tag_update`).
fn update_tag(
    conn: &Connection,
    source: &str,
    update: &TagUpdate<'_>,
    now: i64,
) -> StoreResult<()> {
    match *update {
        TagUpdate::Set {
            repository,
            tag,
            digest,
        } => conn
            .prepare_cached(
                "INSERT INTO registry_tags (source, repository, tag, digest, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (source, repository, tag) \
                 DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )?
            .execute(params![source, repository, tag, digest, now])?,
        TagUpdate::Remove { repository, tag } => conn
            .prepare_cached(
                "DELETE FROM registry_tags WHERE source = ?1 AND repository = ?2 AND tag = ?3",
            )?
            .execute(params![source, repository, tag])?,
        TagUpdate::RemoveDigest { repository, digest } => conn
            .prepare_cached(
                "DELETE FROM registry_tags WHERE source = ?1 AND repository = ?2 AND digest = ?3",
            )?
            .execute(params![source, repository, digest])?,
    };
    Ok(())
}

/// `Store::record_attempt`: the attempt and the delivery's next state.
fn record_attempt(conn: &Connection, r: &AttemptRecord) -> StoreResult<()> {
    let (state, next) = r.outcome.next_state();
    let next = next.map(to_ms);
    let headers = serde_json::to_string(&r.request.headers).unwrap_or_else(|_| "[]".into());
    let response_headers =
        serde_json::to_string(&r.response_headers).unwrap_or_else(|_| "[]".into());
    // A manual attempt (no lease) leaves a worker's lease alone; a worker's attempt
    // counts only under its current claim.
    let updated = conn
        .prepare_cached(
            "UPDATE deliveries SET state = ?1, attempts = attempts + 1, next_attempt_at = ?2, \
             locked_until = CASE WHEN ?3 IS NULL THEN locked_until ELSE NULL END, \
             last_status = ?4, last_error = ?5, request_method = ?6, request_url = ?7, \
             request_headers = ?8, request_body = ?9, updated_at = ?10 \
             WHERE id = ?11 AND (?3 IS NULL OR lease_token = ?3)",
        )?
        .execute(params![
            state.as_str(),
            next,
            r.lease,
            r.status.map(i64::from),
            r.error,
            r.request.method,
            r.request.url,
            headers,
            (!r.body_is_event).then_some(&r.request.body),
            to_ms(Utc::now()),
            r.delivery_id,
        ])?;
    if updated == 0 {
        return Err(match r.lease {
            Some(_) => lease_lost(r.delivery_id),
            None => StoreError::NotFound(format!("delivery {}", r.delivery_id)),
        });
    }
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, \
         response_headers, response_body, truncated, manual) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.delivery_id,
        to_ms(r.started_at),
        r.duration_ms,
        r.status.map(i64::from),
        r.error,
        response_headers,
        r.response_body,
        r.response_truncated,
        r.manual,
    ])?;
    Ok(())
}

/// The write half of `Store::claim_due_skipping`: leases those of `ids` still due and free,
/// and still let through by their webhook's circuit and ordering. A delivery of a webhook
/// whose cool-down is over is its probe: the circuit turns half-open until the claim ends,
/// so the gate passes over the webhook's others (in this batch too).
fn claim(
    conn: &Connection,
    ids: &[i64],
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Vec<Claim>> {
    static CLAIM: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE deliveries SET locked_until = ?1, lease_token = lease_token + 1 \
             WHERE id = ?2 AND state IN ('pending', 'retrying') AND next_attempt_at <= ?3 \
               AND (locked_until IS NULL OR locked_until <= ?3) AND {} \
             RETURNING webhook_id, lease_token",
            claim_gate("?3")
        )
    });
    let mut statement = conn.prepare_cached(&CLAIM)?;
    let mut controls = conn.prepare_cached(
        "SELECT rate_limit_milli, ordering = 'fifo', circuit_open_until IS NOT NULL \
         FROM webhooks WHERE id = ?1",
    )?;
    // Per webhook: its rate limit, whether it is fifo and whether its circuit is not closed.
    let mut known: HashMap<i64, (Option<RateLimit>, bool, bool)> = HashMap::new();
    let mut claims = Vec::with_capacity(ids.len());
    for &delivery_id in ids {
        let taken: Option<(i64, i64)> = statement
            .query_row(
                params![to_ms(lease_until), delivery_id, to_ms(now)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((webhook_id, token)) = taken else {
            continue;
        };
        let (rate_limit, fifo, probe) = match known.get(&webhook_id) {
            Some(found) => *found,
            None => {
                let found = controls.query_row([webhook_id], |row| {
                    Ok((
                        row.get::<_, Option<i64>>(0)?
                            .and_then(RateLimit::from_milli),
                        row.get::<_, bool>(1)?,
                        row.get::<_, bool>(2)?,
                    ))
                })?;
                known.insert(webhook_id, found);
                found
            }
        };
        if probe {
            conn.prepare_cached(TAKE_PROBE)?.execute(params![
                to_ms(lease_until),
                delivery_id,
                webhook_id,
                to_ms(now)
            ])?;
        }
        claims.push(Claim {
            delivery_id,
            webhook_id,
            token,
            rate_limit,
            fifo,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use crate::domain::events::IncomingEvent;
    use crate::registry::envelope::parse_envelope;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{DeliveryQueue, Engine, History};
    use std::sync::Arc;

    async fn store(dir: &tempfile::TempDir) -> (Arc<SqliteStore>, String) {
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = SqliteStore::connect(&url).await.expect("open");
        store.migrate().await.expect("migrate");
        (Arc::new(store), url)
    }

    fn events(id: &str) -> Vec<IncomingEvent> {
        let body = format!(
            r#"{{"events":[{{"id":"{id}","action":"push","target":{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"nons/web","digest":"sha256:1","tag":"1"}}}}]}}"#
        );
        parse_envelope(body.as_bytes()).expect("envelope")
    }

    async fn stored(store: &SqliteStore) -> Vec<String> {
        let page = store.list_events(500, None).await.expect("list");
        page.items
            .into_iter()
            .filter_map(|e| e.registry_id)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_envelopes_share_commits_and_are_committed_before_each_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = store(&dir).await;
        let before = store.group_commits();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let store = store.clone();
            tasks.spawn(async move {
                let id = format!("ev-{i}");
                let summary = store.ingest(&events(&id), chrono::Utc::now()).await;
                // Read through the other pool: the answer came after the commit.
                assert!(stored(&store).await.contains(&id), "{id} not committed");
                summary.expect("ingest")
            });
        }
        let mut skipped = 0;
        while let Some(summary) = tasks.join_next().await {
            skipped += summary.expect("task").skipped;
        }
        assert_eq!(skipped, 100, "each request gets its own envelope's summary");
        assert_eq!(stored(&store).await.len(), 100);
        let commits = store.group_commits() - before;
        assert!(
            commits < 100,
            "concurrent envelopes share commits ({commits})"
        );
        let again = store.ingest(&events("ev-1"), chrono::Utc::now()).await;
        assert_eq!(again.expect("ingest").duplicates, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_fails_alone_and_its_batch_still_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, url) = store(&dir).await;
        // One event's insert fails, as a constraint or a full disk would.
        let other = sqlx::SqlitePool::connect(&url).await.expect("connect");
        sqlx::query(
            "CREATE TRIGGER fail BEFORE INSERT ON events WHEN NEW.registry_id = 'ev-13' \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        )
        .execute(&other)
        .await
        .expect("trigger");
        let before = store.group_commits();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let store = store.clone();
            tasks.spawn(async move {
                let id = format!("ev-{i}");
                (
                    id.clone(),
                    store.ingest(&events(&id), chrono::Utc::now()).await,
                )
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (id, result) = done.expect("task");
            if id == "ev-13" {
                let err = result.expect_err("must fail");
                assert!(err.to_string().contains("disk full"), "{err}");
                // A database error is a 500, so the registry sends the envelope again.
                let response =
                    axum::response::IntoResponse::into_response(crate::error::AppError::from(err));
                assert_eq!(response.status(), 500);
            } else {
                result.unwrap_or_else(|e| panic!("{id}: {e}"));
            }
        }
        assert!(store.group_commits() - before < 50);
        let ids = stored(&store).await;
        assert_eq!(ids.len(), 49);
        assert!(!ids.contains(&"ev-13".to_string()));
    }
}
