//! What the dispatcher holds: its claimed deliveries, the webhooks they are for and
//! each webhook's lane, pace and rate limit.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lane {
    Fast,
    Slow,
}

/// A delivery this process holds: its latest claim token, when that claim ends at the
/// latest, its webhook and lane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Held {
    pub(super) token: i64,
    pub(super) expires: Instant,
    pub(super) webhook_id: i64,
    pub(super) lane: Lane,
    /// The task that sends it: one whose delivery was handed back (and perhaps claimed
    /// again, by a new task) must not forget the newer claim.
    pub(super) task: u64,
    /// Past waiting for slots: it is being sent and can no longer be handed back.
    pub(super) sending: bool,
}

/// What the dispatcher knows of one webhook.
pub(super) struct Hook {
    /// Its deliveries held here.
    pub(super) held: usize,
    /// In the fast lane.
    pub(super) fast: bool,
    /// A moving average of its answer times, each answer weighing half; `None` before the
    /// first.
    pub(super) pace: Option<Duration>,
    /// Its requests out for longer than `SLOW_AFTER`.
    pub(super) stale: usize,
    /// Its fast-lane limit. Closed when the webhook turns slow, so that deliveries waiting
    /// for it stop waiting (and are handed back).
    pub(super) permits: Option<Arc<Semaphore>>,
    /// When it was last claimed or answered, to forget webhooks idle for long.
    pub(super) touched: Instant,
    /// Its rate limit's tokens in this process, learned from its claims; `None` without one.
    pub(super) bucket: Option<TokenBucket>,
    /// Delivered in order: each finished delivery may free the next one at once.
    pub(super) fifo: bool,
    /// When an attempt of it last failed here: a failure may open its circuit or disable
    /// it, so a job loaded before it is loaded again.
    pub(super) failed_at: Option<Instant>,
    /// Its URL is a broker's, learned from its loaded jobs: it takes the broker send limit.
    pub(super) broker: bool,
    /// Room ingests took for deliveries born claimed, not yet held (see `reserve`).
    pub(super) reserved: usize,
    /// It may have due deliveries in the database: ingest has not handed it any since it
    /// refused one, until a claim of it came back short, so new deliveries never pass
    /// older ones waiting there. A webhook new here may have some.
    pub(super) backlog: bool,
}

impl Hook {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            held: 0,
            fast: false,
            pace: None,
            stale: 0,
            permits: None,
            touched: now,
            bucket: None,
            fifo: false,
            failed_at: None,
            broker: false,
            reserved: 0,
            backlog: true,
        }
    }
}

/// Sends out at once to one fast webhook, by its destination's kind
/// (`--delivery-concurrency-per-webhook`, `--delivery-concurrency-per-broker`).
#[derive(Clone, Copy, Debug)]
pub(super) struct SendLimits {
    pub(super) http: usize,
    pub(super) broker: usize,
}

impl SendLimits {
    pub(super) fn of(&self, hook: Option<&Hook>) -> usize {
        let broker = hook.is_some_and(|h| h.broker);
        if broker { self.broker } else { self.http }.max(1)
    }

    /// The least a fast webhook holds before claims pass over it (see `webhook_cap`):
    /// twice its send limit.
    pub(super) fn floor(&self, hook: Option<&Hook>) -> usize {
        self.of(hook) * 2
    }
}

/// The deliveries this process has claimed and not finished, and the webhooks they are
/// for, so the claim loop knows which lane each webhook is in and which hold enough.
#[derive(Default)]
pub(super) struct InFlight {
    pub(super) held: HashMap<i64, Held>,
    pub(super) hooks: HashMap<i64, Hook>,
    /// Held deliveries in the fast lane.
    pub(super) fast_held: usize,
    /// The last task number given out.
    pub(super) tasks: u64,
    /// A moving average of a fast-lane claim's round: its commit and its jobs' read.
    pub(super) round: Option<Duration>,
    /// Fast-lane room ingests took for deliveries born claimed, not yet held.
    pub(super) reserved: usize,
}

