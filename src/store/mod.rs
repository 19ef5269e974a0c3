//! Storage: one `Store` trait that the rest of Herald talks to, so the embedded SQLite
//! default and a server database can sit behind the same contract.

pub mod postgres;
pub(crate) mod sql;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::hooks::filters::{CompiledFilters, Filters};
use crate::hooks::formats::Format;
use crate::hooks::types::{
    ContentType, HeaderName, NamespaceName, RequestMethod, WebhookName, WebhookUrl,
};
use crate::registry::envelope::{Disposition, IncomingEvent};
use crate::secrets::Sealed;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite writer's own connection (`sqlite/group_commit.rs`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite writer thread itself: stopped, or a batch it ran failed (the text of that
    /// failure, for every job of the batch but the one that caused it).
    #[error("the SQLite writer: {0}")]
    Writer(String),
    #[error("{0}")]
    Crypto(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

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
        let (enabled, failing_since) = match (health, disable) {
            (Health::Succeeded, _) => (enabled, None),
            (_, true) => (false, None),
            (_, false) => (enabled, Some(failing_since.unwrap_or(now_ms))),
        };
        Self {
            enabled,
            failing_since,
            disabled_because,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Retrying,
    Succeeded,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// The state a `state` column names; anything else is an error, never a default: a
    /// corrupt row read as `pending` would be sent again.
    pub fn parse(s: &str) -> Result<Self, UnknownState> {
        match s {
            "pending" => Ok(Self::Pending),
            "retrying" => Ok(Self::Retrying),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            other => Err(UnknownState(other.to_string())),
        }
    }
}

/// A delivery `state` that is none of the four: the row is corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery state '{0}'")]
pub struct UnknownState(pub String);

/// A delivery's stored state, or a database error naming the delivery and the value, so a
/// corrupt row fails loudly (500, and the value in the log) instead of passing as pending.
pub(crate) fn stored_state(delivery_id: i64, text: &str) -> StoreResult<DeliveryState> {
    DeliveryState::parse(text).map_err(|e| {
        StoreError::Database(sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("delivery {delivery_id}: {e}").into(),
        })
    })
}

/// The event a delivery carries, as listed with it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRef {
    pub id: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliverySummary {
    pub id: i64,
    pub webhook_id: i64,
    pub state: DeliveryState,
    pub attempt_count: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub event: EventRef,
}

/// A request as sent, with secrets redacted: safe to store and to show.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredRequest {
    pub method: String,
    pub url: String,
    /// `[name, value]` pairs in the order sent.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    #[schema(value_type = Vec<Vec<String>>)]
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub response_truncated: bool,
    pub manual: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// The last request sent; `None` until the first attempt.
    pub request: Option<StoredRequest>,
    pub attempts: Vec<Attempt>,
}

/// Everything a worker needs to send one delivery.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: i64,
    pub attempts_so_far: i64,
    /// Attempts the schedule made (manual ones are not steps of the retry schedule).
    pub automatic_attempts: i64,
    /// When the schedule would try next, for a delivery still waiting.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub state: DeliveryState,
    pub webhook: Webhook,
    pub event_action: String,
    pub event_body: String,
    /// What ingest read from the event, whichever registry sent it.
    pub event: EventRecord,
}

/// The facts ingest read from an event and stored beside its body: formats that speak of
/// the event (chat messages, CloudEvents attributes, templates) use them for events from
/// registries whose payloads are not distribution's (zot, Harbor).
#[derive(Debug, Clone, Default)]
pub struct EventRecord {
    pub registry_id: Option<String>,
    pub action: String,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub actor: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// A due delivery leased by `claim_due`. Every claim of a delivery gets a new `token`, and
/// writes under an older one are refused, so a worker that stalled past its lease can
/// neither send during a newer claim nor overwrite its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub token: i64,
}

