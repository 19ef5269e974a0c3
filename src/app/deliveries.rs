//! Deliveries: listed, shown, and sent again.

use super::access::webhook as load;
use super::access::{parse_id, NamespaceAccess, WebhookRef};
use super::{Actor, Context, Result};
use crate::auth::policy::NamespaceAction;
use crate::domain::delivery::{DeliveryDetail, DeliverySummary};
use crate::domain::model::{Audit, Page, Webhook};

/// A webhook's deliveries, newest first.
pub async fn list(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    limit: i64,
    cursor: Option<i64>,
) -> Result<(Webhook, Page<DeliverySummary>)> {
    let (_, hook) = load(ctx, actor, ns, hook, NamespaceAction::Read).await?;
    let page = ctx.store.list_deliveries(hook.id, limit, cursor).await?;
    Ok((hook, page))
}

/// One delivery of a webhook, with its request and attempts.
pub async fn show(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    delivery: &str,
) -> Result<(Webhook, DeliveryDetail)> {
    let (_, hook) = load(ctx, actor, ns, hook, NamespaceAction::Read).await?;
    let delivery = parse_id(delivery, "delivery")?;
    let detail = ctx.store.get_delivery(hook.id, delivery).await?;
    Ok((hook, detail))
}

/// Whether a delivery went out now, or was handed to the running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// This process sent it: the detail has the new attempt.
    Now,
    /// Queued for a serving process, which sends it with its own settings.
    Queued,
}

/// Sends a delivery again, with the webhook's current settings (even if it is disabled):
/// at once where this process has a dispatcher, else queued for the running server. The
/// command line never sends a delivery itself.
pub async fn retrigger(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    delivery: &str,
) -> Result<(NamespaceAccess, Webhook, DeliveryDetail, Sent)> {
    let (access, hook) = load(ctx, actor, ns, hook, NamespaceAction::Retrigger).await?;
    let delivery = parse_id(delivery, "delivery")?;
    // Checks the delivery belongs to this webhook before sending anything.
    ctx.store.get_delivery(hook.id, delivery).await?;
    let audit = Audit::new(actor.name(), "webhook.delivery.retrigger")
        .detail(format!("delivery {delivery}"));
    ctx.store
        .record_activity(&access.namespace.name, Some(hook.id), &audit)
        .await?;
    let sent = send(ctx, delivery).await?;
    tracing::info!(delivery, webhook = hook.id, by = %actor.name(), queued = sent == Sent::Queued, "delivery retriggered");
    let detail = ctx.store.get_delivery(hook.id, delivery).await?;
    Ok((access, hook, detail, sent))
}

/// Sends `delivery` now as a manual attempt, or asks a serving process to.
pub(super) async fn send(ctx: &Context, delivery: i64) -> Result<Sent> {
    match &ctx.sender {
        Some(dispatcher) => {
            dispatcher.retrigger(delivery).await?;
            Ok(Sent::Now)
        }
        None => {
            ctx.store.request_send(delivery).await?;
            Ok(Sent::Queued)
        }
    }
}
