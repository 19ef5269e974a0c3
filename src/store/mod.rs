//! Storage: one `Store` trait that the rest of Herald talks to, so the embedded SQLite
//! default and a server database can sit behind the same contract.

pub mod postgres;
pub(crate) mod sql;
pub mod sqlite;
pub(crate) mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::artifact::ArtifactFacts;
use crate::domain::events::IncomingEvent;
use crate::domain::filters::Filters;
use crate::domain::names::NamespaceName;
use crate::domain::registry::{FactsRead, PendingFacts, ReconcileStatus};
use crate::secrets::Sealed;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The store speaks the domain's types; they are named from here too.
use crate::domain::delivery::*;
use crate::domain::model::*;

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

/// What `Store::wakeups` returns: a task that runs for the life of the process.
pub type WakeupTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The health figures of webhooks: `$1` is the start of the window (ms), `where_clause`
/// picks the webhooks.
pub(crate) fn webhook_status_sql(where_clause: &str) -> String {
    format!(
        "SELECT w.id, w.name, n.name AS namespace, w.enabled, w.failing_since, \
         w.circuit_state, w.circuit_open_until, \
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
     AND (w.failing_since IS NOT NULL OR NOT w.enabled OR w.circuit_state <> 'closed')";

/// The database itself: schema, health, and how processes sharing it find each other.
/// Each backend's own.
#[async_trait]
pub trait Engine: Send + Sync {
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;

    /// How long the store's own writer (its group committer) has been on the batch it
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
    /// How many processes claim deliveries from this database, this one included (1 where
    /// one process owns it): each keeps a webhook's rate limit for its share.
    fn claiming_processes(&self) -> usize {
        1
    }
    /// Whether every migration this binary knows is applied.
    async fn migrations_current(&self) -> StoreResult<bool>;
}

/// The delivery queue's hot path: ingest, claims and results. Each backend's
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
    ) -> StoreResult<IngestSummary> {
        self.ingest_handing_off(events, now, None).await
    }
    /// `ingest`, with the deliveries `hand_off` takes committed leased to this process
    /// (`IngestSummary::handed_off`) in the same transaction.
    async fn ingest_handing_off(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
        hand_off: Option<Arc<dyn HandOff>>,
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
}

/// The retention sweep's deletes; one implementation (`sql/retention.rs`).
#[async_trait]
pub trait Retention: Send + Sync {
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
    /// The jobs of those of `delivery_ids` that exist, in id order, in one query.
    async fn load_jobs(&self, delivery_ids: &[i64]) -> StoreResult<Vec<DeliveryJob>>;
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
    /// A source's registry access (`None`: no such source).
    async fn registry_access(&self, name: &str) -> StoreResult<Option<RegistryAccess>>;
    /// Replaces a source's registry access as a whole.
    async fn set_registry_access(
        &self,
        name: &str,
        access: &RegistryAccess,
        audit: &Audit,
    ) -> StoreResult<Source>;
    /// The sources that read their events from NATS, with where and how.
    async fn nats_intakes(&self) -> StoreResult<Vec<(Source, NatsIntake)>>;
    /// Sets (or, with `None`, removes) where a source reads its events from NATS.
    async fn set_nats_intake(
        &self,
        name: &str,
        intake: Option<&NatsIntake>,
        audit: &Audit,
    ) -> StoreResult<Source>;
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
    /// "herald") on 410 Gone or after `disable_after` of nothing but failures, and moves
    /// its circuit breaker by `circuit` (`Circuit::after_attempt`), in one write. Says
    /// whether it disabled the webhook and whether this attempt opened the circuit.
    async fn webhook_health(
        &self,
        webhook_id: i64,
        health: Health,
        now: DateTime<Utc>,
        disable_after: std::time::Duration,
        circuit: crate::domain::control::CircuitRule,
    ) -> StoreResult<crate::domain::control::HealthChange> {
        self.webhook_health_after(webhook_id, None, health, now, disable_after, circuit)
            .await
    }
    /// `webhook_health` after an attempt of `delivery_id`, announcing in the same
    /// transaction what changed (`webhook.disabled`, `webhook.recovered`) to the webhooks
    /// subscribed, unless that delivery carried an operational event itself.
    async fn webhook_health_after(
        &self,
        webhook_id: i64,
        delivery_id: Option<i64>,
        health: Health,
        now: DateTime<Utc>,
        disable_after: std::time::Duration,
        circuit: crate::domain::control::CircuitRule,
    ) -> StoreResult<crate::domain::control::HealthChange>;
    /// Stores an operational event and a delivery to each webhook subscribed to its kind
    /// (never the webhook it is about); `None` when there is nothing to announce (see
    /// `Announcement`). Returns the event's id.
    async fn announce(
        &self,
        announcement: &crate::domain::operational::Announcement,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>>;
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
    /// The deliveries the events with ids in `first..=last` made (at most `limit`, by
    /// event then delivery id), with their webhook's name and namespace.
    async fn deliveries_of_events(
        &self,
        first: i64,
        last: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventDelivery>>;
    /// When the default endpoint (first, `source` `None`) and each source last sent an event.
    async fn last_events_by_source(&self) -> StoreResult<Vec<SourceActivity>>;
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

/// The webhooks' health in figures, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFigures {
    pub enabled: i64,
    pub disabled: i64,
    /// Enabled, and nothing but failures since some time.
    pub failing: i64,
    /// Open or half-open circuit.
    pub circuit_open: i64,
    /// The failing webhooks that have failed longest: (id, namespace, since when).
    pub failing_longest: Vec<(i64, String, DateTime<Utc>)>,
}

/// What `/metrics` reads of the webhooks, at scrape time (shared by every process).
#[async_trait]
pub trait HealthFigures: Send + Sync {
    /// The counts, and at most `failing_listed` failing webhooks, longest failing first.
    async fn webhook_figures(&self, failing_listed: i64) -> StoreResult<WebhookFigures>;
}

/// Sends asked for where no dispatcher runs (the command line's retrigger and ping), for a
/// serving process to make.
#[async_trait]
pub trait SendRequests: Send + Sync {
    /// Asks a serving process to send `delivery_id` now, as a manual attempt.
    async fn request_send(&self, delivery_id: i64) -> StoreResult<()>;
    /// Takes up to `limit` asked-for sends, oldest first: each is taken by one process.
    async fn take_send_requests(&self, limit: i64) -> StoreResult<Vec<i64>>;
}

/// What Herald learns by reading registries: the facts of manifest pushes, the tag map
/// that events imply, and each source's reconcile (`sql/reads.rs`).
#[async_trait]
pub trait RegistryReads: Send + Sync {
    /// Up to `limit` events whose facts are still to be read, oldest first.
    async fn pending_facts(&self, limit: i64) -> StoreResult<Vec<PendingFacts>>;
    /// A manifest's facts as read before (digests are immutable).
    async fn cached_manifest(&self, digest: &str) -> StoreResult<Option<ArtifactFacts>>;
    /// The tags of `source`'s `repository` that point at `digest`, as Herald knows them.
    async fn tags_of_digest(
        &self,
        source: &str,
        repository: &str,
        digest: &str,
    ) -> StoreResult<Vec<String>>;
    /// Records what reads of facts came to, in one transaction (one commit for a batch,
    /// not two per push): each event's facts or why they could not be read, the manifests
    /// read kept by digest, and the deliveries of the webhooks that waited for them:
    /// pending where the facts match, failed (saying why) where they could not be read.
    /// For each read, the deliveries made, or `None` when the event was no longer waiting
    /// (another process did it first).
    async fn complete_facts(
        &self,
        reads: &[FactsRead],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Option<usize>>>;
    /// `source`'s tags of `repository` (tag, digest), by tag.
    async fn known_tags(
        &self,
        source: &str,
        repository: &str,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Replaces `source`'s tags of `repository` without an event (a first reconcile
    /// learning the registry).
    async fn learn_tags(
        &self,
        source: &str,
        repository: &str,
        tags: &[(String, String)],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Up to `limit` repositories of `source`'s tag map after `after` and before `before`
    /// (either open), by name.
    async fn known_repositories(
        &self,
        source: &str,
        after: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
    /// Asks for a reconcile of `source`.
    async fn request_reconcile(&self, source: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// Takes `source`'s reconcile for `owner` until `lease_until` when one is asked for, is
    /// due (none finished since `due_before`), or was left unfinished by a process that
    /// stopped; a run in another's lease is not taken. The run resumes at its cursor.
    async fn claim_reconcile(
        &self,
        source: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        due_before: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<ReconcileStatus>>;
    /// Saves a running reconcile's progress and extends its lease; `Conflict` when the
    /// lease was lost.
    async fn save_reconcile(
        &self,
        status: &ReconcileStatus,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Ends a run: learned (when it finished) and idle, or stopped with the error.
    async fn finish_reconcile(
        &self,
        source: &str,
        owner: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn reconcile_status(&self, source: &str) -> StoreResult<Option<ReconcileStatus>>;
    /// Records the registry instance that sent `source`'s events; when it differs from the
    /// last one seen (the registry restarted, and its queue of events is gone) a reconcile
    /// is asked for and the answer is true.
    async fn note_instance(
        &self,
        source: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

/// Everything Herald stores, as one object the rest of Herald holds (`Arc<dyn Store>`).
/// The shared traits are implemented once for every [`sql::Backend`] (in `sql/`); `Engine`
/// and `DeliveryQueue` by each backend.
pub trait Store:
    Engine
    + DeliveryQueue
    + Leases
    + Retention
    + Sources
    + Hooks
    + History
    + Accounts
    + Settings
    + SendRequests
    + HealthFigures
    + RegistryReads
    + 'static
{
}

impl<T> Store for T where
    T: Engine
        + DeliveryQueue
        + Leases
        + Retention
        + Sources
        + Hooks
        + History
        + Accounts
        + Settings
        + SendRequests
        + HealthFigures
        + RegistryReads
        + 'static
{
}

/// The answer to a write under a claim that is no longer current.
pub(crate) fn lease_lost(delivery_id: i64) -> StoreError {
    StoreError::Conflict(format!(
        "the claim on delivery {delivery_id} was lost: it expired and the delivery was claimed again"
    ))
}

pub(crate) fn parse_filters(json: Option<&str>) -> Filters {
    json.and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default()
}

pub(crate) fn filters_json(filters: &Filters) -> Option<String> {
    (!filters.is_default()).then(|| serde_json::to_string(filters).unwrap_or_default())
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
