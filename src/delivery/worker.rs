//! The dispatcher: claims due deliveries and sends each in its own task, in one of two
//! lanes, so a slow or dead receiver only ever slows down its own deliveries.
//!
//! **Fast lane**: webhooks whose receivers answer quickly (a moving average of their answer
//! times under [`SLOW_AFTER`], 1 s, and no request out for longer). Only their deliveries
//! are claimed into it (`ClaimScope::Only`): at most twice `--delivery-concurrency` held in
//! the process, and a webhook holding twice `--delivery-concurrency-per-webhook` is passed
//! over. A send holds its webhook's slot and one of the `--delivery-concurrency` global
//! slots while its request is out.
//!
//! **Slow lane**: every other webhook, slow ones and those not heard from yet (new, or since
//! this process started). Their deliveries are claimed one per webhook per claim
//! (`ClaimScope::OnePerWebhookSkipping`), [`SLOW_PER_WEBHOOK`] (2) per webhook at most, and
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

use crate::delivery::client::HttpSender;
use crate::delivery::client::ReceiverResponse;
use crate::delivery::operational;
use crate::delivery::retry::RetrySchedule;
use crate::domain::control::{CircuitChange, CircuitRule, HealthChange, TokenBucket};
use crate::hooks::formats;
use crate::hooks::payload::{self, OutgoingRequest};
use crate::hooks::templates::TemplateSandbox;
use crate::metrics::Metrics;
use crate::secrets::Cipher;
use crate::store::{
    AttemptRecord, Claim, ClaimScope, DeliveryJob, DeliveryState, Health, Outcome, Store,
    StoreError, StoreResult,
};

/// The longest `Retry-After` Herald honours; a receiver cannot park a delivery for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A 429 or 503 answer's `Retry-After` (seconds or an HTTP date), within bounds.
fn retry_after(result: &Result<ReceiverResponse, String>) -> Option<chrono::Duration> {
    let response = result.as_ref().ok()?;
    if response.status != 429 && response.status != 503 {
        return None;
    }
    let value = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim()
        .to_string();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(&value).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    chrono::Duration::from_std(wait.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)).ok()
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Fast,
    Slow,
}

/// A delivery this process holds: its latest claim token, when that claim ends at the
/// latest, its webhook and lane.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Held {
    token: i64,
    expires: Instant,
    webhook_id: i64,
    lane: Lane,
    /// The task that sends it: one whose delivery was handed back (and perhaps claimed
    /// again, by a new task) must not forget the newer claim.
    task: u64,
    /// Past waiting for slots: it is being sent and can no longer be handed back.
    sending: bool,
}

/// What the dispatcher knows of one webhook.
struct Hook {
    /// Its deliveries held here.
    held: usize,
    /// In the fast lane.
    fast: bool,
    /// A moving average of its answer times, each answer weighing half; `None` before the
    /// first.
    pace: Option<Duration>,
    /// Its requests out for longer than `SLOW_AFTER`.
    stale: usize,
    /// Its fast-lane limit. Closed when the webhook turns slow, so that deliveries waiting
    /// for it stop waiting (and are handed back).
    permits: Option<Arc<Semaphore>>,
    /// When it was last claimed or answered, to forget webhooks idle for long.
    touched: Instant,
    /// Its rate limit's tokens in this process, learned from its claims; `None` without one.
    bucket: Option<TokenBucket>,
    /// Delivered in order: each finished delivery may free the next one at once.
    fifo: bool,
}

impl Hook {
    fn new(now: Instant) -> Self {
        Self {
            held: 0,
            fast: false,
            pace: None,
            stale: 0,
            permits: None,
            touched: now,
            bucket: None,
            fifo: false,
        }
    }
}

/// The deliveries this process has claimed and not finished, and the webhooks they are
/// for, so the claim loop knows which lane each webhook is in and which hold enough.
#[derive(Default)]
struct InFlight {
    held: HashMap<i64, Held>,
    hooks: HashMap<i64, Hook>,
    /// Held deliveries in the fast lane.
    fast_held: usize,
    /// The last task number given out.
    tasks: u64,
}

/// What one round of claims may take, as the books stood.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    fast_room: usize,
    /// Fast webhooks below their cap: the fast-lane claim takes only theirs.
    fast: Vec<i64>,
    /// What the slow-lane claim passes over: fast webhooks, and slow ones holding enough.
    slow_skip: Vec<i64>,
    /// Some webhook holds all it may, so claims pass over its due deliveries.
    passing_over: bool,
    /// Fast webhooks with a rate limit, each claimed on its own for no more than its
    /// tokens admit (and its cap).
    fast_limited: Vec<(i64, usize)>,
    /// The earliest next token of a rate-limited webhook passed over for want of one.
    next_token: Option<Instant>,
}

