//! Sends asked for by a process without a dispatcher (the command line), taken by a
//! serving one.

use async_trait::async_trait;

use super::{locking, sql, Backend, SqlRow, Tx};
use crate::store::{to_ms, SendRequests, StoreResult};

#[async_trait]
impl<B: Backend> SendRequests for B {
    async fn request_send(&self, delivery_id: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sql("INSERT INTO send_requests (delivery_id, requested_at) VALUES ($1, $2)")
            .bind(delivery_id)
            .bind(to_ms(chrono::Utc::now()))
            .exec(&mut tx)
            .await?;
        tx.commit().await
    }

    async fn take_send_requests(&self, limit: i64) -> StoreResult<Vec<i64>> {
        let mut tx = self.begin().await?;
        let text = format!(
            "DELETE FROM send_requests WHERE id IN \
             (SELECT id FROM send_requests ORDER BY id LIMIT $1{}) RETURNING delivery_id",
            locking::<B>(" FOR UPDATE SKIP LOCKED")
        );
        let rows = sql(text).bind(limit).all(&mut tx).await?;
        tx.commit().await?;
        rows.iter().map(|r| r.int("delivery_id")).collect()
    }
}
