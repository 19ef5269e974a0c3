//! A webhook as clients see it (the API's JSON, the CLI's `--json`): secrets write-only,
//! header values only for those who may update it, and what is wrong with its settings.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::NamespaceAccess;
use super::{Actor, Context, Result};
use crate::auth::policy::NamespaceAction;
use crate::domain::model::Webhook;
use crate::domain::names::{ContentType, NamespaceName, RequestMethod, WebhookName, WebhookUrl};
use crate::domain::signature::SignatureScheme;
use crate::secrets::Cipher;

/// A webhook as the API shows it: the password is write-only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub namespace: NamespaceName,
    pub name: WebhookName,
    pub url: WebhookUrl,
    pub request_method: RequestMethod,
    pub content_type: ContentType,
    pub username: Option<String>,
    pub has_password: bool,
    /// Header values are shown only to those who may update the webhook (`null` otherwise).
    pub headers: BTreeMap<String, Option<String>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the caller may do with this webhook, so clients can show only usable controls.
    pub permissions: WebhookPermissions,
    /// Which events the webhook gets.
    pub filters: crate::domain::filters::Filters,
    pub format: crate::domain::format::Format,
    pub template: Option<String>,
    /// Whether the receiver's TLS certificate is verified.
    pub tls_verify: bool,
    /// Things an operator should know, e.g. that certificates are not verified.
    pub warnings: Vec<String>,
    /// Whether deliveries carry Standard Webhooks signatures.
    pub signed: bool,
    /// The signing secret (`whsec_...`): only in the answer that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// Until when the previous secret still signs, during a rotation.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    /// At most this many deliveries per second, shared by every process on the database;
    /// `null`: no limit.
    pub rate_limit: Option<f64>,
    /// `none`, or `fifo`: one delivery at a time, in the order events arrived.
    pub ordering: crate::domain::control::DeliveryOrder,
    /// The circuit breaker (read-only): `closed`; `open` after `--circuit-failures` failed
    /// attempts in a row, while due deliveries wait; `half-open` once the cool-down is
    /// over and one probe goes.
    pub circuit: crate::domain::control::CircuitState,
    /// While the circuit is open: when the probe may go.
    pub circuit_probe_at: Option<DateTime<Utc>>,
    /// `v1` (HMAC-SHA256 with `signing_secret`) or `v1a` (ed25519).
    pub signature: SignatureScheme,
    /// A `v1a` webhook's ed25519 public key (`whpk_...`), what receivers verify with;
    /// `null` for `v1`.
    pub signature_public_key: Option<String>,
    /// The PEM certificate chain presented to receivers that ask for a client certificate.
    pub client_certificate: Option<String>,
    /// Whether the client certificate's private key is set: it is write-only.
    pub has_client_key: bool,
    /// Whether the deploy tool's token is set: it is write-only.
    pub has_token: bool,
    /// What the deploy formats read besides the event (`event_type`, `ref`, `variables`,
    /// `registry`); `{}` for none.
    pub format_options: crate::domain::deploy::FormatOptions,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookPermissions {
    pub update: bool,
    pub delete: bool,
}

impl WebhookView {
    pub fn new(w: Webhook, ctx: &Context, actor: &Actor, access: &NamespaceAccess) -> Result<Self> {
        let permissions = WebhookPermissions {
            update: access.allows(ctx, actor, NamespaceAction::UpdateWebhook),
            delete: access.allows(ctx, actor, NamespaceAction::DeleteWebhook),
        };
        let reveal = permissions.update;
        Self::build(w, &ctx.cipher, permissions, reveal)
    }

    /// As `herald webhook list --json` shows it to the operator, who may do anything, but
    /// without header values, which a terminal or a pipe into a log should not hold.
    pub fn for_operator(w: Webhook, cipher: &Cipher) -> Result<Self> {
        let all = WebhookPermissions {
            update: true,
            delete: true,
        };
        Self::build(w, cipher, all, false)
    }

    /// `reveal_headers`: header values in the clear (for those who may update the webhook).
    fn build(
        w: Webhook,
        cipher: &Cipher,
        permissions: WebhookPermissions,
        reveal_headers: bool,
    ) -> Result<Self> {
        let mut headers = BTreeMap::new();
        for h in &w.headers {
            let value = if reveal_headers {
                Some(
                    cipher
                        .open(&h.value)
                        .map_err(crate::store::StoreError::Crypto)?,
                )
            } else {
                None
            };
            headers.insert(h.name.as_str().to_string(), value);
        }
        let signature_public_key = super::webhooks::signature_public_key(&w, cipher)?;
        let warnings = webhook_warnings(&w);
        Ok(Self {
            id: w.id,
            namespace: w.namespace,
            name: w.name,
            url: w.url,
            request_method: w.request_method,
            content_type: w.content_type,
            username: w.username,
            has_password: w.password.is_some(),
            headers,
            enabled: w.enabled,
            created_at: w.created_at,
            updated_at: w.updated_at,
            permissions,
            signed: !w.signing_secrets.is_empty(),
            tls_verify: w.tls_verify,
            warnings,
            filters: w.filters,
            format: w.format,
            template: w.template,
            signing_secret: None,
            previous_secret_valid_until: w.previous_secret_until.filter(|t| *t > Utc::now()),
            rate_limit: w.rate_limit.map(|r| r.as_f64()),
            ordering: w.ordering,
            circuit: w.circuit.state_at(Utc::now().timestamp_millis()),
            circuit_probe_at: w
                .circuit
                .open_until
                .filter(|_| w.circuit.state == crate::domain::control::CircuitState::Open)
                .and_then(DateTime::from_timestamp_millis),
            signature: w.signature,
            signature_public_key,
            client_certificate: w.client_certificate,
            has_client_key: w.client_key.is_some(),
            has_token: w.token.is_some(),
            format_options: w.format_options,
        })
    }
}

/// What is wrong with a saved webhook's settings that does not make them invalid.
pub fn webhook_warnings(w: &Webhook) -> Vec<String> {
    let mut warnings = Vec::new();
    if !w.tls_verify {
        warnings.push(
            "TLS certificates are not verified: anyone on the path can read and change these requests"
                .to_string(),
        );
    }
    if w.format.triggers_deploy() {
        let never: Vec<&str> = w
            .filters
            .actions
            .iter()
            .filter(|a| **a != crate::domain::events::Action::Push)
            .map(|a| a.as_str())
            .collect();
        if !never.is_empty() {
            warnings.push(format!(
                "the {} format triggers deploys only for pushes of tagged manifests: the \
                 filters' {} never reach it",
                w.format.as_str(),
                never.join(", ")
            ));
        }
    }
    if let Some(certificate) = &w.client_certificate {
        warnings.extend(crate::hooks::client_cert::validity_warning(
            certificate,
            std::time::SystemTime::now(),
        ));
    }
    warnings
}

/// Warns when the SSRF guard would refuse the webhook's destination as it resolves now
/// (loopback, private, ... outside `--delivery-allow-networks`), or when it does not resolve.
pub async fn ssrf_warnings(ctx: &Context, hook: &Webhook) -> Vec<String> {
    let allow = ctx
        .config
        .delivery_allow_networks
        .clone()
        .unwrap_or_default();
    crate::delivery::ssrf::SsrfGuard::new(allow)
        .warnings_for(hook.url.as_str(), ctx.config.webhook_resolve_timeout)
        .await
}
