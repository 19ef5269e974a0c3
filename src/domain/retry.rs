//! When to try a failed delivery again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The delays before each attempt; the first is the delay of the first attempt (normally 0).
/// A delivery that has used every entry has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// Parses `0s,5s,5m,30m,2h` (humantime durations, comma-separated).
    pub fn parse(s: &str) -> Result<Self, String> {
        let delays = s
            .split(',')
            .map(|part| {
                humantime::parse_duration(part.trim())
                    .map_err(|e| format!("'{}' is not a duration ({e})", part.trim()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the retry schedule needs at least one entry".into());
        }
        Ok(Self(delays))
    }

    /// After `attempts_done` attempts have failed, when to try again, or `None` to give up.
    /// Delays get ±20 % jitter so receivers that come back are not hit all at once.
    pub fn next_attempt(&self, attempts_done: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let delay = *self.0.get(usize::try_from(attempts_done).ok()?)?;
        let factor = rand::thread_rng().gen_range(0.8..=1.2);
        let jittered = delay.mul_f64(factor);
        Some(now + chrono::Duration::from_std(jittered).unwrap_or_default())
    }
}

impl std::fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_gives_jittered_delays_then_gives_up() {
        let s = RetrySchedule::parse("0s, 10s, 5m").unwrap();
        let now = Utc::now();
        for _ in 0..100 {
            let next = s.next_attempt(1, now).unwrap();
            let secs = (next - now).num_milliseconds() as f64 / 1000.0;
            assert!((8.0..=12.0).contains(&secs), "{secs}");
        }
        assert!(s.next_attempt(2, now).is_some());
        assert_eq!(s.next_attempt(3, now), None);
        assert!(RetrySchedule::parse("5 parsecs").is_err());
    }
}