/// Deliveries of one fast webhook held before claims pass over it, so one webhook's backlog
/// cannot take every place: `floor`, or more for a webhook that answers within a fraction
/// of a claim round (`floor` as often as its answers fit in one), so that the next claim's
/// deliveries arrive before its sends run dry. Under a saturating ingest a round (a commit
/// and a read) takes tens of milliseconds, what a loopback receiver answers a dozen times in.
pub(super) fn webhook_cap(floor: usize, pace: Option<Duration>, round: Option<Duration>) -> usize {
    let (Some(pace), Some(round)) = (pace, round) else {
        return floor;
    };
    let answers_per_round = round.as_secs_f64() / pace.as_secs_f64().max(1e-4);
    ((floor as f64 * answers_per_round).ceil() as usize).clamp(floor, CLAIM_CHUNK.max(floor))
}

/// What one round of claims may take, as the books stood.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    pub(super) fast_room: usize,
    /// Fast webhooks below their cap: the fast-lane claim takes only theirs.
    pub(super) fast: Vec<i64>,
    /// What the slow-lane claim passes over: fast webhooks, and slow ones holding enough.
    pub(super) slow_skip: Vec<i64>,
    /// Some webhook holds all it may, so claims pass over its due deliveries.
    pub(super) passing_over: bool,
    /// Fast webhooks with a rate limit, each claimed on its own for no more than its
    /// tokens admit (and its cap).
    pub(super) fast_limited: Vec<(i64, usize)>,
    /// The earliest next token of a rate-limited webhook passed over for want of one.
    pub(super) next_token: Option<Instant>,
}

/// What room a hand-off finds for one delivery (`InFlight::reserve`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Room {
    /// Reserved in the fast lane.
    Fast,
    /// Its webhook is not heard from: a slow-lane place, if one is free, is its room.
    NotHeardFrom,
    None,
}

/// Whether a delivery that got its slots goes out.
#[derive(Debug, PartialEq)]
pub(super) enum Start {
    Send,
    /// It was handed back meanwhile (its webhook turned slow).
    Gone,
    /// It waited for fast slots, but its webhook has turned slow: forgotten here, and to be
    /// handed back (its claim ends then).
    HandBack(Instant),
}

impl InFlight {
    /// Whether a job of `webhook_id` loaded `at` may still be sent as loaded: within
    /// [`JOB_FRESH_FOR`] and before any failure of the webhook here.
    pub(super) fn job_is_fresh(&self, webhook_id: i64, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < JOB_FRESH_FOR
            && self
                .hooks
                .get(&webhook_id)
                .and_then(|hook| hook.failed_at)
                .is_none_or(|failed| failed < at)
    }

    /// A fast-lane claim and its jobs' read took `took`.
    pub(super) fn claim_round(&mut self, took: Duration) {
        self.round = Some(self.round.map_or(took, |r| (r * 3 + took) / 4));
    }

    /// What a loaded job says of its webhook's destination. A webhook whose URL changed
    /// kind gets a new send limit; sends holding the old one finish under it.
    pub(super) fn learn_destination(&mut self, webhook_id: i64, broker: bool) {
        if let Some(hook) = self.hooks.get_mut(&webhook_id) {
            if hook.broker != broker {
                hook.broker = broker;
                hook.permits = None;
            }
        }
    }

    pub(super) fn attempt_failed(&mut self, webhook_id: i64, now: Instant) {
        if let Some(hook) = self.hooks.get_mut(&webhook_id) {
            hook.failed_at = Some(now);
        }
    }

