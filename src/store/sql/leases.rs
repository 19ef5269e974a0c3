//! The parts of the delivery queue both databases do alike: keeping, giving back and
//! ending claims, and the queue's figures. Claims themselves, ingest and results are each
//! backend's own (`DeliveryQueue`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::control::FREE_ORPHANED_PROBES;
use super::rows::{self, opt_ms, stored_state, WEBHOOK_COLUMNS};
use super::{json_ids, sql, Backend, Conn, SqlRow, Tx};
use crate::domain::delivery::{DeliveryJob, EventRecord};
use crate::domain::model::{QueueStats, StoredHeader};
use crate::domain::names::HeaderName;
use crate::secrets::Sealed;
use crate::store::{from_ms, lease_lost, to_ms, Leases, StoreError, StoreResult};

#[async_trait]
impl<B: Backend> Leases for B {
    async fn load_job(&self, delivery_id: i64) -> StoreResult<DeliveryJob> {
        let row = sql(format!("{} WHERE d.id = $1", job_select::<B>()))
            .bind(delivery_id)
            .opt(&mut self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
        job(&row)
    }

    async fn load_jobs(&self, delivery_ids: &[i64]) -> StoreResult<Vec<DeliveryJob>> {
        if delivery_ids.is_empty() {
            return Ok(Vec::new());
        }
        // One query for a whole claim: a send then costs no query of its own before it goes.
        sql(format!(
            "{} WHERE d.id {} ORDER BY d.id",
            job_select::<B>(),
            B::IN_JSON_IDS
        ))
        .bind(json_ids(delivery_ids))
        .all(&mut self.reader())
        .await?
        .iter()
        .map(job)
        .collect()
    }

    async fn renew_lease(
        &self,
        delivery_id: i64,
        token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // A claim racing with this waits for the row and then sees the renewed lease, or
        // got there first and changed the token: either way one of the two wins.
        let renewed = sql(
            "UPDATE deliveries SET locked_until = $1 WHERE id = $2 AND lease_token = $3 \
             AND state IN ('pending', 'retrying')",
        )
        .bind(to_ms(lease_until))
        .bind(delivery_id)
        .bind(token)
        .exec(&mut self.writer())
        .await?;
        Ok(renewed == 1)
    }

    async fn abandon(&self, delivery_id: i64, lease: Option<i64>, reason: &str) -> StoreResult<()> {
        let ended = sql(
            "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, \
             locked_until = CASE WHEN CAST($1 AS BIGINT) IS NULL THEN locked_until ELSE NULL END, \
             last_error = $2, updated_at = $3 \
             WHERE id = $4 AND (CAST($1 AS BIGINT) IS NULL OR lease_token = $1)",
        )
        .bind(lease)
        .bind(reason)
        .bind(to_ms(Utc::now()))
        .bind(delivery_id)
        .exec(&mut self.writer())
        .await?;
        if ended == 0 && lease.is_some() {
            return Err(lease_lost(delivery_id));
        }
        Ok(())
    }

    async fn release(&self, delivery_ids: &[i64]) -> StoreResult<()> {
        if delivery_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        sql(format!(
            "UPDATE deliveries SET locked_until = NULL WHERE id {} \
             AND state IN ('pending', 'retrying')",
            B::IN_JSON_IDS
        ))
        .bind(json_ids(delivery_ids))
        .exec(&mut tx)
        .await?;
        free_orphaned_probes(&mut tx).await?;
        tx.commit().await
    }

    async fn release_all_claims(&self) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let released = sql("UPDATE deliveries SET locked_until = NULL \
             WHERE locked_until IS NOT NULL AND state IN ('pending', 'retrying')")
        .exec(&mut tx)
        .await?;
        free_orphaned_probes(&mut tx).await?;
        tx.commit().await?;
        Ok(released)
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let row = sql(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending') AS pending, \
             COUNT(*) FILTER (WHERE state = 'retrying') AS retrying, \
             MIN(next_attempt_at) FILTER (WHERE next_attempt_at <= $1) AS oldest \
             FROM deliveries WHERE state IN ('pending', 'retrying')",
        )
        .bind(to_ms(Utc::now()))
        .one(&mut self.reader())
        .await?;
        Ok(QueueStats {
            pending: row.int("pending")?,
            retrying: row.int("retrying")?,
            oldest_due_at: opt_ms(row.int_opt("oldest")?),
        })
    }
}

