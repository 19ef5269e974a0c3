//! Per-webhook delivery control, as pure rules: a rate limit (a token bucket), ordered
//! delivery, and the circuit breaker that stops a dead receiver from burning every
//! delivery's attempts. The store and the dispatcher apply them; nothing here does I/O.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::names::Invalid;

/// Whether a webhook's deliveries may overtake each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOrder {
    /// Sent concurrently and retried independently (the default).
    #[default]
    None,
    /// One at a time in ingest order: a delivery waits until the one before it succeeded
    /// or failed for good.
    Fifo,
}

impl DeliveryOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fifo => "fifo",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.trim() {
            "none" | "" => Ok(Self::None),
            "fifo" => Ok(Self::Fifo),
            other => Err(Invalid::new(
                "ordering",
                format!("unknown ordering '{other}': use none or fifo"),
            )),
        }
    }
}

/// A webhook's rate limit in deliveries per second, kept in thousandths so both
/// databases store it as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    milli: i64,
}

impl RateLimit {
    /// The slowest limit: one delivery every 100 s. A change of the limit reaches a
    /// running dispatcher with that webhook's next token, so it must not be rarer.
    pub const MIN_PER_SECOND: f64 = 0.01;
    pub const MAX_PER_SECOND: f64 = 10_000.0;

    pub fn per_second(per_second: f64) -> Result<Self, Invalid> {
        if !per_second.is_finite()
            || !(Self::MIN_PER_SECOND..=Self::MAX_PER_SECOND).contains(&per_second)
        {
            return Err(Invalid::new(
                "rate_limit",
                format!(
                    "a rate limit is deliveries per second, from {} to {} (null: none)",
                    Self::MIN_PER_SECOND,
                    Self::MAX_PER_SECOND
                ),
            ));
        }
        Ok(Self {
            milli: (per_second * 1000.0).round() as i64,
        })
    }

    /// From the stored column; `None` for a value no limit could have (a hand-edited row).
    pub fn from_milli(milli: i64) -> Option<Self> {
        (milli > 0).then_some(Self { milli })
    }

    pub fn milli(self) -> i64 {
        self.milli
    }

    pub fn as_f64(self) -> f64 {
        self.milli as f64 / 1000.0
    }

    /// One of `processes` equal shares of the limit: processes claiming from one database
    /// each keep their share, so together they never exceed the limit (a process with
    /// none of the webhook's deliveries leaves its share unused).
    pub fn shared_by(self, processes: usize) -> Self {
        let processes = i64::try_from(processes.max(1)).unwrap_or(i64::MAX);
        Self {
            milli: (self.milli / processes).max(1),
        }
    }

    /// Deliveries that may go at once after a quiet spell: one second's worth, at least one.
    pub fn burst(self) -> f64 {
        self.as_f64().ceil().max(1.0)
    }
}

/// A token bucket for one webhook in one process: `burst` tokens, refilled at the rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: limit.burst(),
            at: now,
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// A new limit keeps the tokens there are, within the new burst.
    pub fn set_limit(&mut self, limit: RateLimit, now: Instant) {
        if limit != self.limit {
            self.refill(now);
            self.limit = limit;
            self.tokens = self.tokens.min(limit.burst());
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.as_f64()).min(self.limit.burst());
        self.at = now;
    }

    /// Whole deliveries the bucket admits now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        // A hair of slack, so float rounding never leaves a token just short of whole.
        (self.tokens + 1e-9).floor() as usize
    }

    /// Takes a token; false (and nothing taken) when there is none.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.available(now) == 0 {
            return false;
        }
        self.tokens = (self.tokens - 1.0).max(0.0);
        true
    }

    /// When the next whole token is there; `now` if one already is.
    pub fn next_token(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let missing = 1.0 - self.tokens;
        if missing <= 1e-9 {
            return now;
        }
        now + Duration::from_secs_f64(missing / self.limit.as_f64())
    }

    /// Full again: a dispatcher may forget it.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens + 1e-9 >= self.limit.burst()
    }
}

/// What a webhook's circuit breaker says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Deliveries flow.
    #[default]
    Closed,
    /// The receiver kept failing: due deliveries wait until the cool-down is over.
    Open,
    /// The cool-down is over and one delivery probes the receiver.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// The stored value; anything unknown reads as closed, which sends rather than
    /// holding deliveries back for good.
    pub fn parse(s: &str) -> Self {
        match s {
            "open" => Self::Open,
            "half-open" => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
}

/// A webhook's circuit as stored (the `circuit_*` columns). Times are Unix ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Circuit {
    pub state: CircuitState,
    /// Failed attempts in a row.
    pub failures: i64,
    /// Open: when the probe may go. Half-open: until when the probe's claim holds (after
    /// that another may be claimed). `None` while closed; the claim queries pass over
    /// a webhook whose `circuit_open_until` is in the future.
    pub open_until: Option<i64>,
    /// The cool-down of the last opening, doubled on each failed probe.
    pub cooldown_ms: Option<i64>,
    /// The delivery sent as the probe while half-open; no other is sent then.
    pub probe: Option<i64>,
}