/// Whether a delivery that got its slots goes out.
#[derive(Debug, PartialEq)]
enum Start {
    Send,
    /// It was handed back meanwhile (its webhook turned slow).
    Gone,
    /// It waited for fast slots, but its webhook has turned slow: forgotten here, and to be
    /// handed back (its claim ends then).
    HandBack(Instant),
}

impl InFlight {
    /// The new task's number; `None` when the delivery was already held, and then its task
    /// goes on under the new token.
    fn insert(&mut self, claim: Claim, expires: Instant, lane: Lane, now: Instant) -> Option<u64> {
        if let Some(held) = self.held.get_mut(&claim.delivery_id) {
            held.token = claim.token;
            held.expires = expires;
            return None;
        }
        self.tasks += 1;
        self.held.insert(
            claim.delivery_id,
            Held {
                token: claim.token,
                expires,
                webhook_id: claim.webhook_id,
                lane,
                task: self.tasks,
                sending: false,
            },
        );
        let hook = self
            .hooks
            .entry(claim.webhook_id)
            .or_insert_with(|| Hook::new(now));
        hook.held += 1;
        hook.touched = now;
        if lane == Lane::Fast {
            self.fast_held += 1;
        }
        Some(self.tasks)
    }

    /// Forgets the delivery of `task`; returns it, how many its webhook still holds and how
    /// many the fast lane still holds.
    fn remove(&mut self, delivery_id: i64, task: u64) -> Option<(Held, usize, usize)> {
        if self.held.get(&delivery_id)?.task != task {
            return None;
        }
        let held = self.held.remove(&delivery_id)?;
        if held.lane == Lane::Fast {
            self.fast_held = self.fast_held.saturating_sub(1);
        }
        let left = match self.hooks.get_mut(&held.webhook_id) {
            Some(hook) => {
                hook.held = hook.held.saturating_sub(1);
                hook.held
            }
            None => 0,
        };
        Some((held, left, self.fast_held))
    }

    /// Takes a rate-limit token for a new claim, learning the webhook's limit and ordering
    /// from it; false when its bucket is empty: the claim is then given back unsent.
    fn admit(&mut self, claim: &Claim, now: Instant) -> bool {
        if self.held.contains_key(&claim.delivery_id) {
            return true;
        }
        let hook = self
            .hooks
            .entry(claim.webhook_id)
            .or_insert_with(|| Hook::new(now));
        hook.fifo = claim.fifo;
        match claim.rate_limit {
            None => {
                hook.bucket = None;
                true
            }
            Some(limit) => {
                let bucket = hook
                    .bucket
                    .get_or_insert_with(|| TokenBucket::new(limit, now));
                bucket.set_limit(limit, now);
                bucket.take(now)
            }
        }
    }

    /// What to claim next; forgets webhooks idle for `PACE_MEMORY` (a rate limit's bucket
    /// only once it is full again). A webhook whose bucket is empty is passed over by every
    /// claim until its next token; a fast one with tokens is claimed on its own.
    fn plan(&mut self, hold_cap: usize, webhook_cap: usize, now: Instant) -> Plan {
        self.hooks.retain(|_, hook| {
            hook.held > 0
                || hook.stale > 0
                || now.duration_since(hook.touched) < PACE_MEMORY
                || hook.bucket.as_mut().is_some_and(|b| !b.is_full(now))
        });
        let mut plan = Plan {
            fast_room: hold_cap.saturating_sub(self.fast_held),
            ..Plan::default()
        };
        for (&id, hook) in &mut self.hooks {
            let tokens = hook.bucket.as_mut().map(|b| b.available(now));
            if tokens == Some(0) {
                plan.slow_skip.push(id);
                if let Some(next) = hook.bucket.as_mut().map(|b| b.next_token(now)) {
                    plan.next_token = Some(plan.next_token.map_or(next, |t| t.min(next)));
                }
                continue;
            }
            if hook.fast {
                plan.slow_skip.push(id);
                if hook.held < webhook_cap {
                    match tokens {
                        Some(n) => plan.fast_limited.push((id, n.min(webhook_cap - hook.held))),
                        None => plan.fast.push(id),
                    }
                } else {
                    plan.passing_over = true;
                }
            } else if hook.held >= SLOW_PER_WEBHOOK {
                plan.slow_skip.push(id);
                plan.passing_over = true;
            }
        }
        plan
    }

