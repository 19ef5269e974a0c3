//! The dispatcher: claims due deliveries and sends each in its own task, in one of two
//! lanes, so a slow or dead receiver only ever slows down its own deliveries.
//!
//! **Fast lane**: webhooks whose receivers answer quickly (a moving average of their answer
//! times under [`SLOW_AFTER`], 1 s, and no request out for longer). Only their deliveries
//! are claimed into it (`ClaimScope::Only`): at most twice `--delivery-concurrency` held in
//! the process, and a webhook holding twice `--delivery-concurrency-per-webhook` is passed
//! over, or more if it answers many times during one claim round (`books::webhook_cap`), so
//! its sends never wait for the next claim. A send holds its webhook's slot and one of the
//! `--delivery-concurrency` global slots while its request is out.
//!
//! **Slow lane**: every other webhook, slow ones and those not heard from yet (new, or since
//! this process started). Their deliveries are claimed one per webhook per claim
//! (`ClaimScope::OnePerWebhookSkipping`; a new webhook's first may be handed off by ingest,
//! `hand_off.rs`), [`SLOW_PER_WEBHOOK`] (2) per webhook at most, and
//! each holds one of the `--delivery-slow-lane` places (1,024) from its claim until its
//! receiver answers, never a fast slot nor fast claim room. A hanging receiver so costs an
//! idle socket or two, and nothing a fast webhook needs.
//!
//! **Moving**: a fast-lane request out for `SLOW_AFTER` moves its webhook to the slow lane.
//! Its deliveries still waiting here are handed back to the database (to be claimed again,
//! in the slow lane), and the request gives back its fast slot as soon as it has a
//! slow-lane place: a webhook that turns slow holds fast slots for about a second, once.
//! A webhook whose answers come quickly again moves back.
//!
//! So fast webhooks wait only for each other, as long as fewer than `--delivery-slow-lane`
//! slow requests are out at once. A process holds at most twice `--delivery-concurrency`
//! fast-lane deliveries plus the slow lane's places, and has at most
//! `--delivery-concurrency` plus `--delivery-slow-lane` requests out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::delivery::client::{ReceiverResponse, SendError};
use crate::delivery::operational;
use crate::delivery::transport::Transport;
use crate::domain::control::{CircuitChange, CircuitRule, HealthChange, TokenBucket};
use crate::domain::retry::RetrySchedule;
use crate::domain::verdict::{retry_after, verdict, Attempted, Verdict};
use crate::hooks::formats;
use crate::hooks::payload::{self, OutgoingRequest};
use crate::hooks::templates::TemplateSandbox;
use crate::metrics::Metrics;
use crate::secrets::Cipher;
mod books;
mod hand_off;
mod send;
#[cfg(test)]
mod tests;

use books::*;
pub use hand_off::Ticket;

/// How deliveries came to be started here, for `herald_deliveries_taken_total`: a claim
/// (with when its round began, for `herald_claim_round_seconds`) or a hand-off.
#[derive(Clone, Copy)]
enum Taken {
    Claim(Instant),
    HandOff,
}

impl Taken {
    fn label(self) -> &'static str {
        match self {
            Self::Claim(_) => "claim",
            Self::HandOff => "hand_off",
        }
    }

    /// A claim's round ends once its jobs are read (or there were none to read).
    fn round_ended(self, metrics: &Metrics) {
        if let Self::Claim(began) = self {
            metrics.claim_round.observe(began.elapsed().as_secs_f64());
        }
    }
}

use crate::domain::delivery::{AttemptRecord, Claim, ClaimScope, DeliveryJob, Outcome};
use crate::domain::model::Health;
use crate::store::{Store, StoreError, StoreResult};

/// How often idle workers look for due retries when nothing wakes them.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Slack beyond the send timeout that a claim must still have for the worker to send
/// under it without renewing it first.
const RENEW_MARGIN: Duration = Duration::from_secs(5);

/// Most deliveries one claim takes, so one claim stays a short write.
const CLAIM_CHUNK: usize = 256;