/// The breaker's settings (`--circuit-failures`, `--circuit-cooldown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitRule {
    /// Failed attempts in a row that open the circuit; 0 turns the breaker off.
    pub failures: u32,
    pub cooldown: Duration,
    /// The longest cool-down that doubling reaches.
    pub max_cooldown: Duration,
}

impl CircuitRule {
    /// The cap on doubled cool-downs, unless the first is already longer.
    pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);

    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self {
            failures,
            cooldown,
            max_cooldown: Self::MAX_COOLDOWN.max(cooldown),
        }
    }
}

/// What an attempt did to a circuit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CircuitChange {
    #[default]
    None,
    /// A closed circuit opened: the receiver failed `failures` times in a row.
    Opened,
    /// A probe failed: open again, with a longer cool-down.
    Reopened,
    /// An attempt succeeded while the circuit was not closed.
    Closed,
}

/// What an attempt's result did to its webhook: the auto-disable rule and the circuit
/// breaker, decided in one write (`Hooks::webhook_health`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthChange {
    /// The webhook was disabled (410 Gone, or failing for `--auto-disable-after`).
    pub disabled: bool,
    /// `Opened` or `Reopened`: this attempt opened the circuit.
    pub circuit: CircuitChange,
    /// Failed attempts in a row, this one included.
    pub circuit_failures: i64,
    /// While the circuit is not closed: when the probe may go.
    pub circuit_open_until: Option<DateTime<Utc>>,
}

impl Circuit {
    /// The state to show at `now_ms`: an open circuit whose cool-down is over is half-open,
    /// its probe about to go.
    pub fn state_at(&self, now_ms: i64) -> CircuitState {
        match (self.state, self.open_until) {
            (CircuitState::Open, Some(until)) if until <= now_ms => CircuitState::HalfOpen,
            (state, _) => state,
        }
    }

    /// Whether a delivery may be sent now under this circuit: always when closed; while
    /// half-open only the probe. (The claim queries already pass over open circuits; this
    /// stops deliveries claimed before the circuit opened.)
    pub fn lets_through(&self, delivery_id: i64) -> bool {
        match self.state {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => self.probe == Some(delivery_id),
        }
    }