/// In the transaction that gave claims back: their probes may go again at once.
async fn free_orphaned_probes(tx: &mut impl Conn) -> StoreResult<()> {
    sql(FREE_ORPHANED_PROBES)
        .bind(to_ms(Utc::now()))
        .exec(tx)
        .await?;
    Ok(())
}

/// A job's query, to be completed with the deliveries' condition: the delivery, its event,
/// its webhook and the webhook's headers in one row.
fn job_select<B: Backend>() -> String {
    format!(
        "{WEBHOOK_COLUMNS}, d.id AS delivery_id, d.attempts AS delivery_attempts, \
         d.state AS delivery_state, d.next_attempt_at AS delivery_next_attempt_at, \
         (SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id AND NOT a.manual) \
           AS automatic_attempts, \
         e.action AS event_action, e.body AS event_body, e.registry_id AS event_registry_id, \
         e.repository AS event_repository, e.tag AS event_tag, e.digest AS event_digest, \
         e.media_type AS event_media_type, e.actor AS event_actor, \
         e.received_at AS event_received_at, e.source AS event_source, \
         e.occurred_at AS event_occurred_at, e.facts AS event_facts, \
         e.synthesized AS event_synthesized, {} AS headers_json \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         JOIN webhooks w ON w.id = d.webhook_id JOIN namespaces n ON n.id = w.namespace_id",
        B::HEADERS_JSON
    )
}

fn job(row: &impl SqlRow) -> StoreResult<DeliveryJob> {
    let delivery_id = row.int("delivery_id")?;
    let headers = headers_from_hex_json(&row.text("headers_json")?)?;
    let action = row.text_opt("event_action")?.unwrap_or_default();
    Ok(DeliveryJob {
        delivery_id,
        attempts_so_far: row.int("delivery_attempts")?,
        automatic_attempts: row.int("automatic_attempts")?,
        next_attempt_at: opt_ms(row.int_opt("delivery_next_attempt_at")?),
        state: stored_state(delivery_id, &row.text("delivery_state")?)?,
        webhook: Arc::new(rows::webhook(row, headers)?),
        event_action: action.clone(),
        event_body: row.text("event_body")?.into(),
        event: Arc::new(EventRecord {
            action,
            registry_id: row.text_opt("event_registry_id")?,
            repository: row.text_opt("event_repository")?,
            tag: row.text_opt("event_tag")?,
            digest: row.text_opt("event_digest")?,
            media_type: row.text_opt("event_media_type")?,
            actor: row.text_opt("event_actor")?,
            received_at: from_ms(row.int("event_received_at")?),
            source: row.text_opt("event_source")?,
            occurred_at: opt_ms(row.int_opt("event_occurred_at")?),
            facts: row
                .text_opt("event_facts")?
                .and_then(|json| serde_json::from_str(&json).ok()),
            synthesized: row.text_opt("event_synthesized")?,
        }),
    })
}

/// Headers as [`Backend::HEADERS_JSON`] gives them.
fn headers_from_hex_json(json: &str) -> StoreResult<Vec<StoredHeader>> {
    let pairs: Vec<(String, String)> = serde_json::from_str(json)
        .map_err(|e| StoreError::Crypto(format!("stored headers are unreadable: {e}")))?;
    pairs
        .into_iter()
        .map(|(name, hex)| {
            Ok(StoredHeader {
                name: HeaderName::trusted(name),
                value: Sealed(from_hex(&hex).ok_or_else(|| {
                    StoreError::Crypto("a stored header value is unreadable".into())
                })?),
            })
        })
        .collect()
}

/// Bytes from hex digits, either case; `None` if the text is not hex.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
