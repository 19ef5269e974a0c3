//! What an attempt's answer means for its delivery and its webhook: the one rule the
//! dispatcher applies after every send, as a pure function (as `Circuit::after_attempt` is
//! for the circuit).

use chrono::{DateTime, Duration, Utc};

use super::delivery::{DeliveryState, Outcome};
use super::model::Health;
use super::retry::RetrySchedule;

/// The longest `Retry-After` Herald honours: a receiver cannot park a delivery for longer.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A 429 or 503 answer's `Retry-After` (seconds or an HTTP date) as a wait from `now`,
/// within 1 s and [`MAX_RETRY_AFTER`].
pub fn retry_after(
    status: u16,
    headers: &[(String, String)],
    now: DateTime<Utc>,
) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let value = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - now).to_std().unwrap_or_default()
        }
    };
    Duration::from_std(wait.clamp(std::time::Duration::from_secs(1), MAX_RETRY_AFTER)).ok()
}

/// One attempt as the verdict weighs it.
#[derive(Debug, Clone)]
pub struct Attempted<'a> {
    /// The receiver's status, or `None` when nothing came back (refused, timed out ...).
    pub status: Option<u16>,
    /// The answer's `Retry-After`, already read ([`retry_after`]).
    pub retry_after: Option<Duration>,
    /// Retriggered by someone, not a step of the schedule.
    pub manual: bool,
    /// The delivery's state and next automatic attempt before this one.
    pub state_before: DeliveryState,
    pub next_before: Option<DateTime<Utc>>,
    /// Attempts the schedule has made, this one included when it is automatic.
    pub automatic_done: i64,
    pub schedule: &'a RetrySchedule,
    pub now: DateTime<Utc>,
}

/// The delivery's outcome and what the attempt says of the webhook's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub health: Health,
}

/// Any 2xx succeeds. 410 Gone fails for good (the receiver asks never to be called again).
/// A manual attempt of a finished delivery does not restart its schedule, and one of a
/// waiting delivery keeps its next automatic attempt; otherwise the schedule says when
/// next (a `Retry-After` of 429/503 wins), or the delivery has failed for good.
pub fn verdict(a: &Attempted) -> Verdict {
    let success = a.status.is_some_and(|s| (200..300).contains(&s));
    let gone = a.status == Some(410);
    let finished = matches!(
        a.state_before,
        DeliveryState::Succeeded | DeliveryState::Failed
    );
    let outcome = if success {
        Outcome::Succeeded
    } else if gone || (a.manual && finished) {
        Outcome::Failed
    } else {
        let scheduled = match (a.manual, a.next_before) {
            (true, Some(at)) => Some(at),
            _ => a.schedule.next_attempt(a.automatic_done, a.now),
        };
        match scheduled {
            Some(at) => Outcome::RetryAt(a.retry_after.map_or(at, |wait| a.now + wait)),
            None => Outcome::Failed,
        }
    };
    let health = match (success, gone) {
        (true, _) => Health::Succeeded,
        (_, true) => Health::Gone,
        _ => Health::Failed,
    };
    Verdict { outcome, health }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempted<'a>(schedule: &'a RetrySchedule, status: Option<u16>) -> Attempted<'a> {
        Attempted {
            status,
            retry_after: None,
            manual: false,
            state_before: DeliveryState::Pending,
            next_before: None,
            automatic_done: 1,
            schedule,
            now: Utc::now(),
        }
    }

    #[test]
    fn any_2xx_succeeds_and_410_fails_for_good() {
        let s = RetrySchedule::parse("0s,5s").unwrap();
        for status in [200, 204, 299] {
            let v = verdict(&attempted(&s, Some(status)));
            assert_eq!(
                v,
                Verdict {
                    outcome: Outcome::Succeeded,
                    health: Health::Succeeded
                }
            );
        }
        let v = verdict(&attempted(&s, Some(410)));
        assert_eq!(
            v,
            Verdict {
                outcome: Outcome::Failed,
                health: Health::Gone
            }
        );
        // Redirects are not followed: a 3xx is a failure.
        assert!(matches!(
            verdict(&attempted(&s, Some(301))).outcome,
            Outcome::RetryAt(_)
        ));
    }

    #[test]
    fn the_schedule_says_when_next_until_it_runs_out() {
        let s = RetrySchedule::parse("0s,10s").unwrap();
        let mut a = attempted(&s, None);
        let Outcome::RetryAt(at) = verdict(&a).outcome else {
            panic!()
        };
        let secs = (at - a.now).num_milliseconds();
        assert!((8_000..=12_000).contains(&secs), "{secs}");
        assert_eq!(verdict(&a).health, Health::Failed);
        a.automatic_done = 2;
        assert_eq!(verdict(&a).outcome, Outcome::Failed);
    }

    #[test]
    fn retry_after_of_429_and_503_wins_within_bounds() {
        let s = RetrySchedule::parse("0s,10s").unwrap();
        let now = Utc::now();
        let headers = vec![("Retry-After".to_string(), "120".to_string())];
        assert_eq!(
            retry_after(429, &headers, now),
            Some(Duration::seconds(120))
        );
        assert_eq!(retry_after(500, &headers, now), None);
        let far = vec![("retry-after".to_string(), "99999999".to_string())];
        assert_eq!(retry_after(503, &far, now), Some(Duration::hours(24)));
        let date = (now + Duration::seconds(60)).to_rfc2822();
        let by_date = retry_after(503, &[("Retry-After".into(), date)], now).unwrap();
        assert!((55..=60).contains(&by_date.num_seconds()), "{by_date}");
        let mut a = attempted(&s, Some(429));
        a.retry_after = Some(Duration::seconds(120));
        assert_eq!(
            verdict(&a).outcome,
            Outcome::RetryAt(a.now + Duration::seconds(120))
        );
    }

    #[test]
    fn manual_attempts_do_not_move_the_schedule() {
        let s = RetrySchedule::parse("0s,10s,1h").unwrap();
        let mut a = attempted(&s, Some(500));
        a.manual = true;
        a.state_before = DeliveryState::Failed;
        assert_eq!(
            verdict(&a).outcome,
            Outcome::Failed,
            "a finished delivery stays finished"
        );
        a.state_before = DeliveryState::Succeeded;
        assert_eq!(verdict(&a).outcome, Outcome::Failed);
        let waiting_until = a.now + Duration::minutes(30);
        a.state_before = DeliveryState::Retrying;
        a.next_before = Some(waiting_until);
        assert_eq!(
            verdict(&a).outcome,
            Outcome::RetryAt(waiting_until),
            "keeps its next attempt"
        );
        a.status = Some(200);
        assert_eq!(verdict(&a).outcome, Outcome::Succeeded);
    }
}
