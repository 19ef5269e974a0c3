//! Herald's model: namespaces, webhooks, teams, users, sources and what the UI and API
//! show of them. Validated values come from `names`; no I/O here.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::control::{Circuit, CircuitState, DeliveryOrder, RateLimit};
use crate::domain::deploy::FormatOptions;
use crate::domain::filters::Filters;
use crate::domain::format::Format;
use crate::domain::names::{
    ContentType, HeaderName, NamespaceName, RequestMethod, WebhookName, WebhookUrl,
};
use crate::domain::signature::SignatureScheme;
use crate::secrets::Sealed;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Namespace {
    #[serde(skip)]
    pub id: i64,
    pub name: NamespaceName,
    pub description: String,
    /// The owning team; `None` means the admins (the global namespace).
    #[serde(skip)]
    pub team_id: Option<i64>,
    pub team: Option<String>,
    pub webhook_count: i64,
    pub created_at: DateTime<Utc>,
}

/// A member's role in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Contributor,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Contributor => "contributor",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "contributor" => Some(Self::Contributor),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub username: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Team {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub description: String,
    /// A user's hidden team that owns their personal namespace.
    pub personal: bool,
    pub created_at: DateTime<Utc>,
    pub members: Vec<Member>,
}

/// Who changed what, written in the same transaction as the change itself.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub detail: Option<String>,
}

