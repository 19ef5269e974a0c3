//! Webhooks: created disabled, changed, enabled, their headers and signing keys, pinged.

use chrono::{DateTime, Utc};

use super::access::{namespace_access, NamespaceAccess, WebhookRef};
use super::{Actor, Context, Error, Result};
use crate::auth::policy::NamespaceAction;
use crate::domain::delivery::DeliveryDetail;
use crate::domain::model::{Audit, NewWebhook, StoredHeader, Webhook, WebhookPatch};
use crate::domain::names::{HeaderName, HeaderValue, Invalid};
use crate::domain::signature::SignatureScheme;
use crate::hooks::input::{audit_for_patch, check_new_template, check_patch, parse_added_header};
use crate::secrets::Cipher;

/// How long the previous secret keeps signing after a rotation, so receivers can switch.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// The webhooks of `ns` the actor may see.
pub async fn list(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
) -> Result<(NamespaceAccess, Vec<Webhook>)> {
    let access = namespace_access(ctx, actor, ns, NamespaceAction::Read).await?;
    let hooks = ctx.store.list_webhooks(&access.namespace.name).await?;
    Ok((access, hooks))
}

pub use super::access::webhook as load;

/// Creates a webhook (disabled, as every new one) after the policy allowed it, with its
/// template tried. `new` is the caller's parsed input: its error is reported after the
/// policy's 404/403, never before.
pub async fn create(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    new: std::result::Result<NewWebhook, Vec<Invalid>>,
) -> Result<(NamespaceAccess, Webhook)> {
    let access = namespace_access(ctx, actor, ns, NamespaceAction::CreateWebhook).await?;
    let new = new.map_err(Error::invalid_all)?;
    check_new_template(&new, &ctx.templates).await?;
    let audit = Audit::new(actor.name(), "webhook.create");
    let hook = ctx
        .store
        .create_webhook(&access.namespace.name, new, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, by = %actor.name(), "webhook created");
    Ok((access, hook))
}

/// Deletes a webhook with its deliveries; returns what it was.
pub async fn delete(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
) -> Result<Webhook> {
    let (access, hook) = load(ctx, actor, ns, hook, NamespaceAction::DeleteWebhook).await?;
    let audit = Audit::new(actor.name(), "webhook.destroy");
    ctx.store
        .delete_webhook(&access.namespace.name, hook.id, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, by = %actor.name(), "webhook deleted");
    Ok(hook)
}

/// A header set on a webhook (its value sealed); true in the answer when it was new.
pub struct HeaderSet {
    pub webhook: Webhook,
    pub name: HeaderName,
    pub value: HeaderValue,
    pub created: bool,
}

/// Adds a header or replaces the one of that name (in any case).
pub async fn set_header(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    name: &str,
    value: &str,
) -> Result<HeaderSet> {
    let (access, hook) = load(ctx, actor, ns, hook, NamespaceAction::ManageHeaders).await?;
    let (name, value) = parse_added_header(&hook.headers, name, value)?;
    let audit = Audit::new(actor.name(), "webhook.header.set").detail(name.as_str());
    let header = StoredHeader {
        name: name.clone(),
        value: ctx.cipher.seal(value.as_str()),
    };
    let created = ctx
        .store
        .set_header(&access.namespace.name, hook.id, header, &audit)
        .await?;
    Ok(HeaderSet {
        webhook: hook,
        name,
        value,
        created,
    })
}

/// Removes a header; returns the webhook it was on.
pub async fn delete_header(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    name: &str,
) -> Result<Webhook> {
    let (access, hook) = load(ctx, actor, ns, hook, NamespaceAction::ManageHeaders).await?;
    let audit = Audit::new(actor.name(), "webhook.header.delete").detail(name);
    ctx.store
        .delete_header(&access.namespace.name, hook.id, name, &audit)
        .await?;
    Ok(hook)
}

/// Applies a patch after the policy allowed it, with templates tried and formats
/// reconciled, and its one audit entry. `patch` is the caller's parsed input: its error
/// is reported after the policy's 404/403, never before.
pub async fn update(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    patch: std::result::Result<WebhookPatch, Vec<Invalid>>,
) -> Result<(NamespaceAccess, Webhook)> {
    let (access, hook, _) = update_showing_secret(ctx, actor, ns, hook, patch).await?;
    Ok((access, hook))
}

