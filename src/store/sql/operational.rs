//! Operational events, written once for both databases: the event row (listed with the
//! registry's events), what it is about, and one pending delivery per webhook that asked
//! for its kind, all in the caller's transaction.

use chrono::{DateTime, Utc};

use super::{sql, Conn, SqlRow};
use crate::domain::names::{NamespaceName, WebhookUrl};
use crate::domain::operational::{
    self, exhausted_detail, fresh_id, occurrence, Announcement, CarriedEvent, DeliveryRef, Payload,
    WebhookRef,
};
use crate::store::{to_ms, StoreResult};

/// Stores `a` and its deliveries; returns the event's row id, or `None` when there is
/// nothing to announce: the webhook or delivery is gone, the delivery has not failed, it
/// carried an operational event itself (no cascades), or this failure was announced
/// already.
pub(crate) async fn announce(
    tx: &mut impl Conn,
    a: &Announcement,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let Some(about) = sql(
        "SELECT w.name, w.url, w.namespace_id, n.name AS namespace FROM webhooks w \
         JOIN namespaces n ON n.id = w.namespace_id WHERE w.id = $1",
    )
    .bind(a.webhook_id)
    .opt(tx)
    .await?
    else {
        return Ok(None);
    };
    let id = fresh_id(&crate::secrets::random_token("")[..22]);
    let (delivery, failed_at, detail) = match a.delivery_id {
        None => (None, None, a.detail.clone()),
        Some(delivery_id) => match failed_delivery(tx, delivery_id, a.webhook_id).await? {
            Some((delivery, failed_at)) => {
                let detail = exhausted_detail(delivery.attempts, delivery.last_error.as_deref());
                (Some(delivery), Some((delivery_id, failed_at)), detail)
            }
            None => return Ok(None),
        },
    };
    let namespace = about.text("namespace")?;
    // The webhook's own namespace hears about it, and the global one about every
    // namespace's; the webhook itself never does.
    let candidates = sql(
        "SELECT w.id, w.ordering = 'fifo' AS fifo, w.filters, w.format \
         FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id \
         WHERE w.enabled AND (w.namespace_id = $1 OR n.name = $2) AND w.id <> $3 \
         ORDER BY w.id",
    )
    .bind(about.int("namespace_id")?)
    .bind(NamespaceName::GLOBAL)
    .bind(a.webhook_id)
    .all(tx)
    .await?
    .iter()
    .map(super::rows::candidate)
    .collect::<StoreResult<Vec<_>>>()?;
    let (status, reason, recipients) = operational::decide(a.kind, &candidates);
    let payload = Payload::new(
        id.clone(),
        a.kind,
        now,
        namespace.clone(),
        WebhookRef {
            id: a.webhook_id,
            name: about.text("name")?,
            host: WebhookUrl::trusted(about.text("url")?).host(),
        },
        detail,
        delivery,
    );
    // Plain structs of strings and numbers: serialising cannot fail.
    let body = serde_json::to_string(&payload).unwrap_or_default();
    let now_ms = to_ms(now);
    let event_id = sql(
        "INSERT INTO events (registry_id, action, namespace, status, reason, body, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(id.as_str())
    .bind(a.kind.as_str())
    .bind(namespace)
    .bind(status)
    .bind(reason)
    .bind(body)
    .bind(now_ms)
    .one(tx)
    .await?
    .int("id")?;
    let recorded = sql(
        "INSERT INTO operational_events (event_id, kind, webhook_id, delivery_id, occurrence) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (occurrence) DO NOTHING",
    )
    .bind(event_id)
    .bind(a.kind.as_str())
    .bind(a.webhook_id)
    .bind(a.delivery_id)
    .bind(occurrence(a.kind, &id, failed_at))
    .exec(tx)
    .await?;
    if recorded == 0 {
        // Announced already (two callers raced): this copy goes.
        sql("DELETE FROM events WHERE id = $1")
            .bind(event_id)
            .exec(tx)
            .await?;
        return Ok(None);
    }
    for to in recipients {
        sql(
            "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, created_at, \
             updated_at, fifo) VALUES ($1, $2, 'pending', $3, $3, $3, $4)",
        )
        .bind(to.webhook_id)
        .bind(event_id)
        .bind(now_ms)
        .bind(to.fifo)
        .exec(tx)
        .await?;
    }
    Ok(Some(event_id))
}

/// A failed delivery of `webhook_id` as a `delivery.exhausted` tells of it, and when it
/// failed (ms); `None` when it is not failed or carried an operational event itself.
async fn failed_delivery(
    tx: &mut impl Conn,
    delivery_id: i64,
    webhook_id: i64,
) -> StoreResult<Option<(DeliveryRef, i64)>> {
    let row = sql(
        "SELECT d.attempts, CAST(d.last_status AS BIGINT) AS last_status, d.last_error, \
         d.updated_at, e.registry_id, e.action, e.repository, e.tag \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.id = $1 AND d.webhook_id = $2 AND d.state = 'failed' \
         AND NOT EXISTS (SELECT 1 FROM operational_events o WHERE o.event_id = d.event_id)",
    )
    .bind(delivery_id)
    .bind(webhook_id)
    .opt(tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let delivery = DeliveryRef {
        id: delivery_id,
        attempts: row.int("attempts")?,
        last_status: row.int_opt("last_status")?,
        last_error: row.text_opt("last_error")?,
        event: CarriedEvent {
            id: row.text_opt("registry_id")?,
            action: row.text_opt("action")?,
            repository: row.text_opt("repository")?,
            tag: row.text_opt("tag")?,
        },
    };
    Ok(Some((delivery, row.int("updated_at")?)))
}

/// Whether a delivery carries an operational event: its attempts announce nothing.
pub(crate) async fn carries_operational(on: &mut impl Conn, delivery_id: i64) -> StoreResult<bool> {
    Ok(sql(
        "SELECT 1 AS one FROM deliveries d JOIN operational_events o ON o.event_id = d.event_id \
         WHERE d.id = $1",
    )
    .bind(delivery_id)
    .opt(on)
    .await?
    .is_some())
}