    /// The breaker's rule: the circuit after an attempt that succeeded or failed at
    /// `now_ms`, and what changed. A success closes it from any state. A failure counts;
    /// `rule.failures` in a row open a closed circuit for the cool-down; a failed probe
    /// (half-open) opens it again for twice the last cool-down, at most
    /// `rule.max_cooldown`. Failures while open (attempts that were already out) change
    /// nothing but the count.
    pub fn after_attempt(
        self,
        success: bool,
        now_ms: i64,
        rule: &CircuitRule,
    ) -> (Self, CircuitChange) {
        if success {
            let change = if self.state == CircuitState::Closed {
                CircuitChange::None
            } else {
                CircuitChange::Closed
            };
            return (Self::default(), change);
        }
        let failures = self.failures.saturating_add(1);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let open_for = |cooldown: i64| Self {
            state: CircuitState::Open,
            failures,
            open_until: Some(now_ms.saturating_add(cooldown)),
            cooldown_ms: Some(cooldown),
            probe: None,
        };
        match self.state {
            _ if rule.failures == 0 => (
                Self {
                    failures,
                    ..Self::default()
                },
                CircuitChange::None,
            ),
            CircuitState::Closed if failures >= i64::from(rule.failures) => {
                (open_for(ms(rule.cooldown)), CircuitChange::Opened)
            }
            CircuitState::Closed => (
                Self {
                    failures,
                    ..Self::default()
                },
                CircuitChange::None,
            ),
            CircuitState::HalfOpen => {
                let last = self.cooldown_ms.unwrap_or_else(|| ms(rule.cooldown));
                let next = last.saturating_mul(2).min(ms(rule.max_cooldown)).max(1);
                (open_for(next), CircuitChange::Reopened)
            }
            CircuitState::Open => (Self { failures, ..self }, CircuitChange::None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CircuitRule {
        CircuitRule::new(3, Duration::from_secs(30))
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_and_a_success_closes_it() {
        let mut c = Circuit::default();
        for t in 0..2 {
            let (next, change) = c.after_attempt(false, t, &rule());
            assert_eq!(
                (next.state, change),
                (CircuitState::Closed, CircuitChange::None)
            );
            c = next;
        }
        let (open, change) = c.after_attempt(false, 1_000, &rule());
        assert_eq!(change, CircuitChange::Opened);
        assert_eq!(open.state, CircuitState::Open);
        assert_eq!(open.open_until, Some(31_000));
        assert_eq!(open.cooldown_ms, Some(30_000));
        // An attempt already out fails too: still open, no longer.
        let (still, change) = open.after_attempt(false, 2_000, &rule());
        assert_eq!(change, CircuitChange::None);
        assert_eq!(
            (still.state, still.open_until),
            (CircuitState::Open, Some(31_000))
        );
        let (closed, change) = still.after_attempt(true, 3_000, &rule());
        assert_eq!(
            (closed, change),
            (Circuit::default(), CircuitChange::Closed)
        );
        // A success in between starts the count again.
        let (one, _) = Circuit::default().after_attempt(false, 0, &rule());
        let (two, _) = one.after_attempt(false, 0, &rule());
        let (reset, change) = two.after_attempt(true, 0, &rule());
        assert_eq!((reset.failures, change), (0, CircuitChange::None));
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_the_cap() {
        let rule = CircuitRule::new(1, Duration::from_secs(200));
        let (mut c, _) = Circuit::default().after_attempt(false, 0, &rule);
        let mut seen = Vec::new();
        for _ in 0..4 {
            c.state = CircuitState::HalfOpen;
            c.probe = Some(7);
            let (next, change) = c.after_attempt(false, 1_000_000, &rule);
            assert_eq!(change, CircuitChange::Reopened);
            assert_eq!(next.probe, None);
            seen.push(next.cooldown_ms.unwrap());
            assert_eq!(next.open_until, Some(1_000_000 + next.cooldown_ms.unwrap()));
            c = next;
        }
        assert_eq!(seen, [400_000, 600_000, 600_000, 600_000]);
    }

    #[test]
    fn zero_failures_turns_the_breaker_off() {
        let rule = CircuitRule::new(0, Duration::from_secs(1));
        let mut c = Circuit::default();
        for _ in 0..100 {
            c = c.after_attempt(false, 0, &rule).0;
        }
        assert_eq!(c.state, CircuitState::Closed);
        assert_eq!(c.open_until, None);
    }

    #[test]
    fn only_the_probe_goes_through_a_half_open_circuit() {
        let half = Circuit {
            state: CircuitState::HalfOpen,
            probe: Some(5),
            ..Circuit::default()
        };
        assert!(half.lets_through(5) && !half.lets_through(6));
        let open = Circuit {
            state: CircuitState::Open,
            ..Circuit::default()
        };
        assert!(!open.lets_through(5));
        assert!(Circuit::default().lets_through(5));
    }

    #[test]
    fn the_bucket_admits_a_burst_then_the_rate() {
        let now = Instant::now();
        let limit = RateLimit::per_second(5.0).unwrap();
        assert_eq!(limit.burst(), 5.0);
        let mut b = TokenBucket::new(limit, now);
        assert_eq!(b.available(now), 5);
        for _ in 0..5 {
            assert!(b.take(now));
        }
        assert!(!b.take(now));
        let next = b.next_token(now);
        assert_eq!(next - now, Duration::from_millis(200));
        assert!(!b.take(now + Duration::from_millis(150)));
        assert!(b.take(now + Duration::from_millis(200)));
        assert_eq!(
            b.available(now + Duration::from_secs(60)),
            5,
            "never above the burst"
        );
        // Slow limits still admit one.
        let slow = RateLimit::per_second(0.5).unwrap();
        assert_eq!(slow.burst(), 1.0);
        let mut b = TokenBucket::new(slow, now);
        assert!(b.take(now) && !b.take(now + Duration::from_secs(1)));
        assert!(b.take(now + Duration::from_secs(2)));
    }

    #[test]
    fn a_limit_is_shared_between_processes() {
        let five = RateLimit::per_second(5.0).unwrap();
        assert_eq!(five.shared_by(1), five);
        assert_eq!(five.shared_by(0), five);
        assert!((five.shared_by(3).as_f64() - 5.0 / 3.0).abs() < 0.001);
        assert_eq!(five.shared_by(3).burst(), 2.0);
        let slow = RateLimit::per_second(0.01).unwrap();
        assert_eq!(slow.shared_by(1000).milli(), 1);
    }

    #[test]
    fn rate_limits_are_checked_and_stored_in_thousandths() {
        assert_eq!(RateLimit::per_second(2.5).unwrap().milli(), 2500);
        assert_eq!(RateLimit::from_milli(2500).unwrap().as_f64(), 2.5);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.001, 20_000.0] {
            let e = RateLimit::per_second(bad).unwrap_err();
            assert_eq!(e.field, "rate_limit");
        }
        assert_eq!(RateLimit::from_milli(0), None);
        assert_eq!(DeliveryOrder::parse("fifo").unwrap(), DeliveryOrder::Fifo);
        assert_eq!(DeliveryOrder::parse("lifo").unwrap_err().field, "ordering");
    }
}