/// `update`, and the new `v1` signing secret in clear when the patch switched the webhook
/// to `v1`: the one answer that shows it.
pub async fn update_showing_secret(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    patch: std::result::Result<WebhookPatch, Vec<Invalid>>,
) -> Result<(NamespaceAccess, Webhook, Option<String>)> {
    let (access, current) = load(ctx, actor, ns, hook, NamespaceAction::UpdateWebhook).await?;
    let mut patch = patch.map_err(Error::invalid_all)?;
    check_patch(&mut patch, &current, &ctx.templates).await?;
    let secret = switch_scheme(ctx, &mut patch, &current)?;
    let audit = audit_for_patch(actor.name(), &patch);
    let hook = ctx
        .store
        .update_webhook(&access.namespace.name, current.id, patch, &audit)
        .await?;
    tracing::info!(namespace = %access.namespace.name, webhook = hook.id, enabled = hook.enabled, by = %actor.name(), "webhook updated");
    Ok((access, hook, secret))
}

/// A change of signature scheme is a rotation to a key of the new kind: the current key
/// keeps signing beside it for the overlap, so receivers can switch without dropping a
/// request, and it is refused (409) while an earlier rotation's overlap runs, as a second
/// rotation is. Naming the scheme in force changes nothing. Returns a new `v1` secret.
fn switch_scheme(
    ctx: &Context,
    patch: &mut WebhookPatch,
    current: &Webhook,
) -> Result<Option<String>> {
    let Some(scheme) = patch.signature.filter(|s| *s != current.signature) else {
        patch.signature = None;
        return Ok(None);
    };
    let now = Utc::now();
    overlap_ended(current, now)?;
    let key = crate::hooks::signing::generate(scheme);
    let until = now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
    patch.signing_secret = Some((ctx.cipher.seal(&key), until));
    Ok((scheme == SignatureScheme::V1).then_some(key))
}

/// Refuses (409) to replace the signing key while the previous one still signs: that
/// would drop it at once, while receivers may still verify with it.
fn overlap_ended(current: &Webhook, now: DateTime<Utc>) -> Result<()> {
    match current.previous_secret_until.filter(|u| *u > now) {
        Some(until) => Err(Error::Conflict(format!(
            "the secret was rotated less than {ROTATION_OVERLAP_HOURS} hours ago and the one \
             before it still signs until {}; rotate again after that (a leaked secret: \
             delete the webhook and create it again)",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))),
        None => Ok(()),
    }
}

/// Enables or disables a webhook. Enabling an auto-disabled one starts its health afresh.
pub async fn set_enabled(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    enabled: bool,
) -> Result<(NamespaceAccess, Webhook)> {
    let patch = WebhookPatch {
        enabled: Some(enabled),
        ..Default::default()
    };
    update(ctx, actor, ns, hook, Ok(patch)).await
}

/// A new signing secret (returned in clear, to be shown once, for `v1`; a `v1a` webhook
/// gets a new keypair and shows its public key); the old one also signs for 24 hours. A second rotation inside that overlap is refused (409): it would drop the
/// original secret at once, while receivers may still verify with it.
pub async fn rotate_secret(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
) -> Result<(NamespaceAccess, Webhook, Option<String>)> {
    let (access, current) = load(ctx, actor, ns, hook, NamespaceAction::UpdateWebhook).await?;
    let now = Utc::now();
    overlap_ended(&current, now)?;
    // A `v1a` webhook gets a new keypair: its public key is in the webhook's JSON.
    let secret = crate::hooks::signing::generate(current.signature);
    let until = now + chrono::Duration::hours(ROTATION_OVERLAP_HOURS);
    let audit = Audit::new(actor.name(), "webhook.secret.rotate");
    let hook = ctx
        .store
        .rotate_signing_secret(
            &access.namespace.name,
            current.id,
            ctx.cipher.seal(&secret),
            until,
            &audit,
        )
        .await?;
    let shown = (current.signature == SignatureScheme::V1).then_some(secret);
    Ok((access, hook, shown))
}

