//! PostgreSQL's delivery queue: claims with `SKIP LOCKED` and pruning here; ingest and
//! results through the group committer (`group_commit.rs`).

use super::group_commit::{Done, Job};
use super::PgStore;
use crate::domain::delivery::{
    one_per_webhook_window, AttemptRecord, Claim, ClaimScope, HandOff, IngestSummary,
};
use crate::domain::events::IncomingEvent;
use crate::store::{to_ms, DeliveryQueue, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, LazyLock};

use crate::domain::control::RateLimit;
use crate::store::sql::control::{claim_gate, TAKE_PROBE};

#[async_trait]
impl DeliveryQueue for PgStore {
    async fn ingest_handing_off(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
        hand_off: Option<Arc<dyn HandOff>>,
    ) -> StoreResult<IngestSummary> {
        let job = Job::Ingest {
            events: events.to_vec(),
            now,
            hand_off,
            worker: self.worker_id.get().copied(),
        };
        match self.writer.submit(job).await? {
            Done::Ingested(summary) => Ok(summary),
            Done::Recorded => Err(mismatched()),
        }
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
        match self.writer.submit(Job::Attempt(Box::new(r))).await? {
            Done::Recorded => Ok(()),
            Done::Ingested(_) => Err(mismatched()),
        }
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

fn mismatched() -> StoreError {
    StoreError::Writer("the group committer answered another kind of job".into())
}
