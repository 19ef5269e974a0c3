//! The dispatcher's side of operational events: one call where an outcome is final.
//! Announcing never fails a delivery: an error is logged and the delivery goes on.
//! (`webhook.disabled` and `webhook.recovered` are announced by the store itself, in
//! the transaction that changes the webhook's health.)

use chrono::Utc;

use crate::domain::delivery::{DeliveryJob, DeliveryState};
use crate::domain::events::Action;
use crate::domain::operational::Announcement;
use crate::store::Store;

/// `delivery.exhausted` for a delivery that was waiting (pending or retrying) and has
/// now failed for good: its retries ran out, the receiver answered 410, or its request
/// could not be built. A manual retry of a delivery already failed announces nothing, and
/// neither does a delivery of an operational event (the store checks both).
pub async fn delivery_failed(store: &dyn Store, job: &DeliveryJob) {
    if !matches!(job.state, DeliveryState::Pending | DeliveryState::Retrying) {
        return;
    }
    announce(
        store,
        // The store says why, from the delivery's last error as recorded.
        Announcement::new(Action::DeliveryExhausted, job.webhook.id, "").delivery(job.delivery_id),
    )
    .await;
}

/// `webhook.circuit_opened`: deliveries to the webhook are paused; `detail` says why
/// and for how long, e.g. `"5 attempts in a row failed; paused for 30s"`. Call it once
/// per opening (each call is one event), where the circuit opens:
/// `operational::circuit_opened(&*self.store, webhook_id, &detail).await;`
pub async fn circuit_opened(store: &dyn Store, webhook_id: i64, detail: &str) {
    announce(
        store,
        Announcement::new(Action::WebhookCircuitOpened, webhook_id, detail),
    )
    .await;
}

async fn announce(store: &dyn Store, announcement: Announcement) {
    if let Err(e) = store.announce(&announcement, Utc::now()).await {
        tracing::warn!(
            webhook_id = announcement.webhook_id,
            kind = announcement.kind.as_str(),
            error = %e,
            "could not store an operational event"
        );
    }
}
