//! Herald's own events: what it tells teams about their webhooks (disabled, circuit
//! opened, recovered, a delivery failed for good). They are stored and delivered like
//! registry events to the webhooks whose filters name them. Pure: the payload, its id
//! and who hears it; the store writes them, the dispatcher says when.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::delivery::{Candidate, Recipient};
use crate::domain::events::Action;

/// What an operational event is about and why: the store fills in the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// One of [`Action::OPERATIONAL`].
    pub kind: Action,
    /// The webhook it is about; never delivered to it.
    pub webhook_id: i64,
    /// For `delivery.exhausted`: the delivery that failed for good.
    pub delivery_id: Option<i64>,
    /// What happened, in a sentence; for a delivery, the store writes it from the
    /// delivery's attempts and last error.
    pub detail: String,
}

impl Announcement {
    pub fn new(kind: Action, webhook_id: i64, detail: impl Into<String>) -> Self {
        Self {
            kind,
            webhook_id,
            delivery_id: None,
            detail: detail.into(),
        }
    }

    pub fn delivery(mut self, delivery_id: i64) -> Self {
        self.delivery_id = Some(delivery_id);
        self
    }
}

/// The webhook an event is about, as receivers see it: its URL's host only, since paths
/// and queries may hold tokens.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookRef {
    pub id: i64,
    pub name: String,
    pub host: String,
}

/// The event a failed delivery carried.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CarriedEvent {
    pub id: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
}

/// The delivery a `delivery.exhausted` is about.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveryRef {
    pub id: i64,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub event: CarriedEvent,
}

/// The body every operational event is sent with (the `registry-event` format); its
/// shape is a contract, documented in the README.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Payload {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub namespace: String,
    pub webhook: WebhookRef,
    pub detail: String,
    /// Set for `delivery.exhausted`, else `null`.
    pub delivery: Option<DeliveryRef>,
}

/// Event ids of operational events start so (the rest is random).
pub const ID_PREFIX: &str = "herald-op-";

impl Payload {
    pub fn new(
        id: String,
        kind: Action,
        now: DateTime<Utc>,
        namespace: String,
        webhook: WebhookRef,
        detail: String,
        delivery: Option<DeliveryRef>,
    ) -> Self {
        Self {
            id,
            kind: kind.as_str(),
            timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            namespace,
            webhook,
            detail,
            delivery,
        }
    }
}

/// What makes an occurrence one: a `delivery.exhausted` is one per failure of a
/// delivery (`failed_at_ms`, when its row turned failed), so announcing the same failure
/// twice stores it once; the other kinds are announced in the transaction that changes
/// the webhook, once by construction, and are their own event's id.
pub fn occurrence(kind: Action, event_id: &str, delivery: Option<(i64, i64)>) -> String {
    match delivery {
        Some((delivery_id, failed_at_ms)) => {
            format!("{}:{delivery_id}:{failed_at_ms}", kind.as_str())
        }
        None => event_id.to_string(),
    }
}

/// A new event id from random text.
pub fn fresh_id(random: &str) -> String {
    format!("{ID_PREFIX}{random}")
}

/// One line saying what happened, unescaped: what chat formats send.
pub fn headline(kind: &str, namespace: &str, webhook: &str, delivery: Option<i64>) -> String {
    let hook = format!("webhook '{webhook}' in {namespace}");
    match kind {
        "webhook.disabled" => format!("Herald disabled {hook}"),
        "webhook.circuit_opened" => format!("Herald paused deliveries to {hook} (circuit opened)"),
        "webhook.recovered" => format!("{hook} recovered"),
        "delivery.exhausted" => match delivery {
            Some(id) => format!("delivery {id} to {hook} failed for good"),
            None => format!("a delivery to {hook} failed for good"),
        },
        other => format!("{other}: {hook}"),
    }
}

/// Who gets an operational event of `kind`: the candidates (enabled webhooks of the
/// namespace it is about and of the global namespace, the webhook itself left out) whose
/// filters name it; with the event's status and reason, as [`decide`] gives them for
/// registry events.
///
/// [`decide`]: crate::domain::delivery::decide
pub(crate) fn decide(
    kind: Action,
    candidates: &[Candidate],
) -> (&'static str, Option<String>, Vec<Recipient>) {
    let ids: Vec<Recipient> = candidates
        .iter()
        .filter(|c| c.wants_operational(kind))
        .map(|c| c.recipient)
        .collect();
    if ids.is_empty() {
        let reason = format!("no enabled webhook subscribes to {}", kind.as_str());
        ("skipped", Some(reason), ids)
    } else {
        ("accepted", None, ids)
    }
}