    /// The fast-lane limit of a webhook in the fast lane.
    fn fast_limit(&mut self, webhook_id: i64, per_webhook: usize) -> Option<Arc<Semaphore>> {
        let hook = self.hooks.get_mut(&webhook_id).filter(|h| h.fast)?;
        Some(
            hook.permits
                .get_or_insert_with(|| Arc::new(Semaphore::new(per_webhook)))
                .clone(),
        )
    }

    fn start_sending(&mut self, delivery_id: i64, task: u64) -> Start {
        let Some(held) = self
            .held
            .get_mut(&delivery_id)
            .filter(|held| held.task == task)
        else {
            return Start::Gone;
        };
        let fast = self.hooks.get(&held.webhook_id).is_some_and(|h| h.fast);
        if held.lane == Lane::Fast && !fast {
            let expires = held.expires;
            self.remove(delivery_id, task);
            return Start::HandBack(expires);
        }
        held.sending = true;
        Start::Send
    }

    /// A request of this webhook has been out for `SLOW_AFTER`. If the webhook was in the
    /// fast lane, it is not any more, and its deliveries there still waiting for slots are
    /// forgotten: returned with the ends of their claims, to be handed back.
    fn went_stale(&mut self, webhook_id: i64) -> Option<Vec<(i64, Instant)>> {
        let hook = self.hooks.get_mut(&webhook_id)?;
        hook.stale += 1;
        hook.pace = Some(hook.pace.map_or(SLOW_AFTER, |p| p.max(SLOW_AFTER)));
        if !hook.fast {
            return None;
        }
        hook.fast = false;
        if let Some(permits) = hook.permits.take() {
            permits.close();
        }
        let waiting: Vec<(i64, Instant)> = self
            .held
            .iter()
            .filter(|(_, h)| h.webhook_id == webhook_id && h.lane == Lane::Fast && !h.sending)
            .map(|(id, h)| (*id, h.expires))
            .collect();
        for (id, _) in &waiting {
            self.held.remove(id);
        }
        hook.held = hook.held.saturating_sub(waiting.len());
        self.fast_held = self.fast_held.saturating_sub(waiting.len());
        Some(waiting)
    }

    /// A stale fast-lane request now holds a slow-lane place instead of fast slots.
    fn moved_to_slow_lane(&mut self, delivery_id: i64, task: u64) {
        if let Some(held) = self
            .held
            .get_mut(&delivery_id)
            .filter(|h| h.task == task && h.lane == Lane::Fast)
        {
            held.lane = Lane::Slow;
            self.fast_held = self.fast_held.saturating_sub(1);
        }
    }

