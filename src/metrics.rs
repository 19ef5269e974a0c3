//! Prometheus metrics. Counters are bumped where things happen; queue gauges are read from
//! the database at scrape time, so every process reports the shared queue truthfully.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::delivery::IngestSummary;
use crate::domain::events::IncomingEvent;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IgnoredLabels {
    /// `ignored` (unusable) or `skipped` (valid, triggers nothing).
    pub status: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook_id: String,
    pub namespace: String,
}

/// How many failing webhooks `/metrics` names one by one (the longest failing): the series
/// stay bounded whatever happens to the receivers.
pub const FAILING_WEBHOOKS_LISTED: i64 = 50;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub commit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryErrorLabels {
    pub source: String,
    /// `unreachable`, `unauthorized` or `error`.
    pub problem: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SynthesizedLabels {
    pub source: String,
    /// `push` or `delete`.
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub events_received: Family<ActionLabel, Counter>,
    pub events_ignored: Family<IgnoredLabels, Counter>,
    pub events_duplicate: Counter,
    pub attempts: Family<OutcomeLabel, Counter>,
    pub attempt_duration: Histogram,
    pub queue_depth: Family<StateLabel, Gauge>,
    pub oldest_due_age: Gauge<f64, AtomicU64>,
    pub webhooks_auto_disabled: Counter,
    /// Webhooks by state, read at scrape time.
    pub webhooks: Family<StateLabel, Gauge>,
    /// Seconds each failing webhook has failed, for the longest failing few.
    pub webhook_failing: Family<WebhookLabels, Gauge<f64, AtomicU64>>,
    pub http_requests: Family<HttpLabels, Counter>,
    /// 1 when the last read of a source's registry worked, 0 when it failed.
    pub registry_up: Family<SourceLabel, Gauge>,
    pub registry_errors: Family<RegistryErrorLabels, Counter>,
    /// Manifest facts read, by outcome (read, cached, failed).
    pub facts: Family<OutcomeLabel, Counter>,
    /// Events a reconcile made for pushes and deletes the registry did not send.
    pub synthesized: Family<SynthesizedLabels, Counter>,
    /// How long each claim of due deliveries took, its jobs' read included.
    pub claim_round: Histogram,
    /// Deliveries this process started, by how it got them: `hand_off` (born claimed by
    /// its own ingest) or `claim` (a claim query: retries, restarts, overflow).
    pub deliveries_taken: Family<TakenLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TakenLabel {
    pub by: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let events_received = Family::<ActionLabel, Counter>::default();
        registry.register(
            "events_received",
            "Registry events received, by action",
            events_received.clone(),
        );
        let events_ignored = Family::<IgnoredLabels, Counter>::default();
        registry.register(
            "events_not_delivered",
            "Events that produced no delivery, by status (ignored or skipped) and reason",
            events_ignored.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Events received again (the registry retried) and stored once",
            events_duplicate.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by outcome (succeeded, retrying, failed)",
            attempts.clone(),
        );
        // 5 ms to ~40 s.
        let attempt_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register_with_unit(
            "delivery_attempt_duration",
            "Time from sending a delivery to the end of its response",
            prometheus_client::registry::Unit::Seconds,
            attempt_duration.clone(),
        );
        let queue_depth = Family::<StateLabel, Gauge>::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting to be sent, by state",
            queue_depth.clone(),
        );
        let oldest_due_age = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "oldest_due_delivery_age",
            "How long the oldest due delivery has been waiting",
            prometheus_client::registry::Unit::Seconds,
            oldest_due_age.clone(),
        );
        let webhooks_auto_disabled = Counter::default();
        registry.register(
            "webhooks_auto_disabled",
            "Webhooks disabled by Herald after failing for too long",
            webhooks_auto_disabled.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: crate::COMMIT.into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1: the version and commit this process was built from",
            build_info,
        );
        let webhooks = Family::<StateLabel, Gauge>::default();
        registry.register(
            "webhooks",
            "Webhooks by state: enabled, disabled, failing (enabled, nothing but failures), circuit_open",
            webhooks.clone(),
        );
        let webhook_failing = Family::<WebhookLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "webhook_failing",
            "How long each failing webhook has failed (the longest failing 50)",
            prometheus_client::registry::Unit::Seconds,
            webhook_failing.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status",
            http_requests.clone(),
        );
        let registry_up = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "registry_up",
            "1 when Herald's last read of the source's registry worked, 0 when it failed",
            registry_up.clone(),
        );
        let registry_errors = Family::<RegistryErrorLabels, Counter>::default();
        registry.register(
            "registry_read_errors",
            "Failed reads of a source's registry, by problem (unreachable, unauthorized, error)",
            registry_errors.clone(),
        );
        let facts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "facts",
            "Manifest pushes whose facts Herald read, by outcome (read, cached, failed)",
            facts.clone(),
        );
        let synthesized = Family::<SynthesizedLabels, Counter>::default();
        registry.register(
            "events_synthesized",
            "Events a reconcile made for pushes and deletes the registry did not send",
            synthesized.clone(),
        );
        // 0.5 ms to ~8 s.
        let claim_round = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        registry.register_with_unit(
            "claim_round",
            "How long a claim of due deliveries took, its jobs' read included",
            prometheus_client::registry::Unit::Seconds,
            claim_round.clone(),
        );
        let deliveries_taken = Family::<TakenLabel, Counter>::default();
        registry.register(
            "deliveries_taken",
            "Deliveries this process started, by how it got them: hand_off (born claimed by its own ingest) or claim",
            deliveries_taken.clone(),
        );
        Self {
            registry,
            claim_round,
            deliveries_taken,
            registry_up,
            registry_errors,
            facts,
            synthesized,
            events_received,
            events_ignored,
            events_duplicate,
            attempts,
            attempt_duration,
            queue_depth,
            oldest_due_age,
            webhooks_auto_disabled,
            webhooks,
            webhook_failing,
            http_requests,
        }
    }
}