impl Audit {
    pub fn new(actor: &str, action: &'static str) -> Self {
        Self {
            actor: actor.to_string(),
            action,
            detail: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Activity {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub team: Option<String>,
    pub namespace: Option<String>,
    pub webhook_id: Option<i64>,
    pub webhook_name: Option<String>,
    pub webhook_host: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Which activities a caller may read.
#[derive(Debug, Clone)]
pub enum Visibility {
    All,
    /// Only what belongs to the teams this user is a member of.
    MemberOf(i64),
}

impl Visibility {
    /// The member whose teams bound what is visible; `None` when everything is.
    pub fn member(&self) -> Option<i64> {
        match self {
            Visibility::All => None,
            Visibility::MemberOf(user) => Some(*user),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredHeader {
    pub name: HeaderName,
    pub value: Sealed,
}

/// A webhook as stored: secrets are still sealed.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: i64,
    pub namespace: NamespaceName,
    pub name: WebhookName,
    pub url: WebhookUrl,
    pub request_method: RequestMethod,
    pub content_type: ContentType,
    pub username: Option<String>,
    pub password: Option<Sealed>,
    pub headers: Vec<StoredHeader>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Standard Webhooks secrets to sign with: the current one first, then the one being
    /// rotated out while it is still valid. Empty for webhooks made before signing existed.
    pub signing_secrets: Vec<Sealed>,
    /// Until when the previous secret still signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Since when every attempt has failed; `None` while healthy.
    pub failing_since: Option<DateTime<Utc>>,
    pub filters: Filters,
    pub format: Format,
    pub template: Option<String>,
    /// Whether the receiver's TLS certificate is verified.
    pub tls_verify: bool,
    /// At most this many deliveries a second (per process), or none.
    pub rate_limit: Option<RateLimit>,
    pub ordering: DeliveryOrder,
    /// The circuit breaker's state (read-only: attempts move it).
    pub circuit: Circuit,
    /// The Standard Webhooks scheme its current key signs with (`signing_secrets[0]`).
    pub signature: SignatureScheme,
    /// For receivers behind mutual TLS: the PEM certificate chain Herald presents, and its
    /// sealed PEM private key. Both or neither.
    pub client_certificate: Option<String>,
    pub client_key: Option<Sealed>,
    /// The deploy tool's secret (Flux's HMAC key, a GitHub token, a GitLab trigger token),
    /// sealed; write-only.
    pub token: Option<Sealed>,
    /// What the deploy formats read besides the event (`event_type`, `ref`, ...).
    pub format_options: FormatOptions,
    /// Moves with every change of its settings: tells a cached copy from the current one.
    pub revision: i64,
}

/// What an attempt says about a webhook's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Succeeded,
    Failed,
    /// The receiver answered 410 Gone: it asks not to be called again.
    Gone,
}

/// A webhook's state after an attempt: the auto-disable rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthVerdict {
    pub enabled: bool,
    /// Since when (ms) nothing but failures came back; `None` while healthy.
    pub failing_since: Option<i64>,
    /// Set when this attempt disables the webhook: why, for the audit trail.
    pub disabled_because: Option<String>,
    /// This attempt succeeded after a failing streak (announced as `webhook.recovered`).
    pub recovered: bool,
}

impl HealthVerdict {
    /// An enabled webhook is disabled on 410 Gone, or on a failure after `disable_after`
    /// of nothing but failures; a success clears the failing streak.
    pub fn weigh(
        health: Health,
        enabled: bool,
        failing_since: Option<i64>,
        now_ms: i64,
        disable_after: std::time::Duration,
    ) -> Self {
        let cutoff = now_ms - disable_after.as_millis() as i64;
        let disable = enabled
            && match health {
                Health::Succeeded => false,
                Health::Gone => true,
                Health::Failed => failing_since.is_some_and(|t| t <= cutoff),
            };
        let disabled_because = disable.then(|| match health {
            Health::Gone => "the receiver answered 410 Gone".to_string(),
            _ => format!(
                "every attempt failed for {}",
                humantime::format_duration(disable_after)
            ),
        });
        let (enabled, new_failing_since) = match (health, disable) {
            (Health::Succeeded, _) => (enabled, None),
            (_, true) => (false, None),
            (_, false) => (enabled, Some(failing_since.unwrap_or(now_ms))),
        };
        Self {
            enabled,
            failing_since: new_failing_since,
            disabled_because,
            recovered: health == Health::Succeeded && failing_since.is_some(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub name: WebhookName,
    pub url: WebhookUrl,
    pub request_method: RequestMethod,
    pub content_type: ContentType,
    pub username: Option<String>,
    pub password: Option<Sealed>,
    pub headers: Vec<StoredHeader>,
    pub signing_secret: Sealed,
    pub filters: Filters,
    pub format: Format,
    pub template: Option<String>,
    pub tls_verify: bool,
    pub rate_limit: Option<RateLimit>,
    pub ordering: DeliveryOrder,
    pub signature: SignatureScheme,
    pub client_certificate: Option<String>,
    pub client_key: Option<Sealed>,
    pub token: Option<Sealed>,
    pub format_options: FormatOptions,
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub name: Option<WebhookName>,
    pub url: Option<WebhookUrl>,
    pub request_method: Option<RequestMethod>,
    pub content_type: Option<ContentType>,
    pub username: Option<Option<String>>,
    pub password: Option<Option<Sealed>>,
    pub headers: Option<Vec<StoredHeader>>,
    pub enabled: Option<bool>,
    pub filters: Option<Filters>,
    pub format: Option<Format>,
    pub template: Option<Option<String>>,
    pub tls_verify: Option<bool>,
    pub rate_limit: Option<Option<RateLimit>>,
    pub ordering: Option<DeliveryOrder>,
    pub signature: Option<SignatureScheme>,
    /// A key of the new scheme when `signature` changes it, and until when the current key
    /// keeps signing beside it: set by the use case, never by input.
    pub signing_secret: Option<(Sealed, DateTime<Utc>)>,
    /// The certificate chain and its sealed key, replaced together; `Some(None)` removes both.
    pub client_identity: Option<Option<(String, Sealed)>>,
    /// The sealed token; `Some(None)` removes it.
    pub token: Option<Option<Sealed>>,
    /// Replaces every format option.
    pub format_options: Option<FormatOptions>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: i64,
    pub registry_id: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub namespace: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Who did it, as the registry names them.
    pub actor: Option<String>,
    /// The source it came from; `None` for the default endpoint.
    pub source: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub received_at: DateTime<Utc>,
    /// When the registry says it happened, if it said so readably.
    pub occurred_at: Option<DateTime<Utc>>,
    /// What was pushed, read from the manifest (a manifest push of a registry Herald reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<crate::domain::artifact::ArtifactFacts>,
    /// `pending`, `read` or `failed` when the facts are to be read; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts_state: Option<String>,
    /// Why the facts could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts_error: Option<String>,
    /// Why a reconcile made this event up; absent when the registry sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesized: Option<String>,
}

/// When a source last sent an event (`source` `None`: the default endpoint).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceActivity {
    pub source: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// A delivery an event made, as the events page links it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventDelivery {
    pub event_id: i64,
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub webhook: String,
    pub namespace: String,
    pub state: String,
}

/// A registry feeding Herald at `/v2/sources/{name}/events`, or the built-in `default` at
/// `/v2/webhooks/events`; its credentials are never shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Source {
    pub name: String,
    pub kind: crate::domain::events::SourceKind,
    /// `bearer` (a token) or `basic` (username and password).
    pub auth: &'static str,
    pub username: Option<String>,
    /// The default endpoint, set by Herald's configuration rather than created.
    pub builtin: bool,
    /// When it was created; the built-in source has no such time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Where Herald reads the registry (manifests, catalog, tags), if it may.
    pub registry_url: Option<String>,
    pub registry_username: Option<String>,
    pub has_registry_password: bool,
    /// Whether Herald could read the registry the last time it tried (`None`: not tried
    /// yet, or no registry access).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_status: Option<RegistryStatus>,
    /// Where the source's events come from when it reads them from NATS (its credentials
    /// are never shown): the server, the subject, the JetStream stream and the durable
    /// consumer's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_consumer: Option<String>,
}

/// A source that reads its events from a NATS subject (zot's NATS sink), as a durable
/// JetStream pull consumer, instead of receiving them over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsIntake {
    /// `nats://host:port`, without credentials.
    pub url: String,
    pub subject: String,
    pub stream: String,
    pub consumer: String,
    pub username: Option<String>,
    pub password: Option<Sealed>,
}

/// The last outcome of reading a source's registry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RegistryStatus {
    pub ok: bool,
    pub checked_at: DateTime<Utc>,
    /// `unreachable`, `unauthorized` or `error` when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A source's registry access as stored: the password still sealed.
#[derive(Debug, Clone, Default)]
pub struct RegistryAccess {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Sealed>,
}

/// A source to create: `username` is set for Basic auth, and `secret_hash` is the token's
/// SHA-256 (bearer) or the password's argon2 hash (Basic).
#[derive(Debug, Clone)]
pub struct NewSource {
    pub name: String,
    pub kind: crate::domain::events::SourceKind,
    pub username: Option<String>,
    pub secret_hash: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    #[serde(skip)]
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: i64,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One hour of a webhook's deliveries (by creation time) and attempts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HourStats {
    /// Hours since the start of the window.
    pub hour: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Pending or retrying.
    pub waiting: i64,
    /// Mean attempt duration in that hour, if there were attempts.
    pub mean_ms: Option<f64>,
}

/// What is waiting to be sent.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub pending: i64,
    pub retrying: i64,
    /// When the longest-waiting due delivery became due.
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// A webhook's health at a glance, from its row, its deliveries and its audit trail.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WebhookStatus {
    pub webhook_id: i64,
    pub namespace: String,
    pub name: String,
    pub enabled: bool,
    /// Since when every attempt has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// The last answer of the most recently attempted delivery, and its error.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Deliveries created in the window that succeeded / failed for good.
    pub succeeded: i64,
    pub failed: i64,
    /// Deliveries waiting for another attempt now.
    pub retrying: i64,
    /// Deliveries that failed for good since `failing_since`.
    pub failed_while_failing: i64,
    /// Disabled by Herald itself (410 Gone or failing for too long), not by a person.
    pub auto_disabled: bool,
    /// The circuit breaker as stored: open or half-open, nothing is being delivered.
    pub circuit: CircuitState,
    /// An open circuit's probe time.
    pub circuit_open_until: Option<DateTime<Utc>>,
}

/// What a webhook's state says to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthState {
    Healthy,
    Retrying,
    Failing,
    AutoDisabled,
    Disabled,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Retrying => "retrying",
            Self::Failing => "failing",
            Self::AutoDisabled => "auto-disabled",
            Self::Disabled => "disabled",
        }
    }
}