/// The current `v1` signing secret in clear, for the one answer that shows it; `None` for
/// a `v1a` webhook, whose private key is never shown (its public key is).
pub fn current_secret(hook: &Webhook, cipher: &Cipher) -> Result<Option<String>> {
    let secret = hook
        .signing_secrets
        .first()
        .map(|sealed| cipher.open(sealed))
        .transpose()
        .map_err(crate::store::StoreError::Crypto)?;
    Ok(secret.filter(|s| s.starts_with(crate::hooks::signing::SECRET_PREFIX)))
}

/// The `whpk_...` public key of a `v1a` webhook's current key, for receivers to verify
/// with; `None` for `v1`.
pub fn signature_public_key(hook: &Webhook, cipher: &Cipher) -> Result<Option<String>> {
    if hook.signature != SignatureScheme::V1a {
        return Ok(None);
    }
    let Some(sealed) = hook.signing_secrets.first() else {
        return Ok(None);
    };
    let key = cipher
        .open(sealed)
        .map_err(crate::store::StoreError::Crypto)?;
    match crate::hooks::signing::Ed25519Key::parse(&key) {
        Ok(key) => Ok(Some(key.public_key())),
        // Only right after a switch could the current key be of the other kind; it is not.
        Err(_) => Ok(None),
    }
}

/// Bulk recovery after an outage: re-queues the failed deliveries created in
/// `[since, until)` (`until` defaults to now) and wakes the workers.
pub async fn recover(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<(NamespaceAccess, Webhook, u64)> {
    let (access, hook) = load(ctx, actor, ns, hook, NamespaceAction::Retrigger).await?;
    let now = Utc::now();
    let until = until.unwrap_or(now);
    if until <= since {
        return Err(Error::invalid("until", "`until` must be after `since`"));
    }
    let requeued = ctx.store.requeue_failed(hook.id, since, until, now).await?;
    let audit = Audit::new(actor.name(), "webhook.delivery.recover").detail(format!(
        "{requeued} failed deliveries from {since} to {until}"
    ));
    ctx.store
        .record_activity(&access.namespace.name, Some(hook.id), &audit)
        .await?;
    if let (true, Some(dispatcher)) = (requeued > 0, &ctx.sender) {
        dispatcher.wake();
    }
    Ok((access, hook, requeued))
}

/// Sends a synthetic `ping` event now (even to a disabled webhook), recorded as a
/// delivery like any other; returns that delivery after the attempt.
pub async fn ping(
    ctx: &Context,
    actor: &Actor,
    ns: &str,
    hook: WebhookRef<'_>,
) -> Result<(
    NamespaceAccess,
    Webhook,
    DeliveryDetail,
    super::deliveries::Sent,
)> {
    let (access, hook) = load(ctx, actor, ns, hook, NamespaceAction::Retrigger).await?;
    // A deploy tool would act on a ping (run a pipeline, roll out): none is sent.
    if hook.format.triggers_deploy() {
        return Err(Error::Conflict(format!(
            "the {} format triggers a deploy, so no ping is sent to it: deploy formats send \
             only pushes of tagged manifests (push a tag to test it)",
            hook.format.as_str()
        )));
    }
    let now = Utc::now();
    let event_id = format!("ping-{}", &crate::secrets::random_token("")[..22]);
    let repository = if access.namespace.name.is_global() {
        "herald-ping".to_string()
    } else {
        format!("{}/herald-ping", access.namespace.name)
    };
    let body = serde_json::json!({
        "id": event_id,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "action": "ping",
        "target": { "repository": repository },
        "actor": { "name": actor.name() },
        "source": { "addr": "herald" }
    })
    .to_string();
    let audit = Audit::new(actor.name(), "webhook.ping").detail(&event_id);
    ctx.store
        .record_activity(&access.namespace.name, Some(hook.id), &audit)
        .await?;
    let delivery = ctx
        .store
        .create_ping(hook.id, &event_id, &repository, &body, now)
        .await?;
    let sent = super::deliveries::send(ctx, delivery).await?;
    let detail = ctx.store.get_delivery(hook.id, delivery).await?;
    Ok((access, hook, detail, sent))
}