/// What a `delivery.exhausted` says: how many attempts failed and the last error.
pub fn exhausted_detail(attempts: i64, last_error: Option<&str>) -> String {
    let error = last_error.unwrap_or("failed");
    match attempts {
        0 => format!("the delivery failed without an attempt: {error}"),
        1 => format!("the delivery failed for good after 1 attempt: {error}"),
        n => format!("the delivery failed for good after {n} attempts; the last: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhooks_naming_the_kind_hear_it() {
        let candidates = [
            Candidate::new(1, false, true, 0, None, "registry-event"),
            Candidate::new(2, false, true, 0, Some(r#"{"actions": []}"#), "slack"),
            Candidate::new(
                3,
                false,
                true,
                0,
                Some(r#"{"actions": ["push", "webhook.disabled"]}"#),
                "registry-event",
            ),
            Candidate::new(
                4,
                false,
                true,
                0,
                Some(r#"{"actions": ["delivery.exhausted"]}"#),
                "cloudevents",
            ),
            // A deploy trigger never hears of Herald's own events, whatever it names.
            Candidate::new(
                5,
                false,
                true,
                0,
                Some(r#"{"actions": ["push", "webhook.disabled", "delivery.exhausted"]}"#),
                "github-dispatch",
            ),
        ];
        let ids = |kind| -> Vec<i64> {
            decide(kind, &candidates)
                .2
                .iter()
                .map(|r| r.webhook_id)
                .collect()
        };
        assert_eq!(decide(Action::WebhookDisabled, &candidates).0, "accepted");
        assert_eq!(ids(Action::WebhookDisabled), vec![3]);
        assert_eq!(ids(Action::DeliveryExhausted), vec![4]);
        let (status, reason, ids) = decide(Action::WebhookRecovered, &candidates);
        assert_eq!((status, ids.len()), ("skipped", 0));
        assert_eq!(
            reason.unwrap(),
            "no enabled webhook subscribes to webhook.recovered"
        );
    }

    #[test]
    fn only_the_end_of_a_failing_streak_is_a_recovery() {
        use crate::domain::model::{Health, HealthVerdict};
        let day = std::time::Duration::from_secs(86_400);
        let weigh = |health, failing_since| {
            HealthVerdict::weigh(health, true, failing_since, 10_000, day).recovered
        };
        assert!(weigh(Health::Succeeded, Some(5_000)));
        assert!(!weigh(Health::Succeeded, None), "healthy stays healthy");
        assert!(!weigh(Health::Failed, Some(5_000)));
        assert!(!weigh(Health::Gone, Some(5_000)));
    }

    #[test]
    fn the_payload_has_its_documented_shape() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T06:00:00Z")
            .unwrap()
            .to_utc();
        let p = Payload::new(
            fresh_id("abc"),
            Action::WebhookDisabled,
            now,
            "acme".into(),
            WebhookRef {
                id: 3,
                name: "deploy".into(),
                host: "ci.example.org".into(),
            },
            "the receiver answered 410 Gone".into(),
            None,
        );
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({
                "id": "herald-op-abc", "type": "webhook.disabled",
                "timestamp": "2026-12-02T06:00:00.000Z", "namespace": "acme",
                "webhook": {"id": 3, "name": "deploy", "host": "ci.example.org"},
                "detail": "the receiver answered 410 Gone", "delivery": null
            })
        );
        assert_eq!(
            occurrence(Action::DeliveryExhausted, "herald-op-x", Some((7, 1234))),
            "delivery.exhausted:7:1234"
        );
        assert_eq!(
            occurrence(Action::WebhookDisabled, "herald-op-x", None),
            "herald-op-x"
        );
        assert_eq!(
            headline("delivery.exhausted", "acme", "deploy", Some(7)),
            "delivery 7 to webhook 'deploy' in acme failed for good"
        );
    }
}
