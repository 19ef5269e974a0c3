//! Group commit for PostgreSQL's hot writes: envelopes and delivery results.
//!
//! Written one by one, each envelope and each result was its own transaction: several round
//! trips, a `NOTIFY` (which takes a global lock at commit) and a WAL flush apiece, so ingest
//! and delivery queued behind one another at about a thousand writes a second. Here one task
//! takes every write queued during the previous commit and stores them in one transaction
//! of a few multi-row statements: one insert for all the batch's events, one for all their
//! deliveries, one update and one insert for all its results, and one `NOTIFY`.
//!
//! Durability is unchanged: a caller is answered only after the transaction holding its job
//! has committed. A job that fails the whole statement (a constraint, say) makes the batch
//! roll back and each of its jobs run again in a transaction of its own, so only that one
//! fails. A lost claim fails no statement: its result is simply not written, and its caller
//! told so. Nothing waits to fill a batch: a lone job is written at once.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::WAKEUP_CHANNEL;
use crate::domain::delivery::{
    decide, AttemptRecord, BornClaimed, Candidate, Claim, HandOff, IngestSummary,
    BORN_CLAIMED_TOKEN,
};
use crate::domain::events::{Disposition, IncomingEvent, TagUpdate};
use crate::store::sql::control::CANDIDATE_COLUMNS;
use crate::store::writer::{Busy, MAX_BATCH};
use crate::store::{lease_lost, to_ms, StoreError, StoreResult};

/// A write that may share its transaction with others.
pub(super) enum Job {
    Ingest {
        events: Vec<IncomingEvent>,
        now: DateTime<Utc>,
        hand_off: Option<Arc<dyn HandOff>>,
        /// This process's worker id, which born-claimed deliveries are leased to.
        worker: Option<i64>,
    },
    Attempt(Box<AttemptRecord>),
}

/// What a job wrote.
pub(super) enum Done {
    Ingested(IngestSummary),
    Recorded,
}

/// An ingest job of the batch, borrowed.
struct Envelope<'a> {
    /// Its place in the batch.
    index: usize,
    events: &'a [IncomingEvent],
    now: DateTime<Utc>,
    hand_off: Option<&'a dyn HandOff>,
    worker: Option<i64>,
}

struct Queued {
    job: Job,
    reply: oneshot::Sender<StoreResult<Done>>,
}

/// The queue into the writing task; cheap to clone. The task ends with the last handle.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Queued>,
    busy: Arc<Busy>,
}

impl GroupCommit {
    pub fn start(pool: PgPool) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let busy = Arc::new(Busy::new());
        tokio::spawn(run(pool, rx, busy.clone()));
        Self { queue, busy }
    }

    /// Writes the job; returns once its transaction has committed (or failed).
    pub async fn submit(&self, job: Job) -> StoreResult<Done> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Writer("it has stopped".into());
        self.queue
            .send(Queued { job, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// How long the current batch has been going; `None` while waiting for work.
    pub fn busy_for(&self) -> Option<Duration> {
        self.busy.busy_for()
    }
}

async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Queued>, busy: Arc<Busy>) {
    // A result for a delivery already in the batch waits for the next one, so that each
    // delivery is updated at most once per statement.
    let mut held: Option<Queued> = None;
    loop {
        busy.idle();
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        busy.start();
        let mut attempted: HashSet<i64> = HashSet::new();
        if let Job::Attempt(r) = &first.job {
            attempted.insert(r.delivery_id);
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            if let Job::Attempt(r) = &next.job {
                if !attempted.insert(r.delivery_id) {
                    held = Some(next);
                    break;
                }
            }
            batch.push(next);
        }
        let results = write(&pool, &batch).await;
        for (queued, result) in batch.into_iter().zip(results) {
            let _ = queued.reply.send(result);
        }
    }
}

/// The batch in one transaction; if that fails, each job alone, so a failure is its own.
async fn write(pool: &PgPool, batch: &[Queued]) -> Vec<StoreResult<Done>> {
    let jobs: Vec<&Job> = batch.iter().map(|q| &q.job).collect();
    match write_together(pool, &jobs).await {
        Ok(results) => results,
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(error = %e, jobs = jobs.len(), "a group commit failed; writing its jobs one by one");
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                let result = match write_together(pool, &[job]).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(missing())),
                    Err(e) => Err(e),
                };
                results.push(result);
            }
            results
        }
    }
}