impl Metrics {
    /// Counts what one envelope or payload became, as committed: an event a filter
    /// delivered is not "skipped" because its action is skipped by default, and a
    /// duplicate is neither.
    pub fn record_ingest(&self, events: &[IncomingEvent], summary: &IngestSummary) {
        for e in events {
            // The registry's free text would make a series per random action: keep the
            // known ones and count the rest together.
            let action = match e.action.as_deref() {
                None => "none".to_string(),
                Some(a) if crate::domain::events::Action::parse(a).is_some() => a.to_string(),
                Some(_) => "other".to_string(),
            };
            self.events_received
                .get_or_create(&ActionLabel { action })
                .inc();
        }
        for (status, reason) in &summary.not_delivered {
            self.events_ignored
                .get_or_create(&IgnoredLabels {
                    status: (*status).into(),
                    reason: reason_label(reason),
                })
                .inc();
        }
        self.events_duplicate.inc_by(summary.duplicates as u64);
    }

    /// `n` deliveries started, got by `by` (`hand_off` or `claim`).
    pub fn record_taken(&self, by: &str, n: usize) {
        if n > 0 {
            self.deliveries_taken
                .get_or_create(&TakenLabel { by: by.into() })
                .inc_by(n as u64);
        }
    }

    pub fn record_attempt(&self, outcome: &str, duration: Duration) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        self.attempt_duration.observe(duration.as_secs_f64());
    }

    /// OpenMetrics text, what Prometheus asks for first.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers that do not ask for
    /// OpenMetrics: there a counter's family is named with its `_total`, and there is no
    /// `# EOF`, `# UNIT`, `info` type or `_created` sample.
    pub fn encode_classic(&self) -> String {
        to_classic_text(&self.encode())
    }
}

fn to_classic_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    let mut infos = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.rsplit_once(' ') {
                Some((name, "counter")) => {
                    counters.insert(name.to_string());
                }
                Some((name, "info")) => {
                    infos.insert(name.to_string());
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                Some(format!("{prefix}{name}_total {tail}"))
            } else if infos.contains(name) {
                let tail = if *prefix == "# TYPE " { "gauge" } else { tail };
                Some(format!("{prefix}{name}_info {tail}"))
            } else {
                None
            }
        });
        match renamed {
            Some(l) => out.push_str(l.trim_end()),
            None => {
                let sample = line.split(['{', ' ']).next().unwrap_or("");
                if !line.starts_with('#') && sample.ends_with("_created") {
                    continue;
                }
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

/// Reasons are sentences built from a fixed set of templates; the label drops the quoted
/// values and anything after a ':' or '(', so its values stay few.
pub fn reason_label(reason: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut prev = ' ';
    for c in reason.chars() {
        match c {
            '\'' if !quoted && prev == ' ' => quoted = true,
            '\'' if quoted => quoted = false,
            ':' | '(' if !quoted => break,
            _ if quoted => {}
            _ => out.push(c),
        }
        prev = c;
    }
    out.split_whitespace().collect::<Vec<_>>().join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_labels_are_bounded() {
        assert_eq!(reason_label("unknown action 'replicate'"), "unknown_action");
        assert_eq!(
            reason_label("namespace 'acme' does not exist"),
            "namespace_does_not_exist"
        );
        assert_eq!(reason_label("blob push"), "blob_push");
        assert_eq!(
            reason_label("the event does not have the registry's shape: invalid type"),
            "the_event_does_not_have_the_registry's_shape"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::default();
        m.events_received
            .get_or_create(&ActionLabel {
                action: "push".into(),
            })
            .inc();
        m.record_attempt("succeeded", Duration::from_millis(20));
        let text = m.encode();
        assert!(
            text.contains("herald_events_received_total{action=\"push\"} 1"),
            "{text}"
        );
        assert!(text.contains("herald_delivery_attempts_total{outcome=\"succeeded\"} 1"));
        assert!(text.contains("herald_delivery_attempt_duration_seconds_count 1"));
    }
}
