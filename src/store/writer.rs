//! What the two group committers (`sqlite/group_commit.rs`, `postgres/group_commit.rs`)
//! share: how large a batch may grow, and the heartbeat the readiness check reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most this many jobs share a transaction, so one commit stays short.
pub(crate) const MAX_BATCH: usize = 512;

/// The writer's heartbeat, for the readiness check: when it began the batch it is
/// writing, or that it is waiting for work (which is progress, however long it lasts).
pub(crate) struct Busy {
    epoch: Instant,
    /// Milliseconds from `epoch` to the start of the current batch, plus one; 0 while idle.
    since: AtomicU64,
}

impl Busy {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn start(&self) {
        self.since.store(self.now(), Ordering::Relaxed);
    }

    pub(crate) fn idle(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// How long the current batch has been going; `None` while waiting for work.
    pub(crate) fn busy_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(self.now().saturating_sub(since))),
        }
    }
}
