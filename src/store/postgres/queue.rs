//! PostgreSQL's delivery queue: ingest, claims with `SKIP LOCKED`, results and pruning.

use std::borrow::Cow;

use super::{PgStore, WAKEUP_CHANNEL};
use crate::registry::envelope::{Disposition, IncomingEvent};
use crate::store::{
    decide, lease_lost, one_per_webhook_window, to_ms, AttemptRecord, Candidate, Claim, ClaimScope,
    DeliveryQueue, IngestSummary, StoreError, StoreResult,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::LazyLock;

use crate::domain::control::RateLimit;
use crate::store::sql::control::{claim_gate, TAKE_PROBE};

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

#[async_trait]
impl DeliveryQueue for PgStore {
    async fn ingest(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
    ) -> StoreResult<IngestSummary> {
        let mut summary = IngestSummary::default();
        let mut tx = self.pool.begin().await?;
        // One lookup per namespace per envelope.
        let mut cache: std::collections::HashMap<String, Option<Vec<Candidate>>> =
            std::collections::HashMap::new();
        for event in events {
            // Decide the event's fate before storing it, so the row says why.
            let candidates = match (&event.disposition, &event.namespace) {
                (Disposition::Ignore(_), _) | (_, None) => None,
                (_, Some(ns)) => {
                    if !cache.contains_key(ns.as_str()) {
                        let ns_id: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
                                .bind(ns.as_str())
                                .fetch_optional(&mut *tx)
                                .await?;
                        let found = match ns_id {
                            None => None,
                            Some(id) => {
                                let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
                                    "SELECT id, filters FROM webhooks WHERE namespace_id = $1 AND enabled",
                                )
                                .bind(id)
                                .fetch_all(&mut *tx)
                                .await?;
                                Some(
                                    rows.into_iter()
                                        .map(|(id, f)| Candidate::new(id, f.as_deref()))
                                        .collect::<Vec<_>>(),
                                )
                            }
                        };
                        cache.insert(ns.as_str().to_string(), found);
                    }
                    cache.get(ns.as_str()).and_then(|c| c.as_deref())
                }
            };
            let (status, reason, webhooks) = decide(event, candidates);
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO events (registry_id, action, repository, namespace, tag, digest, \
                 media_type, actor, status, reason, body, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (registry_id) DO NOTHING RETURNING id",
            )
            .bind(opt_text(&event.registry_id))
            .bind(opt_text(&event.action))
            .bind(opt_text(&event.repository))
            .bind(event.namespace.as_ref().map(|n| n.as_str()))
            .bind(opt_text(&event.tag))
            .bind(opt_text(&event.digest))
            .bind(opt_text(&event.media_type))
            .bind(opt_text(&event.actor))
            .bind(status)
            .bind(opt_text(&reason))
            .bind(text(&event.body))
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(event_id) = inserted else {
                summary.duplicates += 1;
                continue;
            };
            summary.count(status);
            if !webhooks.is_empty() {
                // One statement for all of the event's deliveries: a fan-out to a thousand
                // webhooks is one round trip, not a thousand.
                sqlx::query(
                    "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
                     created_at, updated_at) \
                     SELECT w, $2, 'pending', $3, $3, $3 FROM UNNEST($1::BIGINT[]) AS w",
                )
                .bind(&webhooks)
                .bind(event_id)
                .bind(to_ms(now))
                .execute(&mut *tx)
                .await?;
                summary.deliveries += webhooks.len();
            }
        }
        if summary.deliveries > 0 {
            // Delivered to listeners only when the transaction commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKEUP_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn claim_due_in(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        scope: ClaimScope<'_>,
    ) -> StoreResult<Vec<Claim>> {
        // SKIP LOCKED: claimers in other processes pass over the rows this one is taking
        // instead of waiting for them. MATERIALIZED: the LIMITed, locking subquery runs
        // exactly once; inlined into a join, the planner may run it again and claim more.
        // `webhook_id + 0`: the due index finds due rows in order, where one on webhook_id
        // would read the webhooks' whole history. The gate passes over open circuits and
        // fifo deliveries that must wait; the claim returns what the dispatcher needs of
        // the delivery controls.
        static SKIPPING: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH due AS MATERIALIZED ( \
                   SELECT id FROM deliveries \
                   WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $2 \
                     AND (locked_until IS NULL OR locked_until <= $2) \
                     AND webhook_id <> ALL($4) AND {} \
                   ORDER BY next_attempt_at, id LIMIT $3 \
                   FOR UPDATE SKIP LOCKED) \
                 UPDATE deliveries d SET locked_until = $1, lease_token = d.lease_token + 1, \
                   claimed_by = $5 \
                 FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id \
                 {CLAIM_RETURNING}",
                claim_gate("$2")
            )
        });
        static ONLY: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH due AS MATERIALIZED ( \
                   SELECT id FROM deliveries \
                   WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $2 \
                     AND (locked_until IS NULL OR locked_until <= $2) \
                     AND webhook_id + 0 = ANY($4) AND {} \
                   ORDER BY next_attempt_at, id LIMIT $3 \
                   FOR UPDATE SKIP LOCKED) \
                 UPDATE deliveries d SET locked_until = $1, lease_token = d.lease_token + 1, \
                   claimed_by = $5 \
                 FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id \
                 {CLAIM_RETURNING}",
                claim_gate("$2")
            )
        });
        // The rows of the window that are not taken stay locked only until this statement
        // commits; other claimers pass over them meanwhile.
        static ONE_PER_WEBHOOK: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH window_ AS MATERIALIZED ( \
                   SELECT id, webhook_id, next_attempt_at FROM deliveries \
                   WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $2 \
                     AND (locked_until IS NULL OR locked_until <= $2) \
                     AND webhook_id <> ALL($4) AND {} \
                   ORDER BY next_attempt_at, id LIMIT $5 \
                   FOR UPDATE SKIP LOCKED), \
                 due AS MATERIALIZED ( \
                   SELECT id FROM ( \
                     SELECT DISTINCT ON (webhook_id) id, next_attempt_at FROM window_ \
                     ORDER BY webhook_id, next_attempt_at, id) firsts \
                   ORDER BY next_attempt_at, id LIMIT $3) \
                 UPDATE deliveries d SET locked_until = $1, lease_token = d.lease_token + 1, \
                   claimed_by = $6 \
                 FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id \
                 {CLAIM_RETURNING}",
                claim_gate("$2")
            )
        });
        let (webhooks, _) = scope.webhooks();
        let query = match scope {
            ClaimScope::Skipping(_) => sqlx::query_as(SKIPPING.as_str()),
            ClaimScope::Only(_) => sqlx::query_as(ONLY.as_str()),
            ClaimScope::OnePerWebhookSkipping(_) => sqlx::query_as(ONE_PER_WEBHOOK.as_str()),
        };
        let query = query
            .bind(to_ms(lease_until))
            .bind(to_ms(now))
            .bind(limit)
            .bind(webhooks);
        // The claims name this process, so that the others give them back within seconds
        // if its heartbeat stops (`liveness`); `NULL` before it registered.
        let worker = self.worker_id.get().copied();
        let query = match scope {
            ClaimScope::OnePerWebhookSkipping(_) => {
                query.bind(one_per_webhook_window(limit)).bind(worker)
            }
            _ => query.bind(worker),
        };
        let mut rows: Vec<ClaimRow> = query.fetch_all(&self.pool).await?;
        if rows.iter().any(|row| row.5) {
            rows = self.take_probes(rows, now, lease_until).await?;
        }
        Ok(rows
            .into_iter()
            .map(|(delivery_id, webhook_id, token, rate, fifo, _)| Claim {
                delivery_id,
                webhook_id,
                token,
                rate_limit: rate.and_then(RateLimit::from_milli),
                fifo,
            })
            .collect())
    }

    async fn record_attempt(&self, r: AttemptRecord) -> StoreResult<()> {
        let (state, next) = r.outcome.next_state();
        let next = next.map(to_ms);
        let headers = serde_json::to_string(&r.request.headers).unwrap_or_else(|_| "[]".into());
        let response_headers =
            serde_json::to_string(&r.response_headers).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await?;
        // A manual attempt (no lease) leaves a worker's lease alone; a worker's attempt
        // counts only under its current claim.
        let updated = sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
             locked_until = CASE WHEN $3::BIGINT IS NULL THEN locked_until ELSE NULL END, \
             last_status = $4, last_error = $5, request_method = $6, request_url = $7, \
             request_headers = $8, request_body = $9, updated_at = $10 \
             WHERE id = $11 AND ($3::BIGINT IS NULL OR lease_token = $3)",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(r.lease)
        .bind(r.status.map(i64::from))
        .bind(opt_text(&r.error))
        .bind(text(&r.request.method))
        .bind(text(&r.request.url))
        .bind(&headers)
        .bind(if r.body_is_event {
            None
        } else {
            Some(text(&r.request.body))
        })
        .bind(to_ms(Utc::now()))
        .bind(r.delivery_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(match r.lease {
                Some(_) => lease_lost(r.delivery_id),
                None => StoreError::NotFound(format!("delivery {}", r.delivery_id)),
            });
        }
        sqlx::query(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, \
             response_headers, response_body, truncated, manual) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.delivery_id)
        .bind(to_ms(r.started_at))
        .bind(r.duration_ms)
        .bind(r.status.map(i64::from))
        .bind(opt_text(&r.error))
        .bind(&response_headers)
        .bind(text(&r.response_body))
        .bind(r.response_truncated)
        .bind(r.manual)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn prune(
        &self,
        before: DateTime<Utc>,
        keep_per_webhook: i64,
        batch: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let old = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
             WHERE created_at < $1 AND state IN ('succeeded', 'failed') ORDER BY id LIMIT $2)",
        )
        .bind(to_ms(before))
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let extra = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM ( \
               SELECT id, state, ROW_NUMBER() OVER (PARTITION BY webhook_id ORDER BY id DESC) AS n \
               FROM deliveries) ranked WHERE n > $1 AND state IN ('succeeded', 'failed') LIMIT $2)",
        )
        .bind(keep_per_webhook)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.received_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) ORDER BY e.id LIMIT $2)",
        )
        .bind(to_ms(before))
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old + extra)
    }
}

