//! Registry events as Herald understands them, whichever registry sent them.

use crate::domain::names::NamespaceName;

/// What happened. The first four are distribution's own words; the next come from
/// registries that report more (GitLab's renames, zot, Harbor) and are never in the default
/// filter; the last four are Herald's own operational events, which no registry can send
/// and which only webhooks naming them get (see `domain::operational`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Push,
    Pull,
    Mount,
    Delete,
    ScanCompleted,
    ScanFailed,
    ScanStopped,
    QuotaExceeded,
    QuotaWarning,
    LintFailed,
    RepositoryCreated,
    Replication,
    TagRetention,
    Rename,
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
    #[serde(rename = "webhook.circuit_opened")]
    WebhookCircuitOpened,
    #[serde(rename = "webhook.recovered")]
    WebhookRecovered,
    #[serde(rename = "delivery.exhausted")]
    DeliveryExhausted,
}

impl Action {
    /// What registries report (the operational kinds are not among them).
    pub const ALL: [Action; 14] = [
        Self::Push,
        Self::Pull,
        Self::Mount,
        Self::Delete,
        Self::ScanCompleted,
        Self::ScanFailed,
        Self::ScanStopped,
        Self::QuotaExceeded,
        Self::QuotaWarning,
        Self::LintFailed,
        Self::RepositoryCreated,
        Self::Replication,
        Self::TagRetention,
        Self::Rename,
    ];

    /// Herald's own events; their names are a contract with receivers.
    pub const OPERATIONAL: [Action; 4] = [
        Self::WebhookDisabled,
        Self::WebhookCircuitOpened,
        Self::WebhookRecovered,
        Self::DeliveryExhausted,
    ];

    /// A registry action by name; never an operational kind, so no registry can pose as
    /// Herald.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// An operational kind by name (`webhook.disabled`, ...).
    pub fn parse_operational(s: &str) -> Option<Self> {
        Self::OPERATIONAL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn is_operational(self) -> bool {
        Self::OPERATIONAL.contains(&self)
    }

    /// The actions a notification envelope may carry: distribution's four, and `rename`
    /// from GitLab's registry (a fork of distribution that sends the same envelope).
    pub fn in_envelopes(self) -> bool {
        matches!(
            self,
            Self::Push | Self::Pull | Self::Mount | Self::Delete | Self::Rename
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Pull => "pull",
            Self::Mount => "mount",
            Self::Delete => "delete",
            Self::ScanCompleted => "scan_completed",
            Self::ScanFailed => "scan_failed",
            Self::ScanStopped => "scan_stopped",
            Self::QuotaExceeded => "quota_exceeded",
            Self::QuotaWarning => "quota_warning",
            Self::LintFailed => "lint_failed",
            Self::RepositoryCreated => "repository_created",
            Self::Replication => "replication",
            Self::TagRetention => "tag_retention",
            Self::Rename => "rename",
            Self::WebhookDisabled => "webhook.disabled",
            Self::WebhookCircuitOpened => "webhook.circuit_opened",
            Self::WebhookRecovered => "webhook.recovered",
            Self::DeliveryExhausted => "delivery.exhausted",
        }
    }
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Relevant: every enabled webhook of its namespace gets a delivery.
    Deliver,
    /// A valid event that triggers no webhook (a blob push, a pull).
    Skip(String),
    /// An event Herald cannot use; kept with the reason.
    Ignore(String),
}

/// One event of an envelope, classified, with its original JSON.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    pub registry_id: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub namespace: Option<NamespaceName>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub actor: Option<String>,
    /// The event object exactly as the registry sent it: this is the webhook body.
    pub body: String,
    pub disposition: Disposition,
    /// What per-webhook filters look at; `None` for ignored events.
    pub facts: Option<EventFacts>,
    /// The source it came from (`None`: the default distribution source at
    /// `/v2/webhooks/events`).
    pub source: Option<String>,
    /// Set by a source's translation when it knows better than the media type.
    pub manifest_hint: Option<bool>,
    /// When the registry says it happened (distribution's `timestamp`, zot's `time`,
    /// Harbor's `occur_at`), if it says so in a form Herald can read.
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether Herald can read this event's registry: then a manifest push's facts are
    /// read from the manifest, and the event keeps the source's tag map.
    pub registry_readable: bool,
    /// Why a reconcile made this event up; `None` when the registry sent it.
    pub synthesized: Option<String>,
    /// distribution's `source.instanceID`: a new one means the registry restarted.
    pub instance_id: Option<String>,
}

/// How an event changes the tag -> digest map of its source's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagUpdate<'a> {
    /// A tag now points at a digest (a tagged manifest push).
    Set {
        repository: &'a str,
        tag: &'a str,
        digest: &'a str,
    },
    /// A tag is gone (a tag delete).
    Remove { repository: &'a str, tag: &'a str },
    /// Every tag of a digest is gone (a manifest deleted by digest).
    RemoveDigest {
        repository: &'a str,
        digest: &'a str,
    },
}

/// A registry's time, RFC 3339 (distribution writes nanoseconds and a zone) or, without a
/// zone, read as UTC.
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
                .map(|n| n.and_utc())
        })
}

/// The most events one payload may become. Registries send one event per request (an
/// envelope may hold a few); a payload that would make more is stored once, ignored, with
/// the reason (see [`expansion_refused`]).
pub const MAX_EVENTS_PER_PAYLOAD: usize = 1_000;

