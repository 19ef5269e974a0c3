//! Retention, written once for both databases: finished deliveries past their time or
//! beyond their webhook's newest `keep_per_webhook`, then the events nothing refers to, a
//! bounded batch per call. What goes is found on a reader, walking indexes only as far as
//! needed, so a sweep never reads the whole history; the write transaction deletes those
//! rows by id and checks again that each is finished.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{json_ids, sql, Backend, SqlRow, Tx};
use crate::store::{to_ms, Retention, StoreResult};

/// Ids grow with time, so what is older than the cutoff lies below the first row written
/// since: the walk in id order stops there.
const OLD_DELIVERIES: &str = "SELECT id FROM deliveries \
     WHERE id < COALESCE((SELECT id FROM deliveries WHERE created_at >= $1 ORDER BY id LIMIT 1), \
                         9223372036854775807) \
       AND created_at < $1 AND state IN ('succeeded', 'failed') \
     ORDER BY id LIMIT $2";

/// A webhook's finished deliveries older than its newest `$2`, found from its
/// `(webhook_id, id)` index: `$2` entries are read to find where they start.
const BEYOND_KEPT: &str = "SELECT id FROM deliveries \
     WHERE webhook_id = $1 AND state IN ('succeeded', 'failed') \
       AND id <= (SELECT id FROM deliveries WHERE webhook_id = $1 \
                  ORDER BY id DESC LIMIT 1 OFFSET $2) \
     ORDER BY id LIMIT $3";

const UNUSED_EVENTS: &str = "DELETE FROM events WHERE id IN (SELECT e.id FROM events e \
     WHERE e.id < COALESCE((SELECT id FROM events WHERE received_at >= $1 ORDER BY id LIMIT 1), \
                           9223372036854775807) \
       AND e.received_at < $1 \
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
     ORDER BY e.id LIMIT $2)";

#[async_trait]
impl<B: Backend> Retention for B {
    async fn prune(
        &self,
        before: DateTime<Utc>,
        keep_per_webhook: i64,
        batch: i64,
    ) -> StoreResult<u64> {
        prune(self, before, keep_per_webhook, batch).await
    }
}

async fn prune<B: Backend>(
    store: &B,
    before: DateTime<Utc>,
    keep_per_webhook: i64,
    batch: i64,
) -> StoreResult<u64> {
    let before = to_ms(before);
    let ids =
        |rows: Vec<B::Row>| -> StoreResult<Vec<i64>> { rows.iter().map(|r| r.int("id")).collect() };
    let mut doomed = ids(sql(OLD_DELIVERIES)
        .bind(before)
        .bind(batch)
        .all(&mut store.reader())
        .await?)?;
    let webhooks = ids(sql("SELECT id FROM webhooks ORDER BY id")
        .all(&mut store.reader())
        .await?)?;
    for webhook_id in webhooks {
        let room = batch - doomed.len() as i64;
        if room <= 0 {
            break;
        }
        doomed.extend(ids(sql(BEYOND_KEPT)
            .bind(webhook_id)
            .bind(keep_per_webhook)
            .bind(room)
            .all(&mut store.reader())
            .await?)?);
    }
    doomed.sort_unstable();
    doomed.dedup();
    let mut tx = store.begin().await?;
    // Checked again under the write: only finished deliveries ever go (their attempts with
    // them, by the foreign key).
    let deleted = sql(format!(
        "DELETE FROM deliveries WHERE id {} AND state IN ('succeeded', 'failed')",
        B::IN_JSON_IDS
    ))
    .bind(json_ids(&doomed))
    .exec(&mut tx)
    .await?;
    sql(UNUSED_EVENTS)
        .bind(before)
        .bind(batch)
        .exec(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(deleted)
}