/// What a claim returns: delivery, webhook, token, the webhook's rate limit, whether it is
/// fifo, and whether its circuit was due for a probe.
type ClaimRow = (i64, i64, i64, Option<i64>, bool, bool);

const CLAIM_RETURNING: &str = "RETURNING d.id, d.webhook_id, d.lease_token, w.rate_limit_milli, \
     w.ordering = 'fifo', w.circuit_open_until IS NOT NULL";

impl PgStore {
    /// Of the claims of webhooks whose cool-down is over, keeps one per webhook as its
    /// probe, if no other process took one first (the webhook's row lock decides), and
    /// gives the others back at once, unsent: a half-open circuit sends one delivery.
    async fn take_probes(
        &self,
        mut rows: Vec<ClaimRow>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<ClaimRow>> {
        rows.sort_by_key(|row| row.0);
        let mut decided: std::collections::HashMap<i64, bool> = std::collections::HashMap::new();
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            let (delivery_id, webhook_id, token, _, _, probe) = row;
            if !probe {
                kept.push(row);
                continue;
            }
            let first = !decided.contains_key(&webhook_id);
            let won = first
                && sqlx::query(TAKE_PROBE)
                    .bind(to_ms(lease_until))
                    .bind(delivery_id)
                    .bind(webhook_id)
                    .bind(to_ms(now))
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
                    == 1;
            decided.entry(webhook_id).or_insert(won);
            if won {
                kept.push(row);
            } else {
                sqlx::query(
                    "UPDATE deliveries SET locked_until = NULL WHERE id = $1 AND lease_token = $2",
                )
                .bind(delivery_id)
                .bind(token)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(kept)
    }
}
