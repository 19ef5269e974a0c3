//! The one way to hash or verify a password: at most a few at once, on blocking threads.
//!
//! An Argon2 hash with the default parameters needs about 19 MiB and tens of milliseconds
//! of one core. Without a bound, a burst of sign-in attempts (even for users that do not
//! exist: they verify a dummy hash, so that timing does not tell) runs one hash per request
//! and memory grows with the burst. The gate admits about one hash per core (at most
//! [`MAX_PERMITS`]); a caller that cannot get a permit within [`WAIT`] gets a 503 with
//! `Retry-After` instead of queueing for ever.
//!
//! Each permit comes with its own Argon2 working memory ([`Scratch`]), reused from one
//! hash to the next, so resident memory after any flood of sign-ins is the baseline plus
//! at most `limit` × 19 MiB, whichever threads ran the hashes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::password::{self, Scratch};

/// Why a hash did not run or finish.
#[derive(Debug)]
pub enum GateError {
    /// No permit came within the wait: the caller should try again after `wait`.
    Overloaded { wait: Duration },
    /// The hash itself failed (it panicked, or the hasher refused its input).
    Failed(String),
}

impl GateError {
    pub const OVERLOADED: &'static str =
        "Herald is checking as many passwords as it allows at once; try again shortly";
}

/// The most hashes at once, whatever the core count: ~19 MiB each.
pub const MAX_PERMITS: usize = 4;
/// How long a caller waits for a permit before the 503.
pub const WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    high_water: AtomicUsize,
    completed: AtomicU64,
    refused: AtomicU64,
}

/// Counts a hash as running for as long as it lives, even if the hash panics.
struct Running(Arc<Counters>);

impl Running {
    fn start(counters: Arc<Counters>) -> Self {
        let now = counters.running.fetch_add(1, Ordering::SeqCst) + 1;
        counters.high_water.fetch_max(now, Ordering::SeqCst);
        Self(counters)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.completed.fetch_add(1, Ordering::SeqCst);
    }
}

/// One per running Herald (it lives in `AppState`); the CLI makes its own.
pub struct PasswordGate {
    permits: Arc<Semaphore>,
    /// One working memory per permit: whoever holds a permit takes one, and gives it back.
    scratches: Arc<std::sync::Mutex<Vec<Scratch>>>,
    limit: usize,
    wait: Duration,
    counters: Arc<Counters>,
}

impl Default for PasswordGate {
    /// One permit per core, from 1 to [`MAX_PERMITS`].
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::new(cores.clamp(1, MAX_PERMITS), WAIT)
    }
}

impl PasswordGate {
    pub fn new(limit: usize, wait: Duration) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            scratches: Arc::new(std::sync::Mutex::new(
                (0..limit).map(|_| Scratch::default()).collect(),
            )),
            limit,
            wait,
            counters: Arc::default(),
        }
    }

    /// How many hashes may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Hashes running now.
    pub fn running(&self) -> usize {
        self.counters.running.load(Ordering::SeqCst)
    }

    /// The most hashes that ever ran at once: never above [`Self::limit`].
    pub fn high_water(&self) -> usize {
        self.counters.high_water.load(Ordering::SeqCst)
    }

    /// Bytes of Argon2 working memory the gate holds: at most one hash's worth per permit.
    pub fn scratch_bytes(&self) -> usize {
        self.scratches
            .lock()
            .map(|s| s.iter().map(Scratch::bytes).sum())
            .unwrap_or(0)
    }

    /// Hashes and verifications finished.
    pub fn completed(&self) -> u64 {
        self.counters.completed.load(Ordering::SeqCst)
    }

    /// Callers sent away with a 503 because no permit came in time.
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::SeqCst)
    }

    /// Runs `work` on a blocking thread once a permit is free. The permit goes with the
    /// work, so a caller that gives up (a client that disconnects) does not free it
    /// before the hash is really done.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, GateError> {
        let permit =
            match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // The semaphore is never closed; treat it like a full gate all the same.
                Ok(Err(_)) | Err(_) => {
                    self.counters.refused.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(
                        limit = self.limit,
                        "password checks are at their limit; answering 503"
                    );
                    return Err(GateError::Overloaded {
                        wait: Duration::from_secs(1),
                    });
                }
            };
        let counters = self.counters.clone();
        let scratches = self.scratches.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _running = Running::start(counters);
            // A permit holder always finds one (there are as many as permits); a hash that
            // panicked lost its memory, and a new one is grown in its place.
            let mut scratch = scratches
                .lock()
                .map(|mut s| s.pop())
                .unwrap_or_default()
                .unwrap_or_default();
            let result = work(&mut scratch);
            if let Ok(mut s) = scratches.lock() {
                s.push(scratch);
            }
            result
        })
        .await
        .map_err(|e| GateError::Failed(format!("the password check failed: {e}")))
    }

    /// An Argon2 hash of a new password.
    pub async fn hash(&self, password: String) -> Result<String, GateError> {
        self.run(move |scratch| password::hash(scratch, &password))
            .await?
            .map_err(|e| GateError::Failed(e.to_string()))
    }

    /// Whether `password` matches `hash`; with no hash (no such user) it verifies against a
    /// dummy hash, so that the answer takes as long either way, and returns false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, GateError> {
        self.run(move |scratch| match hash {
            Some(hash) => password::verify(scratch, &password, &hash),
            None => {
                password::verify(scratch, &password, super::dummy_hash());
                false
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bound_follows_the_cores() {
        let gate = PasswordGate::default();
        assert!((1..=MAX_PERMITS).contains(&gate.limit()));
        assert_eq!(PasswordGate::new(0, WAIT).limit(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_limit_run_at_once_and_the_rest_get_a_503() {
        let gate = Arc::new(PasswordGate::new(2, Duration::from_millis(150)));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.run(|_| std::thread::sleep(Duration::from_millis(50)))
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        let mut busy = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => ok += 1,
                Err(GateError::Overloaded { wait }) => {
                    assert_eq!(wait, Duration::from_secs(1));
                    busy += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(gate.high_water(), 2, "the bound was reached, never passed");
        assert!(ok >= 2 && busy >= 1, "ok {ok}, busy {busy}");
        assert_eq!(gate.refused(), busy);
        assert_eq!(gate.completed(), ok);
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let gate = PasswordGate::new(1, WAIT);
        let hash = gate.hash("correct horse".into()).await.unwrap();
        assert!(gate
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!gate.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!gate.verify("correct horse".into(), None).await.unwrap());
        assert_eq!(gate.completed(), 4);
    }
}
