//! Deliveries and the rules about them that need no I/O: states, claims, outcomes, the
//! ingest decision and the auto-disable verdict.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::events::{Disposition, EventFacts, IncomingEvent};
use crate::domain::filters::CompiledFilters;
use crate::domain::model::Webhook;

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
    /// Shared: a hand-off gives every delivery of a webhook the one cached copy.
    pub webhook: std::sync::Arc<Webhook>,
    pub event_action: String,
    /// Shared by the deliveries of one event that a hand-off starts.
    pub event_body: std::sync::Arc<str>,
    /// What ingest read from the event, whichever registry sent it.
    pub event: std::sync::Arc<EventRecord>,
}

impl DeliveryJob {
    /// The job of a delivery born claimed, as the ingest that made it knows it: new and
    /// due, for `event`, with the webhook's settings at the revision ingest read and the
    /// health that let it be handed off (see `Candidate::new`).
    pub fn born(claim: &Claim, webhook: std::sync::Arc<Webhook>, event: &BornEvent) -> Self {
        Self {
            delivery_id: claim.delivery_id,
            attempts_so_far: 0,
            automatic_attempts: 0,
            next_attempt_at: Some(event.record.received_at),
            state: DeliveryState::Pending,
            webhook,
            event_action: event.record.action.clone(),
            event_body: event.body.clone(),
            event: event.record.clone(),
        }
    }
}

/// An ingested event as the deliveries born of it share it.
#[derive(Debug, Clone)]
pub struct BornEvent {
    pub body: std::sync::Arc<str>,
    pub record: std::sync::Arc<EventRecord>,
}

impl BornEvent {
    /// What ingest stored of `event`, received at `received_at`; times to the millisecond,
    /// as stored.
    pub fn new(event: &IncomingEvent, received_at: DateTime<Utc>) -> Self {
        let stored =
            |t: DateTime<Utc>| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
        Self {
            body: event.body.as_str().into(),
            record: std::sync::Arc::new(EventRecord {
                registry_id: event.registry_id.clone(),
                action: event.action.clone().unwrap_or_default(),
                repository: event.repository.clone(),
                tag: event.tag.clone(),
                digest: event.digest.clone(),
                media_type: event.media_type.clone(),
                actor: event.actor.clone(),
                received_at: stored(received_at),
                source: event.source.clone(),
                occurred_at: event.occurred_at.map(stored),
                // Read from the manifest after the commit, if at all.
                facts: None,
                synthesized: event.synthesized.clone(),
            }),
        }
    }
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
    /// The source's name; `None` for the default endpoint.
    pub source: Option<String>,
    /// When the registry says it happened, if it said so readably.
    pub occurred_at: Option<DateTime<Utc>>,
    /// What was pushed, once read from the manifest.
    pub facts: Option<crate::domain::artifact::ArtifactFacts>,
    /// Why a reconcile made this event up; `None` when the registry sent it.
    pub synthesized: Option<String>,
}

/// A due delivery leased by `claim_due`. Every claim of a delivery gets a new `token`, and
/// writes under an older one are refused, so a worker that stalled past its lease can
/// neither send during a newer claim nor overwrite its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub token: i64,
    /// The webhook's rate limit as the claim found it, so the dispatcher learns it with
    /// no query of its own.
    pub rate_limit: Option<crate::domain::control::RateLimit>,
    /// The webhook delivers in order (`ordering: fifo`).
    pub fifo: bool,
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

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

impl Outcome {
    /// The delivery's state after an attempt with this outcome, and when it is tried next.
    pub fn next_state(self) -> (DeliveryState, Option<DateTime<Utc>>) {
        match self {
            Outcome::Succeeded => (DeliveryState::Succeeded, None),
            Outcome::RetryAt(at) => (DeliveryState::Retrying, Some(at)),
            Outcome::Failed => (DeliveryState::Failed, None),
        }
    }
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
    /// The status (`skipped`, `ignored`) and reason of each stored event that made no
    /// delivery, as committed: what the metrics count.
    #[serde(skip)]
    pub not_delivered: Vec<(&'static str, String)>,
    /// The deliveries born claimed by this process (see [`HandOff`]), committed leased to it.
    #[serde(skip)]
    pub handed_off: Vec<BornClaimed>,
}

/// A delivery born claimed, with what its send needs besides the event and the webhook's
/// settings, which the dispatcher has: so a hand-off reads nothing back from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BornClaimed {
    pub claim: Claim,
    /// Which event it is for: its index in the events given to ingest.
    pub event: usize,
    /// The webhook's settings revision as the ingest transaction read it. A copy of the
    /// settings at another revision is stale and not used for it.
    pub revision: i64,
}

/// A dispatcher's offer to take deliveries straight from the ingest commit that creates
/// them, leased to it in that same transaction ("born claimed"): no claim commit and no
/// candidate query stand between a push and its send. The store asks `take` once per
/// delivery, inside the transaction, and only for a webhook whose rules allow it (not fifo,
/// no rate limit, circuit closed, no failure counted); it says yes while the dispatcher has
/// room for that webhook. A delivery not taken is committed unleased and claimed as ever,
/// so the offer changes who sends first, never whether a delivery is stored.
pub trait HandOff: Send + Sync {
    fn take(&self, webhook_id: i64) -> bool;
    /// The end of the lease of what is taken.
    fn lease_until(&self) -> DateTime<Utc>;
}

