//! Storage: one `Store` trait that the rest of Herald talks to, so the embedded SQLite
//! default and a server database can sit behind the same contract.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::hooks::filters::Filters;
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

    pub fn parse(s: &str) -> Self {
        match s {
            "retrying" => Self::Retrying,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
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
    pub state: DeliveryState,
    pub webhook: Webhook,
    pub event_action: String,
    pub event_body: String,
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

/// A page of a newest-first list; `next` is the cursor of the following page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;

    /// Stores an envelope's events and one pending delivery per matching enabled webhook,
    /// all in one transaction: when this returns Ok, nothing can be lost.
    async fn ingest(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
    ) -> StoreResult<IngestSummary>;
    async fn list_events(&self, limit: i64, before: Option<i64>) -> StoreResult<Page<StoredEvent>>;

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
    ) -> StoreResult<Page<Activity>>;

    // Deliveries.
    async fn list_deliveries(
        &self,
        webhook_id: i64,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<DeliverySummary>>;
    async fn get_delivery(&self, webhook_id: i64, delivery_id: i64) -> StoreResult<DeliveryDetail>;
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
    /// Extends a claim right before its delivery is sent, since waiting for a free slot may
    /// outlast the lease. False when the claim is lost (the delivery was claimed again or
    /// is finished): then it must not be sent.
    async fn renew_lease(
        &self,
        delivery_id: i64,
        token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    async fn load_job(&self, delivery_id: i64) -> StoreResult<DeliveryJob>;
    /// Writes the attempt and the delivery's next state; under a lost claim
    /// (`record.lease` no longer current) nothing is written and the answer is `Conflict`.
    async fn record_attempt(&self, record: AttemptRecord) -> StoreResult<()>;
    /// Ends a delivery as failed without sending it, with the reason; under a lost claim,
    /// `Conflict` as for `record_attempt`.
    async fn abandon(&self, delivery_id: i64, lease: Option<i64>, reason: &str) -> StoreResult<()>;
    /// For a database that several processes share: a task calling `wake` whenever any
    /// of them commits new deliveries, so idle workers start at once. `None` where the
    /// in-process wake after ingest is all there is (SQLite).
    fn wakeups(&self, _wake: Arc<dyn Fn() + Send + Sync>) -> Option<WakeupTask> {
        None
    }

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

    /// Per-hour figures of a webhook since `since`, for the UI's chart.
    async fn delivery_stats(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourStats>>;

    // Operations.
    /// Whether every migration this binary knows is applied.
    async fn migrations_current(&self) -> StoreResult<bool>;
    async fn queue_stats(&self) -> StoreResult<QueueStats>;
    /// Gives up the leases of deliveries this process will not finish (graceful shutdown),
    /// so another process or the next start sends them without waiting for the lease.
    async fn release(&self, delivery_ids: &[i64]) -> StoreResult<()>;
    /// Deletes up to `batch` finished deliveries older than `before` or beyond the newest
    /// `keep_per_webhook` of their webhook, then events nothing refers to; returns how many
    /// deliveries went.
    async fn prune(
        &self,
        before: DateTime<Utc>,
        keep_per_webhook: i64,
        batch: i64,
    ) -> StoreResult<u64>;

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
    /// Puts the failed deliveries created in `[since, until)` back in the queue.
    async fn requeue_failed(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// A synthetic `ping` event and its one delivery to this webhook; returns the delivery id.
    async fn create_ping(
        &self,
        webhook_id: i64,
        registry_id: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
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
    pub filters: Filters,
}

impl Candidate {
    /// Filters are stored as JSON, NULL meaning the defaults.
    pub(crate) fn new(id: i64, filters: Option<&str>) -> Self {
        Self {
            id,
            filters: parse_filters(filters),
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
