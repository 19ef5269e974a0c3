//! Slowing down password guessing: one throttle for every password sign-in (the UI's form
//! and the API's Basic auth), counted per username and per client address.
//!
//! After [`USER_FREE_FAILURES`] failures for a username, or [`ADDRESS_FREE_FAILURES`] from
//! one address, each further try must wait 1 s, 2 s, 4 s ... up to [`MAX_DELAY`] after the
//! previous one. The address may fail more often than a username because many people can
//! share one (a NAT, an office): it catches one client trying many usernames, the username
//! catches many clients trying one. A success resets the username's count; the address
//! keeps its failures (or a client could clear them by signing in to an account of its
//! own), but the successful attempt itself is not counted.
//!
//! Checking and reserving an attempt happen together under one lock, before the password
//! is verified: an attempt counts as a failure from the moment it is let through, so
//! parallel attempts cannot all pass the check while the first hashes are still running.
//! Refused attempts run no hash and are not counted.
//!
//! At most [`MAX_KEYS`] usernames and addresses are remembered; when full, those idle for
//! [`FORGET_AFTER`] go first, then the oldest tenth.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// A wait as `Retry-After` says it: whole seconds, rounded up, at least 1.
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Failures a username may have before each try must wait.
pub const USER_FREE_FAILURES: u32 = 3;
/// Failures one client address may have (over all usernames) before each try must wait.
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// The longest wait between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A username or address idle this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The most usernames and addresses remembered at once (a few MB at most).
pub const MAX_KEYS: usize = 20_000;
/// Usernames are at most this long; longer ones cannot exist and are cut to it.
const MAX_USERNAME_BYTES: usize = 255;

/// The peer address of the connection (axum's `ConnectInfo`), if the server records it.
/// Forwarded-for headers are not trusted: anyone can send them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    /// An IPv4 address, or the /64 of an IPv6 address (what one client usually holds).
    Addr(IpAddr),
}

fn user_key(username: &str) -> Key {
    let mut end = username.len().min(MAX_USERNAME_BYTES);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    Key::User(username[..end].to_string())
}

fn addr_key(addr: IpAddr) -> Key {
    let addr = match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    };
    Key::Addr(addr)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures, including attempts let through and not yet decided.
    failures: u32,
    /// When the last attempt was let through or failed.
    last: Instant,
}

/// How long after its last attempt a key with `failures` must wait.
fn delay(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(6);
    Duration::from_secs(1u64 << doublings).min(MAX_DELAY)
}

/// Which count refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottledBy {
    User,
    Address,
}

/// An attempt refused before any password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub wait: Duration,
    pub by: ThrottledBy,
}

impl Throttled {
    /// The wait in whole seconds, rounded up, at least 1 (as `Retry-After` says it).
    pub fn secs(&self) -> u64 {
        whole_seconds(self.wait)
    }
}

/// An attempt let through: report how it went with [`LoginThrottle::failed`],
/// [`LoginThrottle::succeeded`] or [`LoginThrottle::not_checked`]. One that is simply
/// dropped stays counted as a failure.
#[must_use]
#[derive(Debug)]
pub struct Attempt {
    keys: Vec<Key>,
}