    /// A request of this webhook ended after `took` (answered or failed); `stale` when it
    /// had been out for `SLOW_AFTER`. True when this moved the webhook to the fast lane.
    fn answered(&mut self, webhook_id: i64, took: Duration, stale: bool, now: Instant) -> bool {
        let Some(hook) = self.hooks.get_mut(&webhook_id) else {
            return false;
        };
        if stale {
            hook.stale = hook.stale.saturating_sub(1);
        }
        let pace = hook.pace.map_or(took, |p| (p + took) / 2);
        hook.pace = Some(pace);
        hook.touched = now;
        if hook.fast || hook.stale > 0 || pace >= SLOW_AFTER {
            return false;
        }
        hook.fast = true;
        true
    }
}

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
    sender: HttpSender,
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
    /// When the claim loop last went round (Unix ms), for the readiness check.
    heartbeat: AtomicI64,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        sender: HttpSender,
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
            heartbeat: AtomicI64::new(0),
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
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Deliveries of one fast webhook held before the claim loop passes over that webhook,
    /// so one webhook's backlog cannot take every place and starve the others.
    fn webhook_cap(&self) -> usize {
        self.config.per_webhook.max(1) * 2
    }

    /// The claim loop; runs until shutdown.
    pub async fn run(self: Arc<Self>) {
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
                .plan(self.hold_cap(), self.webhook_cap(), Instant::now());
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
                match self
                    .store
                    .claim_due_in(now, lease_until, limit as i64, scope)
                    .await
                {
                    Ok(claims) => {
                        more |= claims.len() == limit;
                        fast_room = fast_room.saturating_sub(claims.len());
                        for claim in claims {
                            self.spawn(claim, expires, Lane::Fast, None, &mut refused);
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
                match self
                    .store
                    .claim_due_in(now, lease_until, limit as i64, scope)
                    .await
                {
                    Ok(claims) => {
                        fast_room = fast_room.saturating_sub(claims.len());
                        for claim in claims {
                            self.spawn(claim, expires, Lane::Fast, None, &mut refused);
                        }
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
                            for (claim, place) in claims.into_iter().zip(places) {
                                self.spawn(claim, expires, Lane::Slow, Some(place), &mut refused);
                            }
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

    /// Starts the task of a new claim; a delivery already held goes on in its own task,
    /// under the new token. A claim its webhook's rate limit has no token for goes to
    /// `refused`, to be given back unsent.
    fn spawn(
        self: &Arc<Self>,
        claim: Claim,
        expires: Instant,
        lane: Lane,
        place: Option<OwnedSemaphorePermit>,
        refused: &mut Vec<i64>,
    ) {
        let task = {
            let mut books = self.books();
            let now = Instant::now();
            if !books.admit(&claim, now) {
                refused.push(claim.delivery_id);
                return;
            }
            books.insert(claim, expires, lane, now)
        };
        let Some(task) = task else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            // Forgotten however the task ends, a panicking send included: a delivery held
            // forever would hold its webhook's places and keep its claim from being retaken.
            let _forget = Forget {
                dispatcher: this.clone(),
                delivery_id: claim.delivery_id,
                task,
            };
            this.deliver_claimed(claim, task, place).await;
        });
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
        let (removed, fifo) = {
            let mut books = self.books();
            let removed = books.remove(id, task);
            let fifo = removed
                .as_ref()
                .and_then(|(held, _, _)| books.hooks.get(&held.webhook_id))
                .is_some_and(|hook| hook.fifo);
            (removed, fifo)
        };
        if let Some((held, webhook_left, fast_left)) = removed {
            // A finished fifo delivery frees the next one of its webhook.
            if held.lane == Lane::Slow || fifo {
                self.wake();
            } else if webhook_left + 1 == self.webhook_cap() || fast_left == self.hold_cap() * 3 / 4
            {
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

    async fn deliver_claimed(&self, claim: Claim, task: u64, place: Option<OwnedSemaphorePermit>) {
        let delivery_id = claim.delivery_id;
        let slots = match place {
            Some(place) => Slots::Slow(place),
            None => {
                // The webhook's own limit first: waiting for it holds no global slot. It is
                // gone, or closed while waiting, when the webhook turns slow.
                let limit = self
                    .books()
                    .fast_limit(claim.webhook_id, self.config.per_webhook.max(1));
                let hook_permit = match limit {
                    Some(limit) => limit.acquire_owned().await.ok(),
                    None => None,
                };
                let Some(hook_permit) = hook_permit else {
                    let forgotten = self.books().remove(delivery_id, task);
                    if let Some((held, _, _)) = forgotten {
                        self.hand_back(&[(delivery_id, held.expires)]).await;
                    }
                    return;
                };
                let Ok(permit) = self.global.clone().acquire_owned().await else {
                    return;
                };
                Slots::Fast(hook_permit, permit)
            }
        };
        let start = self.books().start_sending(delivery_id, task);
        match start {
            Start::Send => {}
            Start::Gone => return,
            Start::HandBack(expires) => return self.hand_back(&[(delivery_id, expires)]).await,
        }
        if self.stopping.load(Ordering::SeqCst) {
            // Shutting down: hand it back rather than start a send we may not finish.
            if let Err(e) = self.store.release(&[delivery_id]).await {
                tracing::warn!(delivery_id, error = %e, "could not release a lease");
            }
            return;
        }
        let result = async {
            let Some(token) = self.renew_claim(delivery_id).await? else {
                tracing::debug!(delivery_id, "claim lost while waiting; not sending");
                return Ok(());
            };
            let job = self.store.load_job(delivery_id).await?;
            // Claimed before its webhook's circuit opened, or not the probe: it waits,
            // unsent and with no attempt counted, until the circuit lets it through.
            if !job.webhook.circuit.lets_through(delivery_id) {
                tracing::debug!(
                    delivery_id,
                    webhook_id = job.webhook.id,
                    "the circuit is open: the delivery waits"
                );
                return self.store.release(&[delivery_id]).await;
            }
            if !job.webhook.enabled {
                return self
                    .store
                    .abandon(
                        delivery_id,
                        Some(token),
                        "the webhook was disabled before this delivery was sent",
                    )
                    .await;
            }
            self.attempt(job, Some(token), Some(Sending { slots, task }))
                .await
        }
        .await;
        match result {
            Ok(()) => {}
            // Expected after a stall longer than the lease: the newer claim has it.
            Err(e @ StoreError::Conflict(_)) => {
                tracing::warn!(delivery_id, error = %e, "delivery result not recorded")
            }
            Err(e) => tracing::error!(delivery_id, error = %e, "delivery could not be processed"),
        }
    }

    /// Sends a claimed delivery, watching its receiver's pace. Out for `SLOW_AFTER`, the
    /// request marks its webhook slow (handing back what it has waiting in the fast lane)
    /// and, in the fast lane, moves to the slow lane as soon as there is a place, giving
    /// back its fast slots. Whatever it holds is dropped when the receiver answers.
    async fn send_paced(
        &self,
        request: &OutgoingRequest,
        webhook_id: i64,
        delivery_id: i64,
        sending: Sending,
    ) -> Result<ReceiverResponse, String> {
        let clock = Instant::now();
        let send = self.sender.send(request);
        tokio::pin!(send);
        let slots = sending.slots;
        if let Ok(result) = tokio::time::timeout(SLOW_AFTER, &mut send).await {
            drop(slots);
            self.answered(webhook_id, clock.elapsed(), false);
            return result;
        }
        let waiting = self.books().went_stale(webhook_id);
        if let Some(waiting) = waiting {
            tracing::info!(
                webhook_id,
                handed_back = waiting.len(),
                "webhook moved to the slow lane: a request has been out for {}",
                humantime::format_duration(SLOW_AFTER)
            );
            self.hand_back(&waiting).await;
        }
        let result = match slots {
            Slots::Slow(place) => {
                let result = send.await;
                drop(place);
                result
            }
            Slots::Fast(hook_permit, permit) => {
                let fast = (hook_permit, permit);
                tokio::select! {
                    result = &mut send => {
                        drop(fast);
                        result
                    }
                    place = self.slow.clone().acquire_owned() => {
                        drop(fast);
                        self.books().moved_to_slow_lane(delivery_id, sending.task);
                        let result = send.await;
                        drop(place);
                        result
                    }
                }
            }
        };
        self.answered(webhook_id, clock.elapsed(), true);
        result
    }

    fn answered(&self, webhook_id: i64, took: Duration, stale: bool) {
        let promoted = self
            .books()
            .answered(webhook_id, took, stale, Instant::now());
        if promoted {
            tracing::debug!(webhook_id, "webhook in the fast lane: it answers quickly");
            self.wake.notify_one();
        }
    }

    /// What an attempt did to its webhook's circuit, said once, here: `Opened` is where
    /// "this attempt opened the circuit" is known, and announced (`webhook.circuit_opened`,
    /// once per opening; a failed probe's `Reopened` only logs, or every probe would
    /// announce again). A closed circuit's backlog is due again at once.
    async fn circuit_changed(&self, job: &DeliveryJob, change: &HealthChange) {
        let (webhook_id, webhook) = (job.webhook.id, job.webhook.name.as_str());
        let namespace = job.webhook.namespace.as_str();
        let until = change
            .circuit_open_until
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        match change.circuit {
            CircuitChange::None => {}
            CircuitChange::Opened => {
                tracing::warn!(
                    webhook_id, %namespace, %webhook, failures = change.circuit_failures, probe_at = %until,
                    "circuit opened: the receiver kept failing; its deliveries wait for the probe"
                );
                let detail = format!(
                    "{} attempts in a row failed; paused for {}",
                    change.circuit_failures,
                    humantime::format_duration(self.config.circuit.cooldown)
                );
                crate::delivery::operational::circuit_opened(&*self.store, webhook_id, &detail)
                    .await;
            }
            CircuitChange::Reopened => tracing::warn!(
                webhook_id, %namespace, %webhook, probe_at = %until,
                "circuit opened again: the probe failed"
            ),
            CircuitChange::Closed => {
                tracing::info!(webhook_id, %namespace, %webhook, "circuit closed: the receiver answers again");
                self.wake();
            }
        }
    }

    /// Extends this process's claim for a full lease right before sending, since waiting
    /// for a slot may have outlasted it; `None` when another claim took over.
    /// A claim that outlasts a whole send needs no renewal: no other process can take it
    /// before it expires, and skipping it saves a commit (an fsync on SQLite) per delivery.
    async fn renew_claim(&self, delivery_id: i64) -> StoreResult<Option<i64>> {
        if let Some(held) = self.in_flight_entry(delivery_id) {
            if held.expires > Instant::now() + self.sender.timeout() + RENEW_MARGIN {
                return Ok(Some(held.token));
            }
        }
        loop {
            let Some(token) = self.in_flight_token(delivery_id) else {
                return Ok(None);
            };
            let lease_until =
                Utc::now() + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
            if self
                .store
                .renew_lease(delivery_id, token, lease_until)
                .await?
            {
                return Ok(Some(token));
            }
            // This process may have claimed it again meanwhile: then go on under that claim.
            if self.in_flight_token(delivery_id) == Some(token) {
                return Ok(None);
            }
        }
    }

    /// Sends a delivery again now, with the webhook's current configuration, even when the
    /// webhook is disabled; used by retrigger.
    pub async fn retrigger(&self, delivery_id: i64) -> StoreResult<()> {
        let job = self.store.load_job(delivery_id).await?;
        self.attempt(job, None, None).await
    }

    /// One attempt under the claim `lease`, or a manual one (`None`), holding the slots
    /// of `sending` (if any) only while the request is out.
    async fn attempt(
        &self,
        job: DeliveryJob,
        lease: Option<i64>,
        sending: Option<Sending>,
    ) -> StoreResult<()> {
        let delivery_id = job.delivery_id;
        let manual = lease.is_none();
        let rendered = formats::render(
            job.webhook.format,
            job.webhook.template.as_deref(),
            &job.event_body,
            &job.event,
            &self.templates,
        )
        .await;
        let body = match rendered {
            Ok(body) => body,
            // The body cannot be made from this event with these settings (a template's
            // error, a limit hit): no retry would do better.
            Err(e) => {
                let reason = format!("the request could not be built: {e}");
                let abandoned = self.store.abandon(delivery_id, lease, &reason).await;
                if abandoned.is_ok() {
                    operational::delivery_failed(&*self.store, &job).await;
                }
                return abandoned;
            }
        };
        let request = match payload::render(
            &job.webhook,
            &self.cipher,
            delivery_id,
            &job.event_action,
            body,
        ) {
            Ok(r) => r,
            // Only opening a sealed secret fails here: this process's key is not the one
            // they were sealed with. Another process may have it, so the delivery is handed
            // back (after a pause, not to spin on it), never failed.
            Err(e) => {
                tracing::error!(delivery_id, webhook_id = job.webhook.id, error = %e,
                    "cannot open the webhook's secrets with this process's key; handing the delivery back");
                if lease.is_none() {
                    return Err(StoreError::Crypto(e));
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                return self.store.release(&[delivery_id]).await;
            }
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = match sending {
            Some(sending) => {
                self.send_paced(&request, job.webhook.id, delivery_id, sending)
                    .await
            }
            None => self.sender.send(&request).await,
        };
        let duration_ms = clock.elapsed().as_millis() as i64;
        let automatic_done = job.automatic_attempts + i64::from(!manual);
        let success = matches!(&result, Ok(r) if (200..300).contains(&r.status));
        let status_code = result.as_ref().ok().map(|r| r.status);
        let gone = status_code == Some(410);
        let outcome = if success {
            Outcome::Succeeded
        } else if gone
            || (manual && matches!(job.state, DeliveryState::Succeeded | DeliveryState::Failed))
        {
            // 410: the receiver asks never to be called again. A manual retry of a finished
            // delivery does not restart the schedule.
            Outcome::Failed
        } else {
            // A manual attempt is recorded, but it is not a step of the automatic schedule:
            // a waiting delivery keeps its next automatic attempt.
            let scheduled = match (manual, job.next_attempt_at) {
                (true, Some(at)) => Some(at),
                _ => self
                    .config
                    .schedule
                    .next_attempt(automatic_done, Utc::now()),
            };
            match scheduled {
                Some(at) => {
                    Outcome::RetryAt(retry_after(&result).map_or(at, |wait| Utc::now() + wait))
                }
                None => Outcome::Failed,
            }
        };
        let health = match (success, gone) {
            (true, _) => Health::Succeeded,
            (_, true) => Health::Gone,
            _ => Health::Failed,
        };
        // The common case, a healthy webhook staying healthy, needs no write.
        let unchanged = health == Health::Succeeded
            && job.webhook.failing_since.is_none()
            && job.webhook.circuit == Default::default();
        let verdict = if unchanged {
            Ok(HealthChange::default())
        } else {
            self.store
                .webhook_health_after(
                    job.webhook.id,
                    Some(delivery_id),
                    health,
                    Utc::now(),
                    self.config.disable_after,
                    self.config.circuit,
                )
                .await
        };
        match verdict {
            Ok(change) => {
                if change.disabled {
                    self.metrics.webhooks_auto_disabled.inc();
                    tracing::warn!(
                        webhook_id = job.webhook.id,
                        gone,
                        "webhook disabled: it kept failing or is gone"
                    );
                }
                self.circuit_changed(&job, &change).await;
            }
            Err(e) => {
                tracing::warn!(webhook_id = job.webhook.id, error = %e, "recording webhook health failed")
            }
        }
        let (status, error, response_headers, response_body, truncated) = match result {
            Ok(r) => {
                let error = (!success).then(|| format!("the receiver answered {}", r.status));
                (Some(r.status), error, r.headers, r.body, r.truncated)
            }
            Err(e) => (None, Some(e), Vec::new(), String::new(), false),
        };
        let outcome_label = match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::RetryAt(_) => "retrying",
            Outcome::Failed => "failed",
        };
        self.metrics.record_attempt(
            outcome_label,
            Duration::from_millis(duration_ms.max(0) as u64),
        );
        // A failure says why, where and when next; a success is routine (DEBUG). A status
        // is logged only when there was an answer.
        let (webhook, namespace) = (job.webhook.name.as_str(), job.webhook.namespace.as_str());
        match outcome {
            Outcome::Succeeded => {
                tracing::debug!(
                    delivery_id,
                    webhook_id = job.webhook.id,
                    %namespace,
                    %webhook,
                    status,
                    duration_ms,
                    "delivery attempt succeeded"
                )
            }
            Outcome::RetryAt(_) | Outcome::Failed => {
                let next_attempt = match outcome {
                    Outcome::RetryAt(at) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    _ => "none, the delivery failed".to_string(),
                };
                let error = error.as_deref().unwrap_or("failed");
                tracing::warn!(
                    delivery_id,
                    webhook_id = job.webhook.id,
                    %namespace,
                    %webhook,
                    status,
                    duration_ms,
                    error,
                    %next_attempt,
                    "delivery attempt failed"
                )
            }
        }
        let recorded = self
            .store
            .record_attempt(AttemptRecord {
                delivery_id,
                started_at,
                duration_ms,
                status,
                error,
                response_headers,
                response_body,
                response_truncated: truncated,
                manual,
                request: request.redacted(),
                body_is_event: request.body_is_event,
                outcome,
                lease,
            })
            .await;
        if recorded.is_ok() && outcome == Outcome::Failed {
            operational::delivery_failed(&*self.store, &job).await;
        }
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(delivery_id: i64, webhook_id: i64, token: i64) -> Claim {
        Claim {
            delivery_id,
            webhook_id,
            token,
            rate_limit: None,
            fifo: false,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// Books in which webhook 10 has answered quickly and holds nothing.
    fn with_fast_hook(now: Instant) -> InFlight {
        let mut f = InFlight::default();
        let task = f.insert(claim(100, 10, 1), now, Lane::Slow, now).unwrap();
        assert!(f.answered(10, 5 * MS, false, now));
        assert!(f.remove(100, task).is_some());
        f
    }

    #[test]
    fn in_flight_ignores_reclaims_and_other_tasks() {
        let mut f = InFlight::default();
        let now = Instant::now();
        let first = f.insert(claim(1, 10, 1), now, Lane::Fast, now).unwrap();
        let second = f.insert(claim(2, 10, 1), now, Lane::Fast, now).unwrap();
        assert_ne!(first, second);
        // Claimed again here: the running task takes the new token, nothing is counted twice.
        assert_eq!(f.insert(claim(2, 10, 2), now, Lane::Fast, now), None);
        assert_eq!(f.held[&2].token, 2);
        assert_eq!((f.fast_held, f.hooks[&10].held), (2, 2));
        assert_eq!(f.remove(1, second), None, "only its own task forgets it");
        let (held, webhook_left, fast_left) = f.remove(1, first).unwrap();
        assert_eq!((held.lane, webhook_left, fast_left), (Lane::Fast, 1, 1));
        assert_eq!(f.remove(1, first), None, "removing twice changes nothing");
    }

    #[test]
    fn new_webhooks_start_slow_and_move_up_when_they_answer_quickly() {
        let mut f = InFlight::default();
        let now = Instant::now();
        let first = f.insert(claim(1, 10, 1), now, Lane::Slow, now).unwrap();
        assert_eq!(
            f.plan(4, 2, now),
            Plan {
                fast_room: 4,
                ..Plan::default()
            },
            "unknown, it is neither fast nor passed over"
        );
        f.insert(claim(2, 10, 1), now, Lane::Slow, now).unwrap();
        let plan = f.plan(4, 2, now);
        assert_eq!((plan.slow_skip, plan.passing_over), (vec![10], true));
        assert!(f.answered(10, 5 * MS, false, now), "a quick answer");
        assert!(!f.answered(10, 5 * MS, false, now), "already fast");
        f.remove(1, first).unwrap();
        let plan = f.plan(4, 2, now);
        assert_eq!((plan.fast, plan.slow_skip), (vec![10], vec![10]));
        assert_eq!(plan.fast_room, 4, "slow-lane deliveries take no fast room");
    }

    #[test]
    fn a_stale_request_moves_its_webhook_to_the_slow_lane() {
        let now = Instant::now();
        let mut f = with_fast_hook(now);
        let out = f.insert(claim(5, 10, 1), now, Lane::Fast, now).unwrap();
        let waiting = f.insert(claim(6, 10, 1), now, Lane::Fast, now).unwrap();
        f.insert(claim(7, 10, 1), now, Lane::Fast, now).unwrap();
        assert_eq!(f.start_sending(5, out), Start::Send);
        let limit = f.fast_limit(10, 8).unwrap();
        assert_eq!(f.fast_held, 3);

        let mut handed_back: Vec<i64> = f.went_stale(10).unwrap().iter().map(|c| c.0).collect();
        handed_back.sort();
        assert_eq!(handed_back, [6, 7], "what waits is handed back");
        assert!(limit.is_closed(), "and stops waiting");
        assert!(f.fast_limit(10, 8).is_none());
        assert_eq!((f.fast_held, f.hooks[&10].held), (1, 1));
        assert_eq!(f.start_sending(6, waiting), Start::Gone);
        assert_eq!(
            f.went_stale(10),
            None,
            "a second stale request: already slow"
        );
        // A claim made in the fast lane just before goes back too.
        let late = f.insert(claim(8, 10, 1), now, Lane::Fast, now).unwrap();
        assert_eq!(f.start_sending(8, late), Start::HandBack(now));
        assert!(!f.held.contains_key(&8));

        f.moved_to_slow_lane(5, out);
        assert_eq!((f.fast_held, f.held[&5].lane), (0, Lane::Slow));
        let plan = f.plan(4, 2, now);
        assert!(plan.fast.is_empty() && plan.fast_room == 4);
        // Quick answers while a stale request is out do not bring it back.
        assert!(!f.answered(10, MS, false, now));
        assert!(!f.answered(10, MS, false, now));
        assert!(!f.answered(10, 30_000 * MS, true, now), "a stale one, late");
        assert!(!f.answered(10, MS, false, now), "the other is still out");
        assert!(!f.answered(10, 2_000 * MS, true, now));
        let mut quick = 1;
        while !f.answered(10, MS, false, now) {
            quick += 1;
            assert!(quick < 10);
        }
        assert!(quick > 1, "the late answer weighs in the average");
    }

    #[test]
    fn a_rate_limited_webhook_is_claimed_for_its_tokens_and_passed_over_without() {
        let now = Instant::now();
        let mut f = with_fast_hook(now);
        let limit = crate::domain::control::RateLimit::per_second(2.0).unwrap();
        let limited = |delivery_id| Claim {
            rate_limit: Some(limit),
            ..claim(delivery_id, 10, 1)
        };
        assert!(f.admit(&limited(1), now), "a full bucket: two tokens");
        f.insert(limited(1), now, Lane::Fast, now).unwrap();
        let plan = f.plan(16, 16, now);
        assert_eq!(plan.fast_limited, [(10, 1)], "claimed alone, for one");
        assert!(plan.fast.is_empty());
        assert!(f.admit(&limited(2), now));
        assert!(!f.admit(&limited(3), now), "no token left");
        let plan = f.plan(16, 16, now);
        assert!(plan.fast_limited.is_empty() && plan.slow_skip.contains(&10));
        assert_eq!(plan.next_token, Some(now + Duration::from_millis(500)));
        let later = now + Duration::from_millis(500);
        assert_eq!(f.plan(16, 16, later).fast_limited, [(10, 1)]);
        // Claims without a limit: the webhook's was removed.
        assert!(f.admit(&claim(4, 10, 1), later));
        assert_eq!(f.plan(16, 16, later).fast, [10]);
    }

    #[test]
    fn idle_webhooks_are_forgotten() {
        let now = Instant::now();
        let mut f = with_fast_hook(now);
        assert_eq!(f.plan(4, 2, now).fast, [10]);
        let later = now + PACE_MEMORY + Duration::from_secs(1);
        assert!(f.plan(4, 2, later).fast.is_empty());
        assert!(f.hooks.is_empty());
    }
}
