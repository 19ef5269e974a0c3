//! The webhooks' health in figures, for `/metrics`: counts, and the failing ones by id.

use async_trait::async_trait;

use super::{sql, Backend, SqlRow};
use crate::store::{from_ms, HealthFigures, StoreResult, WebhookFigures};

#[async_trait]
impl<B: Backend> HealthFigures for B {
    async fn webhook_figures(&self, failing_listed: i64) -> StoreResult<WebhookFigures> {
        let counts = sql("SELECT \
               COALESCE(SUM(CASE WHEN enabled THEN 1 ELSE 0 END), 0) AS enabled, \
               COALESCE(SUM(CASE WHEN enabled THEN 0 ELSE 1 END), 0) AS disabled, \
               COALESCE(SUM(CASE WHEN enabled AND failing_since IS NOT NULL THEN 1 ELSE 0 END), 0) \
                 AS failing, \
               COALESCE(SUM(CASE WHEN circuit_state <> 'closed' THEN 1 ELSE 0 END), 0) \
                 AS circuit_open \
             FROM webhooks")
        .one(&mut self.reader())
        .await?;
        let failing = sql(
            "SELECT w.id, n.name AS namespace, w.failing_since FROM webhooks w \
             JOIN namespaces n ON n.id = w.namespace_id \
             WHERE w.enabled AND w.failing_since IS NOT NULL \
             ORDER BY w.failing_since, w.id LIMIT $1",
        )
        .bind(failing_listed)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.int("id")?,
                r.text("namespace")?,
                from_ms(r.int("failing_since")?),
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(WebhookFigures {
            enabled: counts.int("enabled")?,
            disabled: counts.int("disabled")?,
            failing: counts.int("failing")?,
            circuit_open: counts.int("circuit_open")?,
            failing_longest: failing,
        })
    }
}
