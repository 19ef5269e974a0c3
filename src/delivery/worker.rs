//! The dispatcher: claims due deliveries and sends each in its own task, bounded overall
//! and per webhook, so a slow or dead receiver only ever slows down its own deliveries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::delivery::client::HttpSender;
use crate::delivery::client::ReceiverResponse;
use crate::delivery::retry::RetrySchedule;
use crate::hooks::templates::TemplateSandbox;
use crate::hooks::{formats, payload};
use crate::metrics::Metrics;
use crate::secrets::Cipher;
use crate::store::{
    AttemptRecord, Claim, DeliveryJob, DeliveryState, Health, Outcome, Store, StoreError,
    StoreResult,
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
const SHORT_CLAIM_PAUSE: Duration = Duration::from_millis(10);

/// A delivery this process holds: its latest claim token, when that claim ends at the
/// latest, and its webhook.
#[derive(Clone, Copy)]
struct Held {
    token: i64,
    expires: Instant,
    webhook_id: i64,
}

/// The deliveries this process has claimed and not finished, counted per webhook so the
/// claim loop can pass over webhooks that already have enough waiting here.
#[derive(Default)]
struct InFlight {
    held: HashMap<i64, Held>,
    per_webhook: HashMap<i64, usize>,
}

impl InFlight {
    /// True when the delivery was not held; otherwise its task goes on under the new token.
    fn insert(&mut self, claim: Claim, expires: Instant) -> bool {
        let held = Held {
            token: claim.token,
            expires,
            webhook_id: claim.webhook_id,
        };
        if self.held.insert(claim.delivery_id, held).is_some() {
            return false;
        }
        *self.per_webhook.entry(claim.webhook_id).or_default() += 1;
        true
    }

    /// Forgets a finished delivery; returns how many its webhook and the whole process
    /// still hold.
    fn remove(&mut self, delivery_id: i64) -> Option<(usize, usize)> {
        let held = self.held.remove(&delivery_id)?;
        let left = match self.per_webhook.get_mut(&held.webhook_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                *n
            }
            _ => {
                self.per_webhook.remove(&held.webhook_id);
                0
            }
        };
        Some((left, self.held.len()))
    }

    /// Webhooks holding at least `cap` deliveries here.
    fn saturated(&self, cap: usize) -> Vec<i64> {
        self.per_webhook
            .iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The two slots a send holds (its webhook's and the global one); dropped as soon as the
/// receiver has answered, so writing the result does not keep the next send waiting.
type Slots = (OwnedSemaphorePermit, OwnedSemaphorePermit);

pub struct DispatcherConfig {
    pub concurrency: usize,
    pub per_webhook: usize,
    pub schedule: RetrySchedule,
    /// How long a claim holds; a claim of a crashed process is retaken after it.
    pub lease: Duration,
    /// A webhook whose attempts have all failed for this long is disabled.
    pub disable_after: Duration,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    sender: HttpSender,
    cipher: Cipher,
    templates: Arc<TemplateSandbox>,
    config: DispatcherConfig,
    wake: Notify,
    global: Arc<Semaphore>,
    per_webhook: Mutex<HashMap<i64, Arc<Semaphore>>>,
    /// Deliveries this process holds, so a renewed claim never sends one twice here but its
    /// task goes on under the newer token, and so claims stay bounded.
    in_flight: Mutex<InFlight>,
    metrics: Arc<Metrics>,
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
            config,
            wake: Notify::new(),
            per_webhook: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(InFlight::default()),
            metrics,
            stopping: AtomicBool::new(false),
            heartbeat: AtomicI64::new(0),
        })
    }

    /// Called after ingest commits: new deliveries go out without waiting for a poll.
    pub fn wake(&self) {
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

    /// Graceful shutdown: stop claiming, let in-flight deliveries finish for up to `grace`,
    /// then release the leases of those still running so they are sent again elsewhere.
    pub async fn drain(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let deadline = Instant::now() + grace;
        loop {
            let left: Vec<i64> = match self.in_flight.lock() {
                Ok(f) => f.held.keys().copied().collect(),
                Err(_) => Vec::new(),
            };
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

    /// Most deliveries this process holds at once (sending, waiting for a slot, or having
    /// their result written): twice what may be sent at once, so slots never sit idle
    /// while claims are written, yet a backlog stays in the database and not in memory.
    fn hold_cap(&self) -> usize {
        self.config.concurrency.max(1) * 2
    }

    /// Deliveries of one webhook held before the claim loop passes over that webhook, so a
    /// slow receiver's backlog cannot take every place and starve the others.
    fn webhook_cap(&self) -> usize {
        self.config.per_webhook.max(1) * 2
    }

    /// The claim loop; runs until shutdown.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.heartbeat
                .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let (room, skip) = match self.in_flight.lock() {
                Ok(f) => (
                    self.hold_cap().saturating_sub(f.held.len()),
                    f.saturated(self.webhook_cap()),
                ),
                Err(_) => (0, Vec::new()),
            };
            let limit = room.min(CLAIM_CHUNK);
            let mut got = 0;
            if limit > 0 {
                let now = Utc::now();
                // Taken before claiming, so it is never later than the stored lease's end.
                let expires = Instant::now() + self.config.lease;
                let lease_until =
                    now + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
                let claimed = match self
                    .store
                    .claim_due_skipping(now, lease_until, limit as i64, &skip)
                    .await
                {
                    Ok(claims) => claims,
                    Err(e) => {
                        tracing::error!(error = %e, "claiming deliveries failed");
                        tokio::time::sleep(POLL_INTERVAL).await;
                        continue;
                    }
                };
                got = claimed.len();
                for claim in claimed {
                    if !self.in_flight_insert(claim, expires) {
                        continue;
                    }
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.deliver_claimed(claim.delivery_id, claim.webhook_id)
                            .await;
                        this.in_flight_remove(claim.delivery_id);
                    });
                }
            }
            if limit > 0 && got == limit {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            if limit > 0 && !skip.is_empty() {
                tokio::time::sleep(SHORT_CLAIM_PAUSE).await;
            }
        }
    }

    /// True when the delivery was not in flight here; otherwise its task takes the new token.
    fn in_flight_insert(&self, claim: Claim, expires: Instant) -> bool {
        self.in_flight
            .lock()
            .map(|mut f| f.insert(claim, expires))
            .unwrap_or(false)
    }

    fn in_flight_token(&self, id: i64) -> Option<i64> {
        self.in_flight_entry(id).map(|held| held.token)
    }

    fn in_flight_entry(&self, id: i64) -> Option<Held> {
        self.in_flight
            .lock()
            .ok()
            .and_then(|f| f.held.get(&id).copied())
    }

    /// Wakes the claim loop when this frees a place it was waiting for: the webhook drops
    /// below its cap, or the process falls to three quarters of its own.
    fn in_flight_remove(&self, id: i64) {
        let left = self.in_flight.lock().ok().and_then(|mut f| f.remove(id));
        if let Some((webhook_left, total_left)) = left {
            if webhook_left + 1 == self.webhook_cap() || total_left == self.hold_cap() * 3 / 4 {
                self.wake.notify_one();
            }
        }
    }

    fn webhook_limit(&self, webhook_id: i64) -> Arc<Semaphore> {
        let mut map = match self.per_webhook.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(webhook_id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_webhook.max(1))))
            .clone()
    }

    async fn deliver_claimed(&self, delivery_id: i64, webhook_id: i64) {
        // The webhook's own limit first: waiting for it holds no global slot.
        let per_webhook = self.webhook_limit(webhook_id);
        let Ok(hook_permit) = per_webhook.acquire_owned().await else {
            return;
        };
        let Ok(permit) = self.global.clone().acquire_owned().await else {
            return;
        };
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
            self.attempt(job, Some(token), Some((hook_permit, permit)))
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

    /// One attempt under the claim `lease`, or a manual one (`None`), holding `slots` (if
    /// any) only while the request is out.
    async fn attempt(
        &self,
        job: DeliveryJob,
        lease: Option<i64>,
        slots: Option<Slots>,
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
        let request = match rendered.and_then(|body| {
            payload::render(
                &job.webhook,
                &self.cipher,
                delivery_id,
                &job.event_action,
                body,
            )
        }) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .store
                    .abandon(
                        delivery_id,
                        lease,
                        &format!("the request could not be built: {e}"),
                    )
                    .await
            }
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = self.sender.send(&request).await;
        drop(slots);
        let duration_ms = clock.elapsed().as_millis() as i64;
        let attempts_done = job.attempts_so_far + 1;
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
            match self.config.schedule.next_attempt(attempts_done, Utc::now()) {
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
        let unchanged = health == Health::Succeeded && job.webhook.failing_since.is_none();
        let verdict = if unchanged {
            Ok(false)
        } else {
            self.store
                .webhook_health(
                    job.webhook.id,
                    health,
                    Utc::now(),
                    self.config.disable_after,
                )
                .await
        };
        match verdict {
            Ok(true) => {
                self.metrics.webhooks_auto_disabled.inc();
                tracing::warn!(
                    webhook_id = job.webhook.id,
                    gone,
                    "webhook disabled: it kept failing or is gone"
                );
            }
            Ok(false) => {}
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
        self.store
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
            .await
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
        }
    }

    #[test]
    fn in_flight_counts_per_webhook_and_ignores_reclaims() {
        let mut f = InFlight::default();
        let now = Instant::now();
        assert!(f.insert(claim(1, 10, 1), now));
        assert!(f.insert(claim(2, 10, 1), now));
        assert!(f.insert(claim(3, 20, 1), now));
        // Claimed again here: the running task takes the new token, nothing is counted twice.
        assert!(!f.insert(claim(2, 10, 2), now));
        assert_eq!(f.held[&2].token, 2);
        assert_eq!(f.saturated(2), [10]);
        assert_eq!(f.remove(1), Some((1, 2)));
        assert!(f.saturated(2).is_empty());
        assert_eq!(f.remove(1), None, "removing twice changes nothing");
        assert_eq!(f.remove(3), Some((0, 1)));
        assert!(!f.per_webhook.contains_key(&20), "empty counts are dropped");
    }
}