impl WebhookStatus {
    /// The state at `now`. An enabled webhook is failing once a delivery failed for good
    /// while every attempt fails, once its circuit is open (nothing is delivered until a
    /// probe succeeds), or once every attempt has failed for `attention_after`: a dead
    /// receiver shows as failing within minutes, not after the last retry of a delivery
    /// (about a day with the default schedule).
    pub fn state_at(
        &self,
        now: DateTime<Utc>,
        attention_after: std::time::Duration,
    ) -> HealthState {
        let failing_long = self.failing_since.is_some_and(|t| {
            now.signed_duration_since(t)
                .to_std()
                .is_ok_and(|d| d >= attention_after)
        });
        match (self.enabled, self.auto_disabled, self.failing_since) {
            (false, true, _) => HealthState::AutoDisabled,
            (false, false, _) => HealthState::Disabled,
            (true, _, _) if self.circuit != CircuitState::Closed => HealthState::Failing,
            (true, _, Some(_)) if self.failed_while_failing > 0 || failing_long => {
                HealthState::Failing
            }
            (true, _, Some(_)) => HealthState::Retrying,
            (true, _, None) if self.retrying > 0 => HealthState::Retrying,
            (true, _, None) => HealthState::Healthy,
        }
    }

    /// Whether an operator should look at it: failing, or disabled by Herald.
    pub fn needs_attention(
        &self,
        now: DateTime<Utc>,
        attention_after: std::time::Duration,
    ) -> bool {
        matches!(
            self.state_at(now, attention_after),
            HealthState::Failing | HealthState::AutoDisabled
        )
    }

