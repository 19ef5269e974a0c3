//! What happened: stored events, the audit trail, deliveries with their attempts, and the
//! figures the UI shows of them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rows::{self, headers_from_json, paginate, DELIVERY_SELECT};
use super::{sql, Backend, Conn, SqlRow, Tx};
use crate::domain::delivery::{
    Attempt, DeliveryDetail, DeliveryState, DeliverySummary, StoredRequest,
};
use crate::domain::model::{
    Activity, ActivityFilter, Audit, EventDelivery, HourStats, Page, SourceActivity, StoredEvent,
    Visibility, WebhookStatus,
};
use crate::domain::names::NamespaceName;
use crate::store::{
    from_ms, to_ms, webhook_status_sql, History, Hooks, StoreError, StoreResult,
    STATUS_NEEDING_ATTENTION, STATUS_OF_NAMESPACE,
};

#[async_trait]
impl<B: Backend> History for B {
    async fn list_events(&self, limit: i64, before: Option<i64>) -> StoreResult<Page<StoredEvent>> {
        let items = sql(
            "SELECT id, registry_id, action, repository, namespace, tag, digest, actor, source, \
             status, reason, received_at, occurred_at, facts, facts_state, facts_error, \
             synthesized FROM events WHERE id < $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(StoredEvent {
                id: r.int("id")?,
                registry_id: r.text_opt("registry_id")?,
                action: r.text_opt("action")?,
                repository: r.text_opt("repository")?,
                namespace: r.text_opt("namespace")?,
                tag: r.text_opt("tag")?,
                digest: r.text_opt("digest")?,
                actor: r.text_opt("actor")?,
                source: r.text_opt("source")?,
                status: r.text("status")?,
                reason: r.text_opt("reason")?,
                received_at: from_ms(r.int("received_at")?),
                occurred_at: r.int_opt("occurred_at")?.map(from_ms),
                facts: r
                    .text_opt("facts")?
                    .and_then(|json| serde_json::from_str(&json).ok()),
                facts_state: r.text_opt("facts_state")?,
                facts_error: r.text_opt("facts_error")?,
                synthesized: r.text_opt("synthesized")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, limit, |e| e.id))
    }

    async fn deliveries_of_events(
        &self,
        first: i64,
        last: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventDelivery>> {
        // A range of event ids, read through the deliveries_by_event index.
        sql(
            "SELECT d.event_id, d.id, d.webhook_id, d.state, w.name AS webhook, \
             n.name AS namespace FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             JOIN namespaces n ON n.id = w.namespace_id \
             WHERE d.event_id >= $1 AND d.event_id <= $2 \
             ORDER BY d.event_id, d.id LIMIT $3",
        )
        .bind(first)
        .bind(last)
        .bind(limit)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(EventDelivery {
                event_id: r.int("event_id")?,
                delivery_id: r.int("id")?,
                webhook_id: r.int("webhook_id")?,
                webhook: r.text("webhook")?,
                namespace: r.text("namespace")?,
                state: r.text("state")?,
            })
        })
        .collect()
    }

    async fn last_events_by_source(&self) -> StoreResult<Vec<SourceActivity>> {
        // One lookup in events_by_source per source: never a read of every event.
        sql("SELECT 0 AS position, CAST(NULL AS TEXT) AS source, \
             (SELECT MAX(received_at) FROM events WHERE source IS NULL) AS last_event_at \
             UNION ALL SELECT 1, s.name, \
             (SELECT MAX(e.received_at) FROM events e WHERE e.source = s.name) FROM sources s \
             ORDER BY position, source")
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(SourceActivity {
                source: r.text_opt("source")?,
                last_event_at: r.int_opt("last_event_at")?.map(from_ms),
            })
        })
        .collect()
    }

    async fn record_activity(
        &self,
        namespace: &NamespaceName,
        webhook_id: Option<i64>,
        audit: &Audit,
    ) -> StoreResult<()> {
        let hook = match webhook_id {
            Some(id) => Some(self.get_webhook(namespace, id).await?),
            None => None,
        };
        let host = hook.as_ref().map(|h| h.url.host()).unwrap_or_default();
        let target = hook
            .as_ref()
            .map(|h| (h.id, h.name.as_str(), host.as_str()));
        let mut tx = self.begin().await?;
        let ns = NsContext::load(&mut tx, namespace).await?;
        ns.record(&mut tx, audit, target).await?;
        tx.commit().await
    }

    async fn list_activities_by(
        &self,
        visibility: &Visibility,
        filter: ActivityFilter<'_>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<Activity>> {
        let items = sql(
            "SELECT id, actor, action, team, namespace, webhook_id, webhook_name, webhook_host, \
             detail, created_at FROM activities \
             WHERE id < $1 AND (CAST($2 AS TEXT) IS NULL OR namespace = $2) \
               AND (CAST($3 AS BIGINT) IS NULL OR team_id IN \
                    (SELECT team_id FROM team_members WHERE user_id = $3)) \
               AND (CAST($5 AS TEXT) IS NULL OR actor = $5) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.namespace)
        .bind(visibility.member())
        .bind(limit + 1)
        .bind(filter.actor)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(Activity {
                id: r.int("id")?,
                actor: r.text("actor")?,
                action: r.text("action")?,
                team: r.text_opt("team")?,
                namespace: r.text_opt("namespace")?,
                webhook_id: r.int_opt("webhook_id")?,
                webhook_name: r.text_opt("webhook_name")?,
                webhook_host: r.text_opt("webhook_host")?,
                detail: r.text_opt("detail")?,
                created_at: from_ms(r.int("created_at")?),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, limit, |a| a.id))
    }

    async fn list_deliveries_in(
        &self,
        webhook_id: i64,
        state: Option<DeliveryState>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<DeliverySummary>> {
        let items = sql(format!(
            "{DELIVERY_SELECT} WHERE d.webhook_id = $1 AND d.id < $2 \
             AND (CAST($4 AS TEXT) IS NULL OR d.state = $4) ORDER BY d.id DESC LIMIT $3"
        ))
        .bind(webhook_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .bind(state.map(DeliveryState::as_str))
        .all(&mut self.reader())
        .await?
        .iter()
        .map(rows::delivery)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, limit, |d| d.id))
    }

    async fn get_delivery(&self, webhook_id: i64, delivery_id: i64) -> StoreResult<DeliveryDetail> {
        let row = sql(format!(
            "{DELIVERY_SELECT} WHERE d.webhook_id = $1 AND d.id = $2"
        ))
        .bind(webhook_id)
        .bind(delivery_id)
        .opt(&mut self.reader())
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("delivery {delivery_id} of webhook {webhook_id}"))
        })?;
        let summary = rows::delivery(&row)?;
        let request = match row.text_opt("request_method")? {
            None => None,
            Some(method) => Some(StoredRequest {
                method,
                url: row.text_opt("request_url")?.unwrap_or_default(),
                headers: headers_from_json(row.text_opt("request_headers")?),
                body: match row.text_opt("request_body")? {
                    Some(body) => body,
                    None => row.text("event_body")?,
                },
            }),
        };
        let attempts = sql(
            "SELECT id, started_at, duration_ms, status, error, response_headers, response_body, \
             truncated, manual FROM attempts WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(delivery_id)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(Attempt {
                id: r.int("id")?,
                started_at: from_ms(r.int("started_at")?),
                duration_ms: r.int("duration_ms")?,
                status: r.int_opt("status")?,
                error: r.text_opt("error")?,
                response_headers: headers_from_json(r.text_opt("response_headers")?),
                response_body: r.text("response_body")?,
                response_truncated: r.flag("truncated")?,
                manual: r.flag("manual")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(DeliveryDetail {
            summary,
            request,
            attempts,
        })
    }

    async fn delivery_stats(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourStats>> {
        let since = to_ms(since);
        let mut hours: BTreeMap<i64, HourStats> = BTreeMap::new();
        let counts = sql("SELECT (created_at - $1) / 3600000 AS hour, \
             COUNT(*) FILTER (WHERE state = 'succeeded') AS succeeded, \
             COUNT(*) FILTER (WHERE state = 'failed') AS failed, \
             COUNT(*) FILTER (WHERE state IN ('pending', 'retrying')) AS waiting \
             FROM deliveries WHERE webhook_id = $2 AND created_at >= $1 GROUP BY 1")
        .bind(since)
        .bind(webhook_id)
        .all(&mut self.reader())
        .await?;
        for r in &counts {
            let hour = r.int("hour")?;
            let entry = hours.entry(hour).or_default();
            entry.hour = hour;
            entry.succeeded = r.int("succeeded")?;
            entry.failed = r.int("failed")?;
            entry.waiting = r.int("waiting")?;
        }
        let durations = sql("SELECT (a.started_at - $1) / 3600000 AS hour, \
             CAST(AVG(a.duration_ms) AS DOUBLE PRECISION) AS mean_ms \
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.webhook_id = $2 AND a.started_at >= $1 GROUP BY 1")
        .bind(since)
        .bind(webhook_id)
        .all(&mut self.reader())
        .await?;
        for r in &durations {
            let hour = r.int("hour")?;
            let entry = hours.entry(hour).or_default();
            entry.hour = hour;
            entry.mean_ms = r.float_opt("mean_ms")?;
        }
        Ok(hours.into_values().collect())
    }

    async fn webhook_statuses(
        &self,
        namespace: &NamespaceName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WebhookStatus>> {
        sql(webhook_status_sql(STATUS_OF_NAMESPACE))
            .bind(to_ms(since))
            .bind(namespace.as_str())
            .all(&mut self.reader())
            .await?
            .iter()
            .map(rows::status)
            .collect()
    }

    async fn webhooks_needing_attention(
        &self,
        visibility: &Visibility,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WebhookStatus>> {
        sql(webhook_status_sql(STATUS_NEEDING_ATTENTION))
            .bind(to_ms(since))
            .bind(visibility.member())
            .all(&mut self.reader())
            .await?
            .iter()
            .map(rows::status)
            .collect()
    }

    async fn requeue_failed(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        sql(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, locked_until = NULL, \
             updated_at = $1, \
             fifo = (SELECT ordering = 'fifo' FROM webhooks WHERE id = $2) \
             WHERE webhook_id = $2 AND state = 'failed' \
             AND created_at >= $3 AND created_at < $4",
        )
        .bind(to_ms(now))
        .bind(webhook_id)
        .bind(to_ms(since))
        .bind(to_ms(until))
        .exec(&mut self.writer())
        .await
    }
}

/// A namespace's id and team, as an activity records them.
pub(crate) struct NsContext {
    pub id: i64,
    pub name: String,
    pub team_id: Option<i64>,
    pub team: Option<String>,
}

impl NsContext {
    pub async fn load(on: &mut impl Conn, name: &NamespaceName) -> StoreResult<Self> {
        let row = sql(
            "SELECT n.id, n.name, n.team_id, t.name AS team FROM namespaces n \
             LEFT JOIN teams t ON t.id = n.team_id WHERE n.name = $1",
        )
        .bind(name.as_str())
        .opt(on)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("namespace '{name}'")))?;
        Ok(Self {
            id: row.int("id")?,
            name: row.text("name")?,
            team_id: row.int_opt("team_id")?,
            team: row.text_opt("team")?,
        })
    }

    /// The audit entry of a change in this namespace (to `webhook`: id, name, host).
    pub async fn record(
        &self,
        on: &mut impl Conn,
        audit: &Audit,
        webhook: Option<(i64, &str, &str)>,
    ) -> StoreResult<()> {
        write_activity(
            on,
            audit,
            self.team_id,
            self.team.as_deref(),
            Some(&self.name),
            webhook,
        )
        .await
    }
}

/// An audit entry, written in the transaction of the change it records, so the trail can
/// neither miss a change nor record one that did not happen.
pub(crate) async fn write_activity(
    on: &mut impl Conn,
    audit: &Audit,
    team_id: Option<i64>,
    team: Option<&str>,
    namespace: Option<&str>,
    webhook: Option<(i64, &str, &str)>,
) -> StoreResult<()> {
    sql(
        "INSERT INTO activities (actor, action, team_id, team, namespace, webhook_id, \
         webhook_name, webhook_host, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&audit.actor)
    .bind(audit.action)
    .bind(team_id)
    .bind(team)
    .bind(namespace)
    .bind(webhook.map(|w| w.0))
    .bind(webhook.map(|w| w.1))
    .bind(webhook.map(|w| w.2))
    .bind(&audit.detail)
    .bind(to_ms(Utc::now()))
    .exec(on)
    .await?;
    Ok(())
}