/// The token of a delivery born claimed: its first lease, as a claim's `lease_token + 1`
/// would give a new row.
pub const BORN_CLAIMED_TOKEN: i64 = 1;

impl IngestSummary {
    /// Counts a newly stored event under the status and reason [`decide`] gave it.
    pub(crate) fn count(&mut self, status: &'static str, reason: Option<&str>) {
        match status {
            "ignored" => self.ignored += 1,
            "skipped" => self.skipped += 1,
            _ => self.accepted += 1,
        }
        if let (Some(reason), "ignored" | "skipped") = (reason, status) {
            self.not_delivered.push((status, reason.to_string()));
        }
    }
}

/// An enabled webhook as ingest weighs it.
pub(crate) struct Candidate {
    pub recipient: Recipient,
    pub filters: std::sync::Arc<CompiledFilters>,
    /// Its format, which narrows what a deploy trigger gets.
    pub format: crate::domain::format::Format,
}

/// A webhook an event gets a delivery for. `fifo` is stored on the delivery, so that
/// only fifo webhooks' deliveries are kept in the index their order is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recipient {
    pub webhook_id: i64,
    pub fifo: bool,
    /// Its deliveries may be born claimed ([`HandOff`]): not fifo, no rate limit and in
    /// perfect health, so no rule the claim query applies is passed over.
    pub may_hand_off: bool,
    /// Its settings' revision, which changes with each change of its settings.
    pub revision: i64,
}

impl Candidate {
    /// Filters are stored as JSON, NULL meaning the defaults; the format by its name.
    /// `plain`: no rate limit and in perfect health (no failure counted, circuit closed),
    /// the health a send of a handed-off delivery assumes.
    pub(crate) fn new(
        id: i64,
        fifo: bool,
        plain: bool,
        revision: i64,
        filters: Option<&str>,
        format: &str,
    ) -> Self {
        Self {
            recipient: Recipient {
                webhook_id: id,
                fifo,
                may_hand_off: plain && !fifo,
                revision,
            },
            filters: CompiledFilters::cached(filters),
            format: crate::domain::format::Format::named(format).unwrap_or_default(),
        }
    }

    /// Whether it gets a delivery for an event with these facts.
    pub(crate) fn wants(&self, facts: &EventFacts) -> bool {
        self.filters.matches(facts) && self.format.wants(facts)
    }

    /// Whether it may get one once the manifest's facts are read (see
    /// [`CompiledFilters::matches_before_facts`]).
    pub(crate) fn wants_before_facts(&self, facts: &EventFacts) -> bool {
        self.filters.matches_before_facts(facts) && self.format.wants(facts)
    }

    /// Whether it gets Herald's operational events of `kind`: never as a deploy trigger.
    pub(crate) fn wants_operational(&self, kind: crate::domain::events::Action) -> bool {
        !self.format.triggers_deploy() && self.filters.wants_operational(kind)
    }
}

/// Why an event whose webhooks' filters would take it went to none of them: they are all
/// deploy triggers, and it is not a push of a tagged manifest.
pub const DEPLOY_ONLY_TAGGED_PUSHES: &str = "the only webhooks whose filters match are deploy \
     triggers (flux, keel, github-dispatch, gitlab-trigger, dockerhub), sent only for pushes \
     of tagged manifests";

/// An event's fate: its status, the reason, and the webhooks that get a delivery.
/// `candidates` is `None` when the event's namespace does not exist.
pub(crate) fn decide(
    event: &IncomingEvent,
    candidates: Option<&[Candidate]>,
) -> (&'static str, Option<String>, Vec<Recipient>) {
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
    // A webhook that filters on what was pushed waits for the manifest's facts when they
    // are to be read: the reading decides its delivery, not ingest.
    let pending = event.facts_pending();
    let mut waiting = false;
    let matching: Vec<Recipient> = match &event.facts {
        Some(facts) => candidates
            .iter()
            .filter(|c| {
                if pending && c.filters.needs_facts() {
                    waiting |= c.wants_before_facts(facts);
                    return false;
                }
                c.wants(facts)
            })
            .map(|c| c.recipient)
            .collect(),
        None => Vec::new(),
    };
    // Filters that match but formats that do not: the reason says so, not "no filter".
    let only_deploy = matching.is_empty()
        && !waiting
        && event
            .facts
            .as_ref()
            .is_some_and(|facts| candidates.iter().any(|c| c.filters.matches(facts)));
    match (matching.is_empty() && !waiting, default_skip) {
        (false, _) => ("accepted", None, matching),
        (true, Some(reason)) => ("skipped", Some(reason), Vec::new()),
        (true, None) if only_deploy => (
            "skipped",
            Some(DEPLOY_ONLY_TAGGED_PUSHES.into()),
            Vec::new(),
        ),
        (true, None) if !candidates.is_empty() => (
            "skipped",
            Some("no enabled webhook's filters match".into()),
            Vec::new(),
        ),
        (true, None) => ("accepted", None, Vec::new()),
    }
}