/// Which due deliveries a claim may take, besides being due and not leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimScope<'a> {
    /// Those of any webhook but these.
    Skipping(&'a [i64]),
    /// Only those of these webhooks.
    Only(&'a [i64]),
    /// The earliest due one of each webhook but these: at most one per webhook. The claim
    /// looks at the first `one_per_webhook_window(limit)` due rows only, so when a few
    /// webhooks' backlogs fill that window it comes up short; those webhooks then hold a
    /// delivery, and the caller can pass over them in its next claim.
    OnePerWebhookSkipping(&'a [i64]),
}

impl ClaimScope<'_> {
    /// The webhooks this scope names, and whether it takes only theirs.
    pub(crate) fn webhooks(&self) -> (&[i64], bool) {
        match *self {
            Self::Skipping(ids) | Self::OnePerWebhookSkipping(ids) => (ids, false),
            Self::Only(ids) => (ids, true),
        }
    }
}

/// How many due rows a one-per-webhook claim of `limit` looks at.
pub(crate) fn one_per_webhook_window(limit: i64) -> i64 {
    limit.saturating_mul(4).max(64)
}

/// What `Store::wakeups` returns: a task that runs for the life of the process.
pub type WakeupTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// One attempt's result, written together with the delivery's new state.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub response_truncated: bool,
    pub manual: bool,
    pub request: StoredRequest,
    /// The request body is stored only when it differs from the event body.
    pub body_is_event: bool,
    pub outcome: Outcome,
    /// The claim token the attempt was made under; `None` for a manual retrigger, which
    /// holds no lease and leaves a worker's lease alone.
    pub lease: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct IngestSummary {
    /// Events that were relevant and new.
    pub accepted: usize,
    /// Valid events that trigger no webhook (blob pushes, pulls, unknown namespaces).
    pub skipped: usize,
    /// Events Herald could not use, stored with the reason.
    pub ignored: usize,
    /// Events already received (the registry retried).
    pub duplicates: usize,
    pub deliveries: usize,
}

impl IngestSummary {
    /// Counts a newly stored event under the status [`decide`] gave it.
    pub(crate) fn count(&mut self, status: &str) {
        match status {
            "ignored" => self.ignored += 1,
            "skipped" => self.skipped += 1,
            _ => self.accepted += 1,
        }
    }
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
    pub status: String,
    pub reason: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// A registry feeding Herald at `/v2/sources/{name}/events`; its credential is never shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Source {
    pub name: String,
    pub kind: crate::registry::sources::SourceKind,
    /// `bearer` (a token) or `basic` (username and password).
    pub auth: &'static str,
    pub username: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A source to create: `username` is set for Basic auth, and `secret_hash` is the token's
/// SHA-256 (bearer) or the password's argon2 hash (Basic).
#[derive(Debug, Clone)]
pub struct NewSource {
    pub name: String,
    pub kind: crate::registry::sources::SourceKind,
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
    pub fn state(&self) -> HealthState {
        match (self.enabled, self.auto_disabled, self.failing_since) {
            (false, true, _) => HealthState::AutoDisabled,
            (false, false, _) => HealthState::Disabled,
            (true, _, Some(_)) if self.failed_while_failing > 0 => HealthState::Failing,
            (true, _, Some(_)) => HealthState::Retrying,
            (true, _, None) if self.retrying > 0 => HealthState::Retrying,
            (true, _, None) => HealthState::Healthy,
        }
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

/// The health figures of webhooks: `$1` is the start of the window (ms), `where_clause`
/// picks the webhooks.
pub(crate) fn webhook_status_sql(where_clause: &str) -> String {
    format!(
        "SELECT w.id, w.name, n.name AS namespace, w.enabled, w.failing_since, \
         (SELECT CAST(d.last_status AS BIGINT) FROM deliveries d WHERE d.webhook_id = w.id \
            AND d.attempts > 0 ORDER BY d.updated_at DESC, d.id DESC LIMIT 1) AS last_status, \
         (SELECT d.last_error FROM deliveries d WHERE d.webhook_id = w.id \
            AND d.attempts > 0 ORDER BY d.updated_at DESC, d.id DESC LIMIT 1) AS last_error, \
         (SELECT MAX(d.updated_at) FROM deliveries d WHERE d.webhook_id = w.id \
            AND d.attempts > 0) AS last_attempt_at, \
         (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.created_at >= $1 \
            AND d.state = 'succeeded') AS succeeded, \
         (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.created_at >= $1 \
            AND d.state = 'failed') AS failed, \
         (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id \
            AND d.state = 'retrying') AS retrying, \
         (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'failed' \
            AND d.updated_at >= w.failing_since) AS failed_while_failing, \
         (SELECT a.action FROM activities a WHERE a.namespace = n.name AND a.webhook_id = w.id \
            AND a.action IN ('webhook.enabled', 'webhook.disabled', 'webhook.auto_disabled', \
                             'webhook.create') \
            ORDER BY a.id DESC LIMIT 1) AS last_switch \
         FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id WHERE {where_clause} \
         ORDER BY n.name, w.name"
    )
}

/// The webhooks a status query picks: one namespace's, or those needing attention in the
/// namespaces a user may see (`$2` the namespace name, or the member's user id / NULL).
pub(crate) const STATUS_OF_NAMESPACE: &str = "n.name = $2";
pub(crate) const STATUS_NEEDING_ATTENTION: &str = "(CAST($2 AS BIGINT) IS NULL OR n.team_id IN \
     (SELECT team_id FROM team_members WHERE user_id = $2)) \
     AND (w.failing_since IS NOT NULL OR NOT w.enabled)";

/// A page of a newest-first list; `next` is the cursor of the following page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The database itself: schema, health, and how processes sharing it find each other.
/// Each backend's own.
#[async_trait]
pub trait Engine: Send + Sync {
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;

    /// How long the store's own writer (SQLite's group committer) has been on the batch it
    /// is writing; `None` while it waits for work, or where there is no such writer.
    fn writer_busy_for(&self) -> Option<std::time::Duration> {
        None
    }
    /// For a database that several processes share: a task calling `wake` whenever any
    /// of them commits new deliveries, so idle workers start at once. `None` where the
    /// in-process wake after ingest is all there is (SQLite).
    fn wakeups(&self, _wake: Arc<dyn Fn() + Send + Sync>) -> Option<WakeupTask> {
        None
    }

    /// For a database that several processes share: registers this process and returns a
    /// task that heartbeats for it and gives back the claims of processes whose heartbeat
    /// stopped, calling `released` when it did. `None` where one process owns the database.
    async fn liveness(
        &self,
        _released: Arc<dyn Fn() + Send + Sync>,
    ) -> StoreResult<Option<WakeupTask>> {
        Ok(None)
    }

    // Operations.
    /// Whether every migration this binary knows is applied.
    async fn migrations_current(&self) -> StoreResult<bool>;
}

/// The delivery queue's hot path: ingest, claims, results and pruning. Each backend's
/// own, since this is where the databases really differ (group commit on SQLite,
/// `SKIP LOCKED` and `NOTIFY` on PostgreSQL).
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Stores an envelope's events and one pending delivery per matching enabled webhook,
    /// all in one transaction: when this returns Ok, nothing can be lost.
    async fn ingest(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
    ) -> StoreResult<IngestSummary>;
    /// Leases up to `limit` due deliveries until `lease_until`; a crashed worker's lease
    /// expires. Several processes may claim at once: each delivery goes to one of them.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Claim>> {
        self.claim_due_skipping(now, lease_until, limit, &[]).await
    }
    /// `claim_due`, passing over the deliveries of `skip_webhooks` (those that already have
    /// enough waiting in this process), earliest due first.
    async fn claim_due_skipping(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        skip_webhooks: &[i64],
    ) -> StoreResult<Vec<Claim>> {
        self.claim_due_in(now, lease_until, limit, ClaimScope::Skipping(skip_webhooks))
            .await
    }
    /// `claim_due` within `scope`, earliest due first.
    async fn claim_due_in(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        scope: ClaimScope<'_>,
    ) -> StoreResult<Vec<Claim>>;
    /// Writes the attempt and the delivery's next state; under a lost claim
    /// (`record.lease` no longer current) nothing is written and the answer is `Conflict`.
    async fn record_attempt(&self, record: AttemptRecord) -> StoreResult<()>;
    /// Deletes up to `batch` finished deliveries older than `before` or beyond the newest
    /// `keep_per_webhook` of their webhook, then events nothing refers to; returns how many
    /// deliveries went.
    async fn prune(
        &self,
        before: DateTime<Utc>,
        keep_per_webhook: i64,
        batch: i64,
    ) -> StoreResult<u64>;
}

/// What the dispatcher does with claims besides taking them; one implementation.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Everything a send needs, in one query: delivery, event, webhook and headers.
    async fn load_job(&self, delivery_id: i64) -> StoreResult<DeliveryJob>;
    /// Extends a claim right before its delivery is sent, since waiting for a free slot may
    /// outlast the lease. False when the claim is lost (the delivery was claimed again or
    /// is finished): then it must not be sent.
    async fn renew_lease(
        &self,
        delivery_id: i64,
        token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Ends a delivery as failed without sending it, with the reason; under a lost claim,
    /// `Conflict` as for `record_attempt`.
    async fn abandon(&self, delivery_id: i64, lease: Option<i64>, reason: &str) -> StoreResult<()>;
    /// Gives up the leases of deliveries this process will not finish (graceful shutdown),
    /// so another process or the next start sends them without waiting for the lease.
    async fn release(&self, delivery_ids: &[i64]) -> StoreResult<()>;
    /// Gives up every lease at once: for a process that alone owns its database (SQLite),
    /// at start, since no other process can hold them.
    async fn release_all_claims(&self) -> StoreResult<u64>;
    async fn queue_stats(&self) -> StoreResult<QueueStats>;
}

/// Other registries and their credentials (hashed).
#[async_trait]
pub trait Sources: Send + Sync {
    // Sources: other registries and their credentials (hashed).
    async fn create_source(&self, new: &NewSource, audit: &Audit) -> StoreResult<Source>;
    async fn list_sources(&self) -> StoreResult<Vec<Source>>;
    /// A source and its stored credential hash, for ingest; `None` when there is none.
    async fn source_credential(&self, name: &str) -> StoreResult<Option<(Source, String)>>;
    async fn delete_source(&self, name: &str, audit: &Audit) -> StoreResult<()>;
}

/// Namespaces, webhooks and headers. Every change writes its audit entry in the same
/// transaction, so the trail can neither miss a change nor record one that did not happen.
#[async_trait]
pub trait Hooks: Send + Sync {
    // Namespaces, webhooks and headers. Every change writes its audit entry in the same
    // transaction, so the trail can neither miss a change nor record one that did not happen.
    async fn list_namespaces(&self, visibility: &Visibility) -> StoreResult<Vec<Namespace>>;
    async fn get_namespace(&self, name: &NamespaceName) -> StoreResult<Namespace>;
    async fn create_namespace(
        &self,
        name: &NamespaceName,
        description: &str,
        team_id: Option<i64>,
        audit: &Audit,
    ) -> StoreResult<Namespace>;
    async fn delete_namespace(&self, name: &NamespaceName, audit: &Audit) -> StoreResult<()>;
    async fn list_webhooks(&self, namespace: &NamespaceName) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, namespace: &NamespaceName, id: i64) -> StoreResult<Webhook>;
    async fn create_webhook(
        &self,
        namespace: &NamespaceName,
        new: NewWebhook,
        audit: &Audit,
    ) -> StoreResult<Webhook>;
    async fn update_webhook(
        &self,
        namespace: &NamespaceName,
        id: i64,
        patch: WebhookPatch,
        audit: &Audit,
    ) -> StoreResult<Webhook>;
    async fn delete_webhook(
        &self,
        namespace: &NamespaceName,
        id: i64,
        audit: &Audit,
    ) -> StoreResult<()>;
    /// Returns true when the header was new.
    async fn set_header(
        &self,
        namespace: &NamespaceName,
        webhook_id: i64,
        header: StoredHeader,
        audit: &Audit,
    ) -> StoreResult<bool>;
    async fn delete_header(
        &self,
        namespace: &NamespaceName,
        webhook_id: i64,
        name: &str,
        audit: &Audit,
    ) -> StoreResult<()>;

    // Delivery reliability.
    /// A new signing secret; the current one keeps signing until `keep_previous_until`.
    async fn rotate_signing_secret(
        &self,
        namespace: &NamespaceName,
        id: i64,
        secret: Sealed,
        keep_previous_until: DateTime<Utc>,
        audit: &Audit,
    ) -> StoreResult<Webhook>;
    /// Tracks whether a webhook keeps failing; disables it (with an audit entry by
    /// "herald") on 410 Gone or after `disable_after` of nothing but failures. Returns
    /// true when it disabled the webhook.
    async fn webhook_health(
        &self,
        webhook_id: i64,
        health: Health,
        now: DateTime<Utc>,
        disable_after: std::time::Duration,
    ) -> StoreResult<bool>;
    /// A synthetic `ping` event and its one delivery to this webhook; returns the delivery id.
    async fn create_ping(
        &self,
        webhook_id: i64,
        registry_id: &str,
        repository: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
}

/// Events, the audit trail and deliveries as the API and UI read them.
#[async_trait]
pub trait History: Send + Sync {
    async fn list_events(&self, limit: i64, before: Option<i64>) -> StoreResult<Page<StoredEvent>>;
    /// An activity that is not itself a stored change (a retrigger).
    async fn record_activity(
        &self,
        namespace: &NamespaceName,
        webhook_id: Option<i64>,
        audit: &Audit,
    ) -> StoreResult<()>;
    async fn list_activities(
        &self,
        visibility: &Visibility,
        namespace: Option<&str>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<Activity>> {
        let filter = ActivityFilter {
            namespace,
            actor: None,
        };
        self.list_activities_by(visibility, filter, limit, before)
            .await
    }
    /// The audit trail `visibility` may read, narrowed by namespace and actor.
    async fn list_activities_by(
        &self,
        visibility: &Visibility,
        filter: ActivityFilter<'_>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<Activity>>;

    // Deliveries.
    async fn list_deliveries(
        &self,
        webhook_id: i64,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<DeliverySummary>> {
        self.list_deliveries_in(webhook_id, None, limit, before)
            .await
    }
    /// Deliveries newest first, only those in `state` when given.
    async fn list_deliveries_in(
        &self,
        webhook_id: i64,
        state: Option<DeliveryState>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<DeliverySummary>>;
    async fn get_delivery(&self, webhook_id: i64, delivery_id: i64) -> StoreResult<DeliveryDetail>;

    /// Per-hour figures of a webhook since `since`, for the UI's chart.
    async fn delivery_stats(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourStats>>;

    /// The health of each webhook of `namespace`, with figures since `since`.
    async fn webhook_statuses(
        &self,
        namespace: &NamespaceName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WebhookStatus>>;
    /// Webhooks failing or disabled, in the namespaces `visibility` may see; callers keep
    /// those whose state needs attention.
    async fn webhooks_needing_attention(
        &self,
        visibility: &Visibility,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WebhookStatus>>;
    /// Puts the failed deliveries created in `[since, until)` back in the queue.
    async fn requeue_failed(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

/// Users, API tokens, UI sessions and teams.
#[async_trait]
pub trait Accounts: Send + Sync {
    // Users and tokens.
    /// Creates the user with their personal team and namespace, all or nothing.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        email: Option<&str>,
        admin: bool,
    ) -> StoreResult<User>;
    /// The user and their password hash, for sign-in.
    async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, String)>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces a user's password hash (made by the password gate).
    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()>;
    async fn update_user(
        &self,
        username: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> StoreResult<User>;
    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        token_hash: &str,
    ) -> StoreResult<ApiToken>;
    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<ApiToken>>;
    async fn revoke_token(&self, user_id: i64, token_id: i64) -> StoreResult<()>;
    /// The user holding an unrevoked token with this hash; marks the token used.
    async fn authenticate_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>>;

    // Teams.
    /// Teams visible under `visibility`, personal teams left out; members included.
    async fn list_teams(&self, visibility: &Visibility) -> StoreResult<Vec<Team>>;
    async fn get_team(&self, name: &str) -> StoreResult<Team>;
    async fn create_team(
        &self,
        name: &str,
        description: &str,
        owner_id: i64,
        audit: &Audit,
    ) -> StoreResult<Team>;
    /// Adds a member or changes their role; true when added. A team keeps at least one owner.
    async fn set_member(
        &self,
        team: &str,
        user_id: i64,
        role: Role,
        audit: &Audit,
    ) -> StoreResult<bool>;
    async fn remove_member(&self, team: &str, user_id: i64, audit: &Audit) -> StoreResult<()>;
    async fn role_in_team(&self, team_id: i64, user_id: i64) -> StoreResult<Option<Role>>;

    // Web UI sessions.
    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The user and CSRF token of an unexpired session of an enabled user.
    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(User, String)>>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
}

/// Settings Herald keeps in the database.
#[async_trait]
pub trait Settings: Send + Sync {
    /// The check value of the secret key recorded for this database; records `candidate`
    /// first if there is none. Returns the recorded one.
    async fn record_key_check(&self, candidate: &str) -> StoreResult<String>;
    /// Whether a key check is recorded yet (databases from before check values had none).
    async fn has_key_check(&self) -> StoreResult<bool>;
    /// One sealed secret from the database, if any: a database from before key checks is
    /// checked by opening it.
    async fn any_sealed_secret(&self) -> StoreResult<Option<Sealed>>;
}

/// Everything Herald stores, as one object the rest of Herald holds (`Arc<dyn Store>`).
/// The shared traits are implemented once for every [`sql::Backend`] (in `sql/`); `Engine`
/// and `DeliveryQueue` by each backend.
pub trait Store:
    Engine + DeliveryQueue + Leases + Sources + Hooks + History + Accounts + Settings + 'static
{
}

impl<T> Store for T where
    T: Engine + DeliveryQueue + Leases + Sources + Hooks + History + Accounts + Settings + 'static
{
}

/// The answer to a write under a claim that is no longer current.
pub(crate) fn lease_lost(delivery_id: i64) -> StoreError {
    StoreError::Conflict(format!(
        "the claim on delivery {delivery_id} was lost: it expired and the delivery was claimed again"
    ))
}

/// An enabled webhook as ingest weighs it.
pub(crate) struct Candidate {
    pub id: i64,
    pub filters: std::sync::Arc<CompiledFilters>,
}

impl Candidate {
    /// Filters are stored as JSON, NULL meaning the defaults.
    pub(crate) fn new(id: i64, filters: Option<&str>) -> Self {
        Self {
            id,
            filters: CompiledFilters::cached(filters),
        }
    }
}

pub(crate) fn parse_filters(json: Option<&str>) -> Filters {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

pub(crate) fn filters_json(filters: &Filters) -> Option<String> {
    (!filters.is_default()).then(|| serde_json::to_string(filters).unwrap_or_default())
}

/// An event's fate: its status, the reason, and the webhooks that get a delivery.
/// `candidates` is `None` when the event's namespace does not exist.
pub(crate) fn decide(
    event: &IncomingEvent,
    candidates: Option<&[Candidate]>,
) -> (&'static str, Option<String>, Vec<i64>) {
    let default_skip = match &event.disposition {
        Disposition::Ignore(r) => return ("ignored", Some(r.clone()), Vec::new()),
        Disposition::Skip(r) => Some(r.clone()),
        Disposition::Deliver => None,
    };
    let Some(candidates) = candidates else {
        let ns = event
            .namespace
            .as_ref()
            .map(|n| n.as_str())
            .unwrap_or_default();
        return (
            "skipped",
            default_skip.or_else(|| Some(format!("namespace '{ns}' does not exist"))),
            Vec::new(),
        );
    };
    let matching: Vec<i64> = match &event.facts {
        Some(facts) => candidates
            .iter()
            .filter(|c| c.filters.matches(facts))
            .map(|c| c.id)
            .collect(),
        None => Vec::new(),
    };
    match (matching.is_empty(), default_skip) {
        (false, _) => ("accepted", None, matching),
        (true, Some(reason)) => ("skipped", Some(reason), Vec::new()),
        (true, None) if !candidates.is_empty() => (
            "skipped",
            Some("no enabled webhook's filters match".into()),
            Vec::new(),
        ),
        (true, None) => ("accepted", None, Vec::new()),
    }
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