/// After a claim that passed over saturated webhooks and came up short, the next one waits
/// this long: with a large backlog of a saturated webhook such a claim reads many rows,
/// and new envelopes (each waking the loop) would otherwise repeat it every millisecond.
/// A slow-lane claim that found nothing is not repeated sooner either.
const SHORT_CLAIM_PAUSE: Duration = Duration::from_millis(10);

/// A request out longer than this marks its receiver as slow, and a webhook is fast again
/// once the moving average of its answer times is below it.
pub const SLOW_AFTER: Duration = Duration::from_secs(1);

/// Deliveries of one slow-lane webhook held, and so sent, at once.
pub const SLOW_PER_WEBHOOK: usize = 2;

/// How long the dispatcher remembers the pace of a webhook it holds nothing of.
const PACE_MEMORY: Duration = Duration::from_secs(600);

/// What a claimed delivery holds while its request is out: in the fast lane its
/// webhook's slot and a global one, in the slow lane a slow-lane place.
enum Slots {
    Fast(OwnedSemaphorePermit, OwnedSemaphorePermit),
    Slow(OwnedSemaphorePermit),
}

/// A claimed send: its slots, dropped as soon as the receiver has answered so writing the
/// result does not keep the next send waiting, and its task.
struct Sending {
    slots: Slots,
    task: u64,
}

/// A job loaded with its claim, and when: it serves a send that starts within
/// [`JOB_FRESH_FOR`] and before any failure of its webhook here (which may have opened its
/// circuit), so a webhook changed while its delivery waited for a slot is sent as it is now.
struct Loaded {
    job: DeliveryJob,
    at: Instant,
}

/// A delivery to start: its claim, its slow-lane place if it has one, and its job when
/// it is known already (a hand-off's).
type Arrival = (Claim, Option<OwnedSemaphorePermit>, Option<Loaded>);

/// The dispatcher's locks guard updates that cannot panic half-way: a poisoned one is
/// still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a job loaded with its claim is sent as loaded.
const JOB_FRESH_FOR: Duration = Duration::from_secs(1);

/// Forgets a held delivery when its task ends, by return or by panic.
struct Forget {
    dispatcher: Arc<Dispatcher>,
    delivery_id: i64,
    task: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.dispatcher
            .in_flight_remove(self.delivery_id, self.task);
    }
}

