//! Delivery operations shared by the API and the UI.

use crate::app::access::parse_id;
use crate::app::access::NamespaceAccess;
use crate::auth::policy::NamespaceAction;
use crate::error::AppError;
use crate::store::{Audit, DeliveryDetail, User, Webhook};
use crate::AppState;

/// Sends a delivery again now, with the webhook's current settings (even if it is
/// disabled); returns the delivery with the new attempt.
pub async fn retrigger(
    state: &AppState,
    user: &User,
    ns: &str,
    id: &str,
    delivery: &str,
) -> Result<(NamespaceAccess, Webhook, DeliveryDetail), AppError> {
    let (access, hook) =
        super::webhooks::load(state, user, ns, id, NamespaceAction::Retrigger).await?;
    let delivery = parse_id(delivery, "delivery")?;
    // Checks the delivery belongs to this webhook before sending anything.
    state.store.get_delivery(hook.id, delivery).await?;
    let audit = Audit::new(&user.username, "webhook.delivery.retrigger")
        .detail(format!("delivery {delivery}"));
    state
        .store
        .record_activity(&access.namespace.name, Some(hook.id), &audit)
        .await?;
    state.dispatcher.retrigger(delivery).await?;
    let detail = state.store.get_delivery(hook.id, delivery).await?;
    Ok((access, hook, detail))
}
