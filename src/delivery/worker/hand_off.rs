//! Deliveries born claimed: an ingest commit leases the deliveries this dispatcher has room
//! for to this process in its own transaction, and hands them over in memory, so they skip
//! the claim query, its commit and the wait for the claim loop. The room is the claim
//! loop's own, taken delivery by delivery while the store writes: the fast lane's and each
//! fast webhook's (only webhooks without a rate limit or fifo order here take any), or, for
//! a webhook not heard from, a slow-lane place, as its first claim would take. The store
//! asks only for webhooks whose stored rules allow it (`Recipient::may_hand_off`).
//! Everything after is a claim's path: `start`, the slots, the circuit's check, the send,
//! the result.
//!
//! Nor is anything read back: the job is made from the ingested event (its body and
//! record shared by all its deliveries) and the dispatcher's copy of the webhook's
//! settings, used only at the revision the ingest transaction read, which also found the
//! webhook in perfect health. So a change of a webhook, through this process or another,
//! is never missed. Without a copy at that revision the job is read with the delivery, as
//! a claim's is, and the copy kept from it.

use super::*;
use crate::domain::delivery::{BornClaimed, BornEvent, HandOff};
use crate::domain::events::IncomingEvent;
use crate::domain::model::Webhook;

/// Most hand-offs started at once, so that with many jobs to read (an event for many new
/// webhooks) the first are sent while the others are read.
const START_CHUNK: usize = 64;

/// Most webhooks whose settings the dispatcher keeps; past it the copies are dropped and
/// read again as needed.
const SETTINGS_KEPT: usize = 4096;

/// The dispatcher's copies of webhooks' settings, by webhook id, in perfect health: used
/// only where the ingest transaction found them so.
#[derive(Default)]
pub(super) struct Settings(HashMap<i64, Arc<Webhook>>);

impl Settings {
    /// The copy at `revision`, unless a rotated-out signing key it holds has expired.
    pub(super) fn at(
        &self,
        webhook_id: i64,
        revision: i64,
        now: chrono::DateTime<Utc>,
    ) -> Option<Arc<Webhook>> {
        let hook = self.0.get(&webhook_id)?;
        let key_expired = hook.signing_secrets.len() > 1
            && hook.previous_secret_until.is_some_and(|until| until <= now);
        (hook.revision == revision && !key_expired).then(|| hook.clone())
    }

    /// Keeps the settings a job was read with.
    pub(super) fn keep(&mut self, hook: &Arc<Webhook>) {
        if self
            .0
            .get(&hook.id)
            .is_some_and(|kept| kept.revision == hook.revision)
        {
            return;
        }
        if self.0.len() >= SETTINGS_KEPT {
            self.0.clear();
        }
        let healthy = hook.failing_since.is_none() && hook.circuit == Default::default();
        let hook = if healthy {
            hook.clone()
        } else {
            Arc::new(Webhook {
                failing_since: None,
                circuit: Default::default(),
                ..Webhook::clone(hook)
            })
        };
        self.0.insert(hook.id, hook);
    }
}

/// One ingest's offer: what it took is counted in the books as reserved until the
/// deliveries are held, or given back when the ingest fails.
pub struct Ticket {
    dispatcher: Arc<Dispatcher>,
    lease_until: chrono::DateTime<Utc>,
    /// When the lease ends, taken before the store writes it, so never later than it.
    expires: Instant,
    /// When the offer was made: before the ingest transaction read the webhooks' health,
    /// so a failure seen here since then makes a job's copy of it stale.
    made: Instant,
    /// Fast-lane room taken, per webhook.
    reserved: Mutex<HashMap<i64, usize>>,
    /// Slow-lane places taken, one per webhook not heard from.
    places: Mutex<HashMap<i64, OwnedSemaphorePermit>>,
}

impl HandOff for Ticket {
    fn take(&self, webhook_id: i64) -> bool {
        let dispatcher = &self.dispatcher;
        let room =
            dispatcher
                .books()
                .reserve(webhook_id, dispatcher.hold_cap(), dispatcher.limits());
        match room {
            Room::Fast => {
                *lock(&self.reserved).entry(webhook_id).or_default() += 1;
                true
            }
            Room::NotHeardFrom => {
                let mut places = lock(&self.places);
                if places.contains_key(&webhook_id) {
                    return false;
                }
                match dispatcher.slow.clone().try_acquire_owned() {
                    Ok(place) => {
                        places.insert(webhook_id, place);
                        true
                    }
                    Err(_) => false,
                }
            }
            Room::None => false,
        }
    }

    fn lease_until(&self) -> chrono::DateTime<Utc> {
        self.lease_until
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let reserved = std::mem::take(
            self.reserved
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if !reserved.is_empty() {
            self.dispatcher.books().unreserve(&reserved);
        }
    }
}

impl Dispatcher {
    /// An offer for one ingest; `None` unless the claim loop runs, and while shutting down.
    pub fn ticket(self: &Arc<Self>) -> Option<Arc<Ticket>> {
        if !self.claiming.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let made = Instant::now();
        let expires = made + self.config.lease;
        let lease_until =
            Utc::now() + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        Some(Arc::new(Ticket {
            dispatcher: self.clone(),
            lease_until,
            expires,
            made,
            reserved: Mutex::new(HashMap::new()),
            places: Mutex::new(HashMap::new()),
        }))
    }

    /// Starts the deliveries an ingest committed leased to this process, for `events`
    /// received at `received_at`. The ticket's room is given back once they are held (or
    /// refused: a rate limit learned meanwhile).
    pub fn hand_off(
        self: &Arc<Self>,
        ticket: Arc<Ticket>,
        born: Vec<BornClaimed>,
        events: &[IncomingEvent],
        received_at: chrono::DateTime<Utc>,
    ) {
        if born.is_empty() {
            return;
        }
        let mut places = std::mem::take(&mut *lock(&ticket.places));
        let (mut fast, mut slow) = (Vec::with_capacity(born.len()), Vec::new());
        {
            let mut shared: HashMap<usize, BornEvent> = HashMap::new();
            let settings = lock(&self.settings);
            let now = Utc::now();
            for b in born {
                let hook = settings.at(b.claim.webhook_id, b.revision, now);
                let job = events.get(b.event).zip(hook).map(|(event, hook)| {
                    let parts = shared
                        .entry(b.event)
                        .or_insert_with(|| BornEvent::new(event, received_at));
                    Loaded {
                        job: DeliveryJob::born(&b.claim, hook, parts),
                        at: ticket.made,
                    }
                });
                match places.remove(&b.claim.webhook_id) {
                    Some(place) => slow.push((b.claim, Some(place), job)),
                    None => fast.push((b.claim, None, job)),
                }
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut refused = Vec::new();
            let expires = ticket.expires;
            for (mut arrivals, lane) in [(fast, Lane::Fast), (slow, Lane::Slow)] {
                // In chunks: the first sends go while the rest's jobs are read.
                while !arrivals.is_empty() {
                    let rest = arrivals.split_off(arrivals.len().min(START_CHUNK));
                    this.start(arrivals, expires, lane, Taken::HandOff, &mut refused)
                        .await;
                    arrivals = rest;
                }
            }
            drop(ticket);
            if !refused.is_empty() {
                if let Err(e) = this.store.release(&refused).await {
                    tracing::warn!(count = refused.len(), error = %e, "could not release leases; they expire on their own");
                }
                this.wake();
            }
        });
    }
}