    /// The new task's number; `None` when the delivery was already held and waiting to be
    /// sent, and then its task goes on under the new token.
    pub(super) fn insert(
        &mut self,
        claim: Claim,
        expires: Instant,
        lane: Lane,
        now: Instant,
    ) -> Option<u64> {
        if let Some(held) = self.held.get_mut(&claim.delivery_id) {
            if !held.sending {
                held.token = claim.token;
                held.expires = expires;
                return None;
            }
            // Claimed again once its task has sent: the attempt's result is committed and
            // a retry or a recover made it due again while the old task was still on its
            // way out. That task must not take this claim with it (it would sit leased and
            // unsent until the lease ran out): a new task sends it, and the old one's
            // `remove` no longer matches.
            self.tasks += 1;
            if held.lane == Lane::Fast {
                self.fast_held = self.fast_held.saturating_sub(1);
            }
            if lane == Lane::Fast {
                self.fast_held += 1;
            }
            *held = Held {
                token: claim.token,
                expires,
                webhook_id: claim.webhook_id,
                lane,
                task: self.tasks,
                sending: false,
            };
            return Some(self.tasks);
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
    pub(super) fn remove(&mut self, delivery_id: i64, task: u64) -> Option<(Held, usize, usize)> {
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
    /// `processes`: how many claim from the database, each keeping its share of a limit.
    pub(super) fn admit(&mut self, claim: &Claim, processes: usize, now: Instant) -> bool {
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
                let limit = limit.shared_by(processes);
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
    pub(super) fn plan(&mut self, hold_cap: usize, limits: SendLimits, now: Instant) -> Plan {
        self.hooks.retain(|_, hook| {
            hook.held > 0
                || hook.reserved > 0
                || hook.stale > 0
                || now.duration_since(hook.touched) < PACE_MEMORY
                || hook.bucket.as_mut().is_some_and(|b| !b.is_full(now))
        });
        let mut plan = Plan {
            fast_room: hold_cap.saturating_sub(self.fast_held + self.reserved),
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
                let webhook_cap = webhook_cap(limits.floor(Some(hook)), hook.pace, self.round);
                let holds = hook.held + hook.reserved;
                if holds < webhook_cap {
                    match tokens {
                        Some(n) => plan.fast_limited.push((id, n.min(webhook_cap - holds))),
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

    /// Takes room for one delivery of `webhook_id` born claimed, as a claim would: only a
    /// fast webhook without a rate limit or fifo order here and without a backlog, below
    /// its cap, while the fast lane holds less than `hold_cap`. Held once its claim is
    /// inserted; `unreserve` gives the room back either way. A webhook not heard from
    /// (new, or idle for `PACE_MEMORY`) has no room here but may get a slow-lane place,
    /// as its first claim would.
    pub(super) fn reserve(&mut self, webhook_id: i64, hold_cap: usize, limits: SendLimits) -> Room {
        let round = self.round;
        let full = self.fast_held + self.reserved >= hold_cap;
        let Some(hook) = self.hooks.get_mut(&webhook_id) else {
            return Room::NotHeardFrom;
        };
        if hook.fifo || hook.bucket.is_some() {
            return Room::None;
        }
        let cap = webhook_cap(limits.floor(Some(hook)), hook.pace, round);
        if full || !hook.fast || hook.backlog || hook.held + hook.reserved >= cap {
            // What it refuses is committed unleased: claims take it, oldest first.
            hook.backlog = true;
            return Room::None;
        }
        hook.reserved += 1;
        self.reserved += 1;
        Room::Fast
    }

    /// A claim of these webhooks took all their due deliveries: ingest may hand them new
    /// ones again.
    pub(super) fn drained(&mut self, webhooks: &[i64]) {
        for id in webhooks {
            if let Some(hook) = self.hooks.get_mut(id) {
                hook.backlog = false;
            }
        }
    }

    pub(super) fn unreserve(&mut self, reserved: &HashMap<i64, usize>) {
        for (webhook_id, &n) in reserved {
            if let Some(hook) = self.hooks.get_mut(webhook_id) {
                hook.reserved = hook.reserved.saturating_sub(n);
            }
            self.reserved = self.reserved.saturating_sub(n);
        }
    }

    /// The fast-lane limit of a webhook in the fast lane.
    pub(super) fn fast_limit(
        &mut self,
        webhook_id: i64,
        limits: SendLimits,
    ) -> Option<Arc<Semaphore>> {
        let hook = self.hooks.get_mut(&webhook_id).filter(|h| h.fast)?;
        let size = limits.of(Some(hook));
        Some(
            hook.permits
                .get_or_insert_with(|| Arc::new(Semaphore::new(size)))
                .clone(),
        )
    }

    pub(super) fn start_sending(&mut self, delivery_id: i64, task: u64) -> Start {
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
    pub(super) fn went_stale(&mut self, webhook_id: i64) -> Option<Vec<(i64, Instant)>> {
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
    pub(super) fn moved_to_slow_lane(&mut self, delivery_id: i64, task: u64) {
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
    pub(super) fn answered(
        &mut self,
        webhook_id: i64,
        took: Duration,
        stale: bool,
        now: Instant,
    ) -> bool {
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