    /// Succeeded out of finished deliveries in the window, in percent.
    pub fn success_rate(&self) -> Option<f64> {
        let finished = self.succeeded + self.failed;
        (finished > 0).then(|| 100.0 * self.succeeded as f64 / finished as f64)
    }
}

/// Which audit entries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityFilter<'a> {
    pub namespace: Option<&'a str>,
    pub actor: Option<&'a str>,
}

/// A page of a newest-first list; `next` is the cursor of the following page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(enabled: bool, failing_for_secs: Option<i64>) -> (WebhookStatus, DateTime<Utc>) {
        let now = Utc::now();
        let status = WebhookStatus {
            webhook_id: 1,
            namespace: "acme".into(),
            name: "deploy".into(),
            enabled,
            failing_since: failing_for_secs.map(|s| now - chrono::Duration::seconds(s)),
            last_status: None,
            last_error: None,
            last_attempt_at: None,
            succeeded: 0,
            failed: 0,
            retrying: 1,
            failed_while_failing: 0,
            auto_disabled: false,
            circuit: CircuitState::Closed,
            circuit_open_until: None,
        };
        (status, now)
    }

    #[test]
    fn a_dead_receiver_is_failing_once_its_circuit_opens_or_after_attention_after() {
        let quarter = std::time::Duration::from_secs(900);
        let (fresh, now) = status(true, Some(60));
        assert_eq!(fresh.state_at(now, quarter), HealthState::Retrying);
        assert!(!fresh.needs_attention(now, quarter));
        let (long, now) = status(true, Some(900));
        assert_eq!(long.state_at(now, quarter), HealthState::Failing);
        assert!(long.needs_attention(now, quarter));
        let (mut open, now) = status(true, Some(5));
        open.circuit = CircuitState::Open;
        assert_eq!(open.state_at(now, quarter), HealthState::Failing);
        open.circuit = CircuitState::HalfOpen;
        assert!(open.needs_attention(now, quarter));
        // Disabled by a person: no attention, whatever the circuit says.
        let (mut off, now) = status(false, None);
        off.circuit = CircuitState::Open;
        assert_eq!(off.state_at(now, quarter), HealthState::Disabled);
        assert!(!off.needs_attention(now, quarter));
        let (healthy, now) = status(true, None);
        assert_eq!(
            WebhookStatus {
                retrying: 0,
                ..healthy
            }
            .state_at(now, quarter),
            HealthState::Healthy
        );
    }
}