pub struct DispatcherConfig {
    pub concurrency: usize,
    pub per_webhook: usize,
    /// The same for a webhook whose URL is a broker's.
    pub per_broker: usize,
    /// Places in the slow lane.
    pub slow_lane: usize,
    pub schedule: RetrySchedule,
    /// How long a claim holds; a claim of a crashed process is retaken after it.
    pub lease: Duration,
    /// A webhook whose attempts have all failed for this long is disabled.
    pub disable_after: Duration,
    /// When a webhook's circuit opens, and for how long.
    pub circuit: CircuitRule,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    sender: Transport,
    cipher: Cipher,
    templates: Arc<TemplateSandbox>,
    config: DispatcherConfig,
    wake: Notify,
    /// The fast lane's send slots.
    global: Arc<Semaphore>,
    /// The slow lane's places.
    slow: Arc<Semaphore>,
    /// Deliveries this process holds, so a renewed claim never sends one twice here but its
    /// task goes on under the newer token, and so claims stay bounded; and the webhooks'
    /// lanes.
    in_flight: Mutex<InFlight>,
    metrics: Arc<Metrics>,
    /// Whether the slow lane may have new work: set by whatever can bring some (an ingest,
    /// a slow-lane delivery finishing, a hand-back, a poll), cleared by its claim. The
    /// fast lane's comings and goings bring none, and that claim reads past every fast
    /// webhook's backlog.
    slow_work: AtomicBool,
    /// Set on shutdown: the claim loop stops taking new work.
    stopping: AtomicBool,
    /// Set once the claim loop runs: only then does ingest hand deliveries to this process
    /// (not in an API-only one, nor before it has recovered its claims).
    claiming: AtomicBool,
    /// When the claim loop last went round (Unix ms), for the readiness check.
    heartbeat: AtomicI64,
    /// Webhooks' settings that hand-offs make jobs with (`hand_off.rs`).
    settings: Mutex<hand_off::Settings>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        sender: Transport,
        cipher: Cipher,
        templates: Arc<TemplateSandbox>,
        config: DispatcherConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sender,
            cipher,
            templates,
            global: Arc::new(Semaphore::new(config.concurrency.max(1))),
            slow: Arc::new(Semaphore::new(config.slow_lane.max(1))),
            config,
            wake: Notify::new(),
            in_flight: Mutex::new(InFlight::default()),
            metrics,
            slow_work: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            claiming: AtomicBool::new(false),
            heartbeat: AtomicI64::new(0),
            settings: Mutex::default(),
        })
    }

    /// Called after ingest commits: new deliveries go out without waiting for a poll.
    pub fn wake(&self) {
        self.slow_work.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether the claim loop went round within `stall`. An idle loop goes round at least
    /// every `POLL_INTERVAL`, so only a loop stuck in one round (a claim that does not
    /// return) or one that has stopped falls behind.
    pub fn is_alive(&self, stall: Duration) -> bool {
        let last = self.heartbeat.load(Ordering::Relaxed);
        let stall = stall.max(POLL_INTERVAL * 2);
        Utc::now().timestamp_millis() - last < stall.as_millis() as i64
    }

    /// The books. Their updates cannot panic half-way, so a poisoned lock is still sound.
    fn books(&self) -> MutexGuard<'_, InFlight> {
        lock(&self.in_flight)
    }

    /// Graceful shutdown: stop claiming, let in-flight deliveries finish for up to `grace`,
    /// then release the leases of those still running so they are sent again elsewhere.
    pub async fn drain(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let deadline = Instant::now() + grace;
        loop {
            let left: Vec<i64> = self.books().held.keys().copied().collect();
            if left.is_empty() {
                tracing::info!("all in-flight deliveries finished");
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(count = left.len(), "releasing deliveries still in flight");
                if let Err(e) = self.store.release(&left).await {
                    tracing::error!(error = %e, "releasing leases failed; they expire on their own");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Most fast-lane deliveries this process holds at once (sending, waiting for a slot,
    /// or having their result written): twice what may be sent at once, so slots never sit
    /// idle while claims are written, yet a backlog stays in the database and not in memory.
    fn hold_cap(&self) -> usize {
        self.config.concurrency.max(1) * 2
    }

    fn limits(&self) -> SendLimits {
        SendLimits {
            http: self.config.per_webhook,
            broker: self.config.per_broker,
        }
    }

    /// The claim loop; runs until shutdown.
    pub async fn run(self: Arc<Self>) {
        self.claiming.store(true, Ordering::SeqCst);
        // When a slow-lane claim last found nothing.
        let mut slow_found_nothing: Option<Instant> = None;
        loop {
            self.heartbeat
                .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let plan = self
                .books()
                .plan(self.hold_cap(), self.limits(), Instant::now());
            let now = Utc::now();
            // Taken before claiming, so it is never later than the stored lease's end.
            let expires = Instant::now() + self.config.lease;
            let lease_until =
                now + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
            let mut more = false;
            // Claims a rate limit had no token for, to be given back unsent.
            let mut refused = Vec::new();
            let mut fast_room = plan.fast_room;

            if plan.fast_room > 0 && !plan.fast.is_empty() {
                let limit = plan.fast_room.min(CLAIM_CHUNK);
                let scope = ClaimScope::Only(&plan.fast);
                let round = Instant::now();
                match self
                    .store
                    .claim_due_in(now, lease_until, limit as i64, scope)
                    .await
                {
                    Ok(claims) => {
                        more |= claims.len() == limit;
                        if claims.len() < limit {
                            self.books().drained(&plan.fast);
                        }
                        fast_room = fast_room.saturating_sub(claims.len());
                        let claimed = !claims.is_empty();
                        let claims = claims.into_iter().map(|c| (c, None, None)).collect();
                        let taken = Taken::Claim(round);
                        self.start(claims, expires, Lane::Fast, taken, &mut refused)
                            .await;
                        if claimed {
                            self.books().claim_round(round.elapsed());
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming deliveries failed");
                        tokio::time::sleep(POLL_INTERVAL).await;
                        continue;
                    }
                }
            }
            // Rate-limited fast webhooks, each for what its tokens admit: never more claims
            // than may be sent, so none waits holding a claim or comes back unsent.
            for &(webhook_id, tokens) in &plan.fast_limited {
                let limit = tokens.min(fast_room).min(CLAIM_CHUNK);
                if limit == 0 {
                    break;
                }
                let scope = ClaimScope::Only(std::slice::from_ref(&webhook_id));
                let round = Instant::now();
                match self
                    .store
                    .claim_due_in(now, lease_until, limit as i64, scope)
                    .await
                {
                    Ok(claims) => {
                        fast_room = fast_room.saturating_sub(claims.len());
                        let claims = claims.into_iter().map(|c| (c, None, None)).collect();
                        let taken = Taken::Claim(round);
                        self.start(claims, expires, Lane::Fast, taken, &mut refused)
                            .await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming deliveries failed");
                        break;
                    }
                }
            }

            // The slow-lane claim looks at everything but the fast webhooks. It runs only when
            // there may be something new for it, and one that found nothing is not repeated
            // at once, so it does not double every fast round.
            let slow_pause = slow_found_nothing
                .map(|at| SHORT_CLAIM_PAUSE.saturating_sub(at.elapsed()))
                .filter(|left| !left.is_zero() && self.slow_work.load(Ordering::SeqCst));
            if slow_pause.is_none() && self.slow_work.load(Ordering::SeqCst) {
                let places: Vec<OwnedSemaphorePermit> = (0..CLAIM_CHUNK)
                    .map_while(|_| self.slow.clone().try_acquire_owned().ok())
                    .collect();
                if !places.is_empty() {
                    self.slow_work.store(false, Ordering::SeqCst);
                    let scope = ClaimScope::OnePerWebhookSkipping(&plan.slow_skip);
                    let round = Instant::now();
                    match self
                        .store
                        .claim_due_in(now, lease_until, places.len() as i64, scope)
                        .await
                    {
                        Ok(claims) => {
                            slow_found_nothing = claims.is_empty().then(Instant::now);
                            if !claims.is_empty() {
                                // It takes at most one of a webhook: more may be due.
                                self.slow_work.store(true, Ordering::SeqCst);
                                more = true;
                            }
                            let claims = claims.into_iter().zip(places);
                            let claims = claims.map(|(c, place)| (c, Some(place), None));
                            let claims = claims.collect();
                            let taken = Taken::Claim(round);
                            self.start(claims, expires, Lane::Slow, taken, &mut refused)
                                .await;
                        }
                        Err(e) => {
                            self.slow_work.store(true, Ordering::SeqCst);
                            tracing::error!(error = %e, "claiming deliveries failed");
                            tokio::time::sleep(POLL_INTERVAL).await;
                            continue;
                        }
                    }
                }
            }
            if !refused.is_empty() {
                if let Err(e) = self.store.release(&refused).await {
                    tracing::warn!(count = refused.len(), error = %e, "could not release leases; they expire on their own");
                }
            }
            if more {
                continue;
            }
            // A rate-limited webhook's next token ends the wait, so its limit is used in full.
            let mut wait = slow_pause.unwrap_or(POLL_INTERVAL);
            if let Some(at) = plan.next_token {
                let until = at.saturating_duration_since(Instant::now());
                wait = wait.min(until.max(Duration::from_millis(1)));
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {
                    // Retries fall due with time.
                    self.slow_work.store(true, Ordering::SeqCst);
                }
            }
            if plan.passing_over {
                tokio::time::sleep(SHORT_CLAIM_PAUSE).await;
            }
        }
    }

    /// Starts a task for each new claim, with its job: known already (a hand-off's) or
    /// loaded for all the others in one query; a delivery already held goes on in its own
    /// task, under the new token. A claim its webhook's rate limit has no token for goes to
    /// `refused`, to be given back unsent.
    async fn start(
        self: &Arc<Self>,
        claims: Vec<Arrival>,
        expires: Instant,
        lane: Lane,
        taken: Taken,
        refused: &mut Vec<i64>,
    ) {
        let mut admitted = Vec::with_capacity(claims.len());
        let processes = self.store.claiming_processes();
        {
            let mut books = self.books();
            let now = Instant::now();
            for (claim, place, known) in claims {
                if !books.admit(&claim, processes, now) {
                    refused.push(claim.delivery_id);
                    continue;
                }
                if let Some(task) = books.insert(claim, expires, lane, now) {
                    admitted.push((claim, task, place, known));
                }
            }
        }
        self.metrics.record_taken(taken.label(), admitted.len());
        let ids: Vec<i64> = admitted
            .iter()
            .filter(|(_, _, _, known)| known.is_none())
            .map(|(c, _, _, _)| c.delivery_id)
            .collect();
        let loaded_at = Instant::now();
        let mut jobs: HashMap<i64, DeliveryJob> = if ids.is_empty() {
            HashMap::new()
        } else {
            match self.store.load_jobs(&ids).await {
                Ok(jobs) => jobs.into_iter().map(|j| (j.delivery_id, j)).collect(),
                Err(e) => {
                    // Each task loads its own instead.
                    tracing::warn!(error = %e, "could not load the claimed deliveries' jobs");
                    HashMap::new()
                }
            }
        };
        taken.round_ended(&self.metrics);
        if !jobs.is_empty() {
            let mut settings = lock(&self.settings);
            for job in jobs.values() {
                settings.keep(&job.webhook);
            }
        }
        {
            let mut books = self.books();
            let known = admitted
                .iter()
                .filter_map(|(_, _, _, known)| known.as_ref());
            for job in jobs.values().chain(known.map(|l| &l.job)) {
                books.learn_destination(job.webhook.id, job.webhook.url.is_broker());
            }
        }
        for (claim, task, place, known) in admitted {
            let job = known.or_else(|| {
                jobs.remove(&claim.delivery_id)
                    .map(|job| Loaded { job, at: loaded_at })
            });
            let this = self.clone();
            tokio::spawn(async move {
                // Forgotten however the task ends, a panicking send included: a delivery
                // held forever would hold its webhook's places and keep its claim from
                // being retaken.
                let _forget = Forget {
                    dispatcher: this.clone(),
                    delivery_id: claim.delivery_id,
                    task,
                };
                this.deliver_claimed(claim, task, place, job).await;
            });
        }
    }

    fn in_flight_token(&self, id: i64) -> Option<i64> {
        self.in_flight_entry(id).map(|held| held.token)
    }

    fn in_flight_entry(&self, id: i64) -> Option<Held> {
        self.books().held.get(&id).copied()
    }

    /// Wakes the claim loop when this frees a place it was waiting for: a slow-lane one,
    /// a fast webhook dropping below its cap, or the fast lane falling to three quarters
    /// of its own.
    fn in_flight_remove(&self, id: i64, task: u64) {
        let (removed, fifo, webhook_cap) = {
            let mut books = self.books();
            let removed = books.remove(id, task);
            let hook = removed
                .as_ref()
                .and_then(|(held, _, _)| books.hooks.get(&held.webhook_id));
            let fifo = hook.is_some_and(|hook| hook.fifo);
            let floor = self.limits().floor(hook);
            let cap = books::webhook_cap(floor, hook.and_then(|h| h.pace), books.round);
            (removed, fifo, cap)
        };
        if let Some((held, webhook_left, fast_left)) = removed {
            // A finished fifo delivery frees the next one of its webhook.
            if held.lane == Lane::Slow || fifo {
                self.wake();
            } else if webhook_left + 1 == webhook_cap || fast_left == self.hold_cap() * 3 / 4 {
                self.wake.notify_one();
            }
        }
    }

    /// Gives claimed deliveries, forgotten here, back to the database to be claimed again
    /// (in their webhook's lane by then), each with the end of its claim. One whose claim
    /// ends soon is left to expire: a release clears any lease, and once ours is over
    /// another process's could be the one it clears.
    async fn hand_back(&self, claims: &[(i64, Instant)]) {
        let soon = Instant::now() + RENEW_MARGIN;
        let ids: Vec<i64> = claims
            .iter()
            .filter(|(_, expires)| *expires > soon)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.store.release(&ids).await {
            tracing::warn!(count = ids.len(), error = %e, "could not release leases; they expire on their own");
        }
        self.wake();
    }
}