#[derive(Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl LoginThrottle {
    /// Lets an attempt through and counts it, or says how long to wait; atomically.
    pub fn begin(&self, username: &str, addr: Option<IpAddr>) -> Result<Attempt, Throttled> {
        self.begin_at(username, addr, Instant::now())
    }

    /// The same, counted by the client address alone: for a credential whose owner a
    /// stranger must not be able to lock out by failing in its name (a source's registry
    /// signs in from its own address, the stranger from another).
    pub fn begin_from(&self, addr: Option<IpAddr>) -> Result<Attempt, Throttled> {
        self.begin_keys(addr.map(addr_key).into_iter().collect(), Instant::now())
    }

    fn begin_at(
        &self,
        username: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Throttled> {
        let mut keys = vec![user_key(username)];
        keys.extend(addr.map(addr_key));
        self.begin_keys(keys, now)
    }

    fn begin_keys(&self, keys: Vec<Key>, now: Instant) -> Result<Attempt, Throttled> {
        // A poisoned lock only means another sign-in panicked; the counts are still sound.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut refusal: Option<Throttled> = None;
        for key in &keys {
            let Some(entry) = entries.get(key) else {
                continue;
            };
            let since = now.saturating_duration_since(entry.last);
            if since >= FORGET_AFTER {
                continue;
            }
            let (free, by) = match key {
                Key::User(_) => (USER_FREE_FAILURES, ThrottledBy::User),
                Key::Addr(_) => (ADDRESS_FREE_FAILURES, ThrottledBy::Address),
            };
            let wait = delay(entry.failures, free).saturating_sub(since);
            if !wait.is_zero() && refusal.is_none_or(|r| wait > r.wait) {
                refusal = Some(Throttled { wait, by });
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        for key in &keys {
            if !entries.contains_key(key) && entries.len() >= MAX_KEYS {
                evict(&mut entries, now);
            }
            let entry = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last: now,
            });
            if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
                entry.failures = 0;
            }
            entry.failures += 1;
            entry.last = now;
        }
        Ok(Attempt { keys })
    }

    /// The password was wrong (or the user disabled, or unknown): the attempt stays counted,
    /// and the wait runs from now.
    pub fn failed(&self, attempt: Attempt) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in attempt.keys {
            if !entries.contains_key(&key) && entries.len() >= MAX_KEYS {
                evict(&mut entries, now);
            }
            // Gone when a parallel success reset it (or it was evicted): count this one.
            let entry = entries.entry(key).or_insert(Entry {
                failures: 1,
                last: now,
            });
            entry.last = now;
        }
    }

    /// Signed in: the username starts afresh, and the address does not count this attempt.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in attempt.keys {
            match key {
                Key::User(_) => {
                    entries.remove(&key);
                }
                Key::Addr(_) => uncount(&mut entries, &key),
            }
        }
    }

    /// No password was checked (Herald was busy, or the database failed): not counted.
    pub fn not_checked(&self, attempt: Attempt) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in &attempt.keys {
            uncount(&mut entries, key);
        }
    }

    /// How many usernames and addresses are remembered.
    pub fn tracked(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

fn uncount(entries: &mut HashMap<Key, Entry>, key: &Key) {
    if let Some(entry) = entries.get_mut(key) {
        entry.failures = entry.failures.saturating_sub(1);
        if entry.failures == 0 {
            entries.remove(key);
        }
    }
}

/// Makes room: forgets idle keys, and if that is not enough, the oldest tenth.
fn evict(entries: &mut HashMap<Key, Entry>, now: Instant) {
    entries.retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
    if entries.len() < MAX_KEYS {
        return;
    }
    let mut ages: Vec<Instant> = entries.values().map(|e| e.last).collect();
    let cut = ages.len() / 10;
    let (_, newest_dropped, _) = ages.select_nth_unstable(cut);
    let newest_dropped = *newest_dropped;
    entries.retain(|_, e| e.last > newest_dropped);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7)));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn after_three_failures_each_try_waits_longer() {
        let t = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..USER_FREE_FAILURES {
            let attempt = t.begin_at("eve", HOME, start).unwrap();
            drop(attempt); // dropped: counted as a failure
        }
        let refused = t.begin_at("eve", AWAY, start).unwrap_err();
        assert_eq!(refused.by, ThrottledBy::User);
        assert_eq!(refused.wait, secs(1));
        // 1 s later one try; then 2 s, 4 s ... never more than a minute.
        let mut at = start + secs(1);
        for expected in [2, 4, 8, 16, 32, 60, 60] {
            let _ = t.begin_at("eve", HOME, at).unwrap();
            assert_eq!(
                t.begin_at("eve", HOME, at).unwrap_err().wait,
                secs(expected)
            );
            at += secs(expected);
        }
        assert!(t.begin_at("bob", HOME, at).is_ok(), "per username");
        assert!(
            t.begin_at("eve", HOME, at + FORGET_AFTER).is_ok(),
            "forgotten after an idle hour"
        );
    }

    #[test]
    fn parallel_attempts_are_reserved_before_the_check_so_only_three_pass() {
        let t = std::sync::Arc::new(LoginThrottle::default());
        let passed: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..30)
                .map(|_| s.spawn(|| t.begin("eve", HOME).is_ok()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(passed.iter().filter(|p| **p).count(), 3);
    }

    #[test]
    fn a_success_resets_the_username_but_not_the_address() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..2 {
            t.failed(t.begin_at("eve", HOME, now).unwrap());
        }
        t.succeeded(t.begin_at("eve", HOME, now).unwrap());
        for _ in 0..USER_FREE_FAILURES {
            t.failed(t.begin_at("eve", HOME, now).unwrap());
        }
        assert!(t.begin_at("eve", HOME, now).is_err());
        // The address holds 2 + 3 failures; the success was not counted.
        let entries = t.entries.lock().unwrap();
        assert_eq!(entries[&addr_key(HOME.unwrap())].failures, 5);
    }

    #[test]
    fn one_address_trying_many_usernames_is_slowed_down_others_are_not() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..ADDRESS_FREE_FAILURES {
            t.failed(t.begin_at(&format!("user{i}"), HOME, now).unwrap());
        }
        let refused = t.begin_at("someone-else", HOME, now).unwrap_err();
        assert_eq!(refused.by, ThrottledBy::Address);
        assert!(t.begin_at("someone-else", AWAY, now).is_ok());
        assert!(t.begin_at("another", None, now).is_ok(), "no address known");
    }

    #[test]
    fn unchecked_attempts_do_not_count() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..10 {
            t.not_checked(t.begin_at("eve", HOME, now).unwrap());
        }
        assert!(t.begin_at("eve", HOME, now).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_key(a), addr_key(b));
        assert_ne!(addr_key(a), addr_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(addr_key(mapped), addr_key(HOME.unwrap()));
    }

    #[test]
    fn memory_stays_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_KEYS + 500) {
            let name = format!("{i}-{}", "x".repeat(1000));
            t.failed(
                t.begin_at(&name, None, now + Duration::from_millis(i as u64))
                    .unwrap(),
            );
        }
        assert!(t.tracked() <= MAX_KEYS);
        let entries = t.entries.lock().unwrap();
        assert!(entries.keys().all(|k| match k {
            Key::User(u) => u.len() <= MAX_USERNAME_BYTES,
            Key::Addr(_) => true,
        }));
        let newest = format!("{}-{}", MAX_KEYS + 499, "x".repeat(1000));
        assert!(
            entries.contains_key(&user_key(&newest)),
            "the oldest go first"
        );
    }
}