/// The most bytes of event bodies one payload may become: a Harbor payload is every
/// event's body, so a payload of many artifacts would be stored (and held) many times over.
pub const MAX_EVENT_BYTES_PER_PAYLOAD: usize = 16 * 1024 * 1024;

/// Why a payload that would make `events` events of `bytes` bytes in all is not expanded,
/// or `None` when it is within the bounds.
pub fn expansion_refused(events: usize, bytes: usize) -> Option<String> {
    if events > MAX_EVENTS_PER_PAYLOAD {
        Some(format!(
            "the payload is too large to split: it holds {events} events, more than the \
             {MAX_EVENTS_PER_PAYLOAD} one payload may make; stored once as received, not \
             delivered"
        ))
    } else if bytes > MAX_EVENT_BYTES_PER_PAYLOAD {
        Some(format!(
            "the payload is too large to split: it would make {events} events of {bytes} \
             bytes in all, more than the {MAX_EVENT_BYTES_PER_PAYLOAD} one payload may make; \
             stored once as received, not delivered"
        ))
    } else {
        None
    }
}

impl IncomingEvent {
    /// Whether the manifest's facts are to be read: a manifest push (with its digest) that
    /// Herald can read from the registry.
    pub fn facts_pending(&self) -> bool {
        self.registry_readable
            && self.digest.is_some()
            && !matches!(self.disposition, Disposition::Ignore(_))
            && self
                .facts
                .as_ref()
                .is_some_and(|f| f.action == Action::Push && f.is_manifest)
    }

    /// What this event does to its source's tag map, kept for registries Herald can read
    /// (the reconcile compares it with the registry's tags).
    pub fn tag_update(&self) -> Option<TagUpdate<'_>> {
        if !self.registry_readable || matches!(self.disposition, Disposition::Ignore(_)) {
            return None;
        }
        let facts = self.facts.as_ref()?;
        let repository = self.repository.as_deref()?;
        match (facts.action, self.tag.as_deref(), self.digest.as_deref()) {
            (Action::Push, Some(tag), Some(digest)) if facts.is_manifest => Some(TagUpdate::Set {
                repository,
                tag,
                digest,
            }),
            (Action::Delete, Some(tag), _) => Some(TagUpdate::Remove { repository, tag }),
            (Action::Delete, None, Some(digest)) => {
                Some(TagUpdate::RemoveDigest { repository, digest })
            }
            _ => None,
        }
    }

    /// The name the tag map keeps this event's source under.
    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(DEFAULT_SOURCE)
    }

    /// A payload stored once, as received, ignored for `reason`: what Herald keeps of a
    /// payload it will not (or cannot) split into events. It has no id, so nothing is
    /// deduplicated against it.
    pub fn ignored_payload(body: String, source: Option<&str>, reason: String) -> Self {
        IncomingEvent {
            disposition: Disposition::Ignore(reason),
            ..Self::blank(body, source)
        }
    }

    /// An event of which nothing is known yet but its body and source, to be filled in.
    pub fn blank(body: String, source: Option<&str>) -> Self {
        IncomingEvent {
            registry_id: None,
            action: None,
            repository: None,
            namespace: None,
            tag: None,
            digest: None,
            media_type: None,
            actor: None,
            body,
            disposition: Disposition::Deliver,
            facts: None,
            source: source.map(str::to_string),
            manifest_hint: None,
            occurred_at: None,
            registry_readable: false,
            synthesized: None,
            instance_id: None,
        }
    }
}

/// The name filters use for `/v2/webhooks/events`, the registry token's source.
pub const DEFAULT_SOURCE: &str = "default";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Distribution,
    Zot,
    Harbor,
    Gitlab,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Distribution => "distribution",
            Self::Zot => "zot",
            Self::Harbor => "harbor",
            Self::Gitlab => "gitlab",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Distribution, Self::Zot, Self::Harbor, Self::Gitlab]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A source name: what a URL path segment and a filter can hold plainly.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a source name has 1 to 64 characters: lowercase letters, digits, '-' and '_', \
             starting with a letter or digit; '{}' is not one",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// The repository path inside its namespace (`acme/web/api` in `acme` is `web/api`; in
/// the global namespace, the whole repository), which repository filters match.
pub fn path_in_namespace(namespace: &NamespaceName, repository: &str) -> String {
    if namespace.is_global() {
        repository.to_string()
    } else {
        repository
            .strip_prefix(namespace.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or_default()
            .to_string()
    }
}

/// What filters look at, taken from an event once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    pub action: Action,
    /// The repository path inside its namespace (`acme/web/api` in `acme` is `web/api`; in
    /// the global namespace, the whole repository).
    pub path: String,
    pub tag: Option<String>,
    pub is_manifest: bool,
    /// The registry's request method (`HEAD` for existence checks reported as pulls).
    pub request_method: Option<String>,
    /// The source's name; `None` for the default source.
    pub source: Option<String>,
    /// What was pushed: from the notification at first, from the manifest once read.
    pub artifact: Option<crate::domain::artifact::ArtifactFacts>,
    /// Made by a reconcile for an event the registry did not send.
    pub synthesized: bool,
}

impl EventFacts {
    /// A push of a manifest under a tag: what a deploy tool acts on (only manifests have
    /// tags, and a push by digest names no version to deploy).
    pub fn is_tagged_push(&self) -> bool {
        self.action == Action::Push
            && self.is_manifest
            && self.tag.as_deref().is_some_and(|t| !t.is_empty())
    }
}