fn missing() -> StoreError {
    StoreError::Writer("a job of the batch had no result".into())
}

/// One transaction for `jobs`; the outer error means nothing of it was committed.
async fn write_together(pool: &PgPool, jobs: &[&Job]) -> StoreResult<Vec<StoreResult<Done>>> {
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<StoreResult<Done>>> = jobs.iter().map(|_| None).collect();
    let envelopes: Vec<Envelope> = jobs
        .iter()
        .enumerate()
        .filter_map(|(index, job)| match job {
            Job::Ingest {
                events,
                now,
                hand_off,
                worker,
            } => Some(Envelope {
                index,
                events,
                now: *now,
                hand_off: hand_off.as_deref(),
                worker: *worker,
            }),
            Job::Attempt(_) => None,
        })
        .collect();
    let attempts: Vec<(usize, &AttemptRecord)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| match job {
            Job::Attempt(r) => Some((i, r.as_ref())),
            Job::Ingest { .. } => None,
        })
        .collect();
    let mut deliveries = 0;
    if !envelopes.is_empty() {
        let summaries = ingest(&mut tx, &envelopes).await?;
        for (envelope, summary) in envelopes.iter().zip(summaries) {
            // Born-claimed deliveries need no claimer woken.
            deliveries += summary.deliveries - summary.handed_off.len();
            results[envelope.index] = Some(Ok(Done::Ingested(summary)));
        }
    }
    if !attempts.is_empty() {
        let recorded = record_attempts(&mut tx, &attempts).await?;
        for ((i, r), written) in attempts.iter().zip(recorded) {
            results[*i] = Some(if written {
                Ok(Done::Recorded)
            } else {
                Err(match r.lease {
                    Some(_) => lease_lost(r.delivery_id),
                    None => StoreError::NotFound(format!("delivery {}", r.delivery_id)),
                })
            });
        }
    }
    if deliveries > 0 {
        // Delivered to listeners only when the transaction commits; one for the batch.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKEUP_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(missing())))
        .collect())
}

/// PostgreSQL text cannot hold NUL, which registry events and receivers' answers may
/// contain: it becomes U+FFFD rather than failing the whole write.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(text)
}

/// Per namespace name: its enabled webhooks as ingest weighs them, `None` if it does not
/// exist. Kept for one transaction.
type NamespaceCache = HashMap<String, Option<Vec<Candidate>>>;

async fn load_candidates(
    tx: &mut Transaction<'static, Postgres>,
    namespace: &str,
    cache: &mut NamespaceCache,
) -> StoreResult<()> {
    if cache.contains_key(namespace) {
        return Ok(());
    }
    let rows: Vec<(i64, bool, bool, i64, Option<String>, String)> = sqlx::query_as(&format!(
        "SELECT {CANDIDATE_COLUMNS} \
         FROM namespaces n JOIN webhooks w ON w.namespace_id = n.id \
         WHERE n.name = $1 AND w.enabled"
    ))
    .bind(namespace)
    .fetch_all(&mut **tx)
    .await?;
    let found = if rows.is_empty() {
        // No enabled webhook; ingest's reason differs for a namespace that does not exist.
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
            .bind(namespace)
            .fetch_optional(&mut **tx)
            .await?;
        exists.map(|_| Vec::new())
    } else {
        Some(
            rows.into_iter()
                .map(|(id, fifo, plain, revision, f, format)| {
                    Candidate::new(id, fifo, plain, revision, f.as_deref(), &format)
                })
                .collect(),
        )
    };
    cache.insert(namespace.to_string(), found);
    Ok(())
}

/// The envelopes' events in one insert and all their deliveries in another; a summary per
/// envelope. An event whose registry id is already stored (or appears earlier in the batch)
/// is a duplicate, as if the envelopes had been written one after another.
async fn ingest(
    tx: &mut Transaction<'static, Postgres>,
    envelopes: &[Envelope<'_>],
) -> StoreResult<Vec<IngestSummary>> {
    let mut cache = NamespaceCache::new();
    // Each event's fate is decided before it is stored, so the row says why.
    let mut decided = Vec::new();
    for Envelope { events, now, .. } in envelopes {
        for event in events.iter() {
            let candidates = match (&event.disposition, &event.namespace) {
                (Disposition::Ignore(_), _) | (_, None) => None,
                (_, Some(ns)) => {
                    load_candidates(tx, ns.as_str(), &mut cache).await?;
                    cache.get(ns.as_str()).and_then(|c| c.as_deref())
                }
            };
            let (status, reason, webhooks) = decide(event, candidates);
            decided.push((event, to_ms(*now), status, reason, webhooks));
        }
    }
    let mut columns = EventColumns::default();
    for (event, now, status, reason, _) in &decided {
        columns.push(event, *now, status, reason);
    }
    // Events without a registry id are always new (and never delivered); the others are
    // matched back by their id.
    let stored: Vec<(i64, Option<String>)> = sqlx::query_as(
        "INSERT INTO events (registry_id, action, repository, namespace, tag, digest, \
         media_type, actor, status, reason, body, received_at, source, occurred_at, \
         facts_state, synthesized) \
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
           $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[], \
           $13::TEXT[], $14::BIGINT[], $15::TEXT[], $16::TEXT[]) \
         ON CONFLICT (registry_id) DO NOTHING RETURNING id, registry_id",
    )
    .bind(columns.registry_id)
    .bind(columns.action)
    .bind(columns.repository)
    .bind(columns.namespace)
    .bind(columns.tag)
    .bind(columns.digest)
    .bind(columns.media_type)
    .bind(columns.actor)
    .bind(columns.status)
    .bind(columns.reason)
    .bind(columns.body)
    .bind(columns.received_at)
    .bind(columns.source)
    .bind(columns.occurred_at)
    .bind(columns.facts_state)
    .bind(columns.synthesized)
    .fetch_all(&mut **tx)
    .await?;
    let mut new_ids: HashMap<String, i64> = stored
        .into_iter()
        .filter_map(|(id, registry_id)| registry_id.map(|r| (r, id)))
        .collect();
    let mut summaries = Vec::with_capacity(envelopes.len());
    let (mut webhook_ids, mut event_ids, mut times, mut fifo) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut leases, mut claimed_by) = (Vec::new(), Vec::new());
    // Where each born-claimed delivery (by event and webhook) belongs: its envelope, its
    // event's index there and its webhook's revision.
    let mut born: HashMap<(i64, i64), (usize, usize, i64)> = HashMap::new();
    let mut decided = decided.into_iter();
    let mut tag_updates = Vec::new();
    for (index, envelope) in envelopes.iter().enumerate() {
        let events = envelope.events;
        let lease_until = envelope.hand_off.map(|h| to_ms(h.lease_until()));
        let mut summary = IngestSummary::default();
        for (position, (event, now, status, reason, webhooks)) in
            decided.by_ref().take(events.len()).enumerate()
        {
            let event_id = match event.registry_id.as_deref() {
                // The first of its id in the batch takes the stored row; later ones are
                // duplicates, like those already stored.
                // Matched as stored: with NUL replaced.
                Some(registry_id) => match new_ids.remove(text(registry_id).as_ref()) {
                    Some(id) => id,
                    None => {
                        summary.duplicates += 1;
                        continue;
                    }
                },
                None => {
                    summary.count(status, reason.as_deref());
                    continue;
                }
            };
            summary.count(status, reason.as_deref());
            if let Some(update) = event.tag_update() {
                tag_updates.push((event.source_name(), update, now));
            }
            summary.deliveries += webhooks.len();
            for to in webhooks {
                let lease = match (envelope.hand_off, lease_until) {
                    (Some(h), Some(until)) if to.may_hand_off && h.take(to.webhook_id) => {
                        born.insert((event_id, to.webhook_id), (index, position, to.revision));
                        Some(until)
                    }
                    _ => None,
                };
                webhook_ids.push(to.webhook_id);
                event_ids.push(event_id);
                times.push(now);
                fifo.push(to.fifo);
                claimed_by.push(lease.and(envelope.worker));
                leases.push(lease);
            }
        }
        summaries.push(summary);
    }
    if !webhook_ids.is_empty() {
        // In order, so that delivery ids follow ingest order (fifo webhooks rely on it).
        // Born-claimed ones are leased as a claim would lease them.
        let leased: Vec<(i64, i64, i64)> = sqlx::query_as(
            "WITH made AS ( \
               INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
                 created_at, updated_at, fifo, locked_until, lease_token, claimed_by) \
               SELECT w, e, 'pending', t, t, t, f, l, \
                 CASE WHEN l IS NULL THEN 0 ELSE $7 END, c \
               FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BOOLEAN[], \
                 $5::BIGINT[], $6::BIGINT[]) AS u(w, e, t, f, l, c) \
               RETURNING id, event_id, webhook_id, locked_until) \
             SELECT id, event_id, webhook_id FROM made WHERE locked_until IS NOT NULL",
        )
        .bind(webhook_ids)
        .bind(event_ids)
        .bind(times)
        .bind(fifo)
        .bind(leases)
        .bind(claimed_by)
        .bind(BORN_CLAIMED_TOKEN)
        .fetch_all(&mut **tx)
        .await?;
        for (delivery_id, event_id, webhook_id) in leased {
            if let Some(&(index, event, revision)) = born.get(&(event_id, webhook_id)) {
                summaries[index].handed_off.push(BornClaimed {
                    claim: Claim {
                        delivery_id,
                        webhook_id,
                        token: BORN_CLAIMED_TOKEN,
                        rate_limit: None,
                        fifo: false,
                    },
                    event,
                    revision,
                });
            }
        }
    }
    // Only tagged manifest pushes and deletes of readable registries: rare, and in order.
    for (source, update, now) in tag_updates {
        update_tag(tx, source, &update, now).await?;
    }
    Ok(summaries)
}

/// Keeps the source's tag map as the event says (see `IncomingEvent::tag_update`).
async fn update_tag(
    tx: &mut Transaction<'static, Postgres>,
    source: &str,
    update: &TagUpdate<'_>,
    now: i64,
) -> StoreResult<()> {
    let query = match *update {
        TagUpdate::Set {
            repository,
            tag,
            digest,
        } => sqlx::query(
            "INSERT INTO registry_tags (source, repository, tag, digest, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, repository, tag) \
             DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(repository)
        .bind(tag)
        .bind(digest)
        .bind(now),
        TagUpdate::Remove { repository, tag } => sqlx::query(
            "DELETE FROM registry_tags WHERE source = $1 AND repository = $2 AND tag = $3",
        )
        .bind(source)
        .bind(repository)
        .bind(tag),
        TagUpdate::RemoveDigest { repository, digest } => sqlx::query(
            "DELETE FROM registry_tags WHERE source = $1 AND repository = $2 AND digest = $3",
        )
        .bind(source)
        .bind(repository)
        .bind(digest),
    };
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The events table's columns as arrays, for one multi-row insert.
/// Borrowed from the events: a body is copied only to replace a NUL.
#[derive(Default)]
struct EventColumns<'a> {
    registry_id: Vec<Option<Cow<'a, str>>>,
    action: Vec<Option<Cow<'a, str>>>,
    repository: Vec<Option<Cow<'a, str>>>,
    namespace: Vec<Option<&'a str>>,
    tag: Vec<Option<Cow<'a, str>>>,
    digest: Vec<Option<Cow<'a, str>>>,
    media_type: Vec<Option<Cow<'a, str>>>,
    actor: Vec<Option<Cow<'a, str>>>,
    status: Vec<&'static str>,
    reason: Vec<Option<Cow<'a, str>>>,
    body: Vec<Cow<'a, str>>,
    received_at: Vec<i64>,
    source: Vec<Option<Cow<'a, str>>>,
    occurred_at: Vec<Option<i64>>,
    facts_state: Vec<Option<&'static str>>,
    synthesized: Vec<Option<Cow<'a, str>>>,
}

impl<'a> EventColumns<'a> {
    fn push(
        &mut self,
        e: &'a IncomingEvent,
        now: i64,
        status: &'static str,
        reason: &'a Option<String>,
    ) {
        self.registry_id.push(opt_text(&e.registry_id));
        self.action.push(opt_text(&e.action));
        self.repository.push(opt_text(&e.repository));
        self.namespace
            .push(e.namespace.as_ref().map(|n| n.as_str()));
        self.tag.push(opt_text(&e.tag));
        self.digest.push(opt_text(&e.digest));
        self.media_type.push(opt_text(&e.media_type));
        self.actor.push(opt_text(&e.actor));
        self.status.push(status);
        self.reason.push(opt_text(reason));
        self.body.push(text(&e.body));
        self.received_at.push(now);
        self.source.push(opt_text(&e.source));
        self.occurred_at.push(e.occurred_at.map(to_ms));
        self.facts_state
            .push(e.facts_pending().then_some("pending"));
        self.synthesized.push(opt_text(&e.synthesized));
    }
}

/// Every result of the batch: the deliveries' next states in one update, their attempts in
/// one insert. Says per record whether it was written: a worker's result counts only
/// under its current claim, and a manual attempt (no lease) leaves a worker's lease alone.
async fn record_attempts(
    tx: &mut Transaction<'static, Postgres>,
    attempts: &[(usize, &AttemptRecord)],
) -> StoreResult<Vec<bool>> {
    let at = to_ms(Utc::now());
    let mut ids = Vec::with_capacity(attempts.len());
    let (mut states, mut nexts, mut leases) = (Vec::new(), Vec::new(), Vec::new());
    let (mut statuses, mut errors) = (Vec::new(), Vec::new());
    let (mut methods, mut urls, mut headers, mut bodies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (_, r) in attempts {
        let (state, next) = r.outcome.next_state();
        ids.push(r.delivery_id);
        states.push(state.as_str());
        nexts.push(next.map(to_ms));
        leases.push(r.lease);
        statuses.push(r.status.map(i64::from));
        errors.push(opt_text(&r.error));
        methods.push(text(&r.request.method));
        urls.push(text(&r.request.url));
        headers.push(serde_json::to_string(&r.request.headers).unwrap_or_else(|_| "[]".into()));
        bodies.push((!r.body_is_event).then(|| text(&r.request.body)));
    }
    let updated: Vec<i64> = sqlx::query_scalar(
        "UPDATE deliveries d SET state = u.state, attempts = d.attempts + 1, \
         next_attempt_at = u.next, \
         locked_until = CASE WHEN u.lease IS NULL THEN d.locked_until ELSE NULL END, \
         last_status = u.status, last_error = u.error, request_method = u.method, \
         request_url = u.url, request_headers = u.headers, request_body = u.body, \
         updated_at = $11 \
         FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], \
           $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[]) \
           AS u(id, state, next, lease, status, error, method, url, headers, body) \
         WHERE d.id = u.id AND (u.lease IS NULL OR d.lease_token = u.lease) \
         RETURNING d.id",
    )
    .bind(&ids)
    .bind(states)
    .bind(nexts)
    .bind(leases)
    .bind(statuses)
    .bind(errors)
    .bind(methods)
    .bind(urls)
    .bind(headers)
    .bind(bodies)
    .bind(at)
    .fetch_all(&mut **tx)
    .await?;
    let updated: HashSet<i64> = updated.into_iter().collect();
    let written: Vec<bool> = ids.iter().map(|id| updated.contains(id)).collect();
    let mut rows = AttemptColumns::default();
    for ((_, r), ok) in attempts.iter().zip(&written) {
        if *ok {
            rows.push(r);
        }
    }
    if !rows.delivery_id.is_empty() {
        sqlx::query(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, \
             response_headers, response_body, truncated, manual) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], \
               $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::BOOLEAN[], $9::BOOLEAN[])",
        )
        .bind(rows.delivery_id)
        .bind(rows.started_at)
        .bind(rows.duration_ms)
        .bind(rows.status)
        .bind(rows.error)
        .bind(rows.response_headers)
        .bind(rows.response_body)
        .bind(rows.truncated)
        .bind(rows.manual)
        .execute(&mut **tx)
        .await?;
    }
    Ok(written)
}

/// The attempts table's columns as arrays, for one multi-row insert.
#[derive(Default)]
struct AttemptColumns<'a> {
    delivery_id: Vec<i64>,
    started_at: Vec<i64>,
    duration_ms: Vec<i64>,
    status: Vec<Option<i64>>,
    error: Vec<Option<Cow<'a, str>>>,
    response_headers: Vec<String>,
    response_body: Vec<Cow<'a, str>>,
    truncated: Vec<bool>,
    manual: Vec<bool>,
}

impl<'a> AttemptColumns<'a> {
    fn push(&mut self, r: &'a AttemptRecord) {
        self.delivery_id.push(r.delivery_id);
        self.started_at.push(to_ms(r.started_at));
        self.duration_ms.push(r.duration_ms);
        self.status.push(r.status.map(i64::from));
        self.error.push(opt_text(&r.error));
        self.response_headers
            .push(serde_json::to_string(&r.response_headers).unwrap_or_else(|_| "[]".into()));
        self.response_body.push(text(&r.response_body));
        self.truncated.push(r.response_truncated);
        self.manual.push(r.manual);
    }
}
