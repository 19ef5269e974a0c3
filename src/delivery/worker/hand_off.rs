//! Deliveries born claimed: an ingest commit leases the deliveries this dispatcher has room
//! for to this process in its own transaction, and hands them over in memory, so they skip
//! the claim query, its commit and the wait for the claim loop. The room is the claim
//! loop's own (the fast lane's and each fast webhook's), taken delivery by delivery while
//! the store writes; only fast webhooks without a rate limit or fifo order here take any,
//! and the store asks only for webhooks whose stored rules allow it (`Recipient::
//! may_hand_off`). Everything after is a claim's path: `start`, the slots, the circuit's
//! check, the send, the result.

use super::*;
use crate::domain::delivery::HandOff;

/// One ingest's offer: what it took is counted in the books as reserved until the
/// deliveries are held, or given back when the ingest fails.
pub struct Ticket {
    dispatcher: Arc<Dispatcher>,
    lease_until: chrono::DateTime<Utc>,
    /// When the lease ends, taken before the store writes it, so never later than it.
    expires: Instant,
    /// Room taken, per webhook.
    reserved: Mutex<HashMap<i64, usize>>,
}

impl HandOff for Ticket {
    fn take(&self, webhook_id: i64) -> bool {
        let dispatcher = &self.dispatcher;
        let taken =
            dispatcher
                .books()
                .reserve(webhook_id, dispatcher.hold_cap(), dispatcher.limits());
        if taken {
            *self
                .reserved
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(webhook_id)
                .or_default() += 1;
        }
        taken
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
    /// An offer for one ingest; `None` while shutting down, or where ingest hands nothing
    /// off (`DispatcherConfig::hand_off`).
    pub fn ticket(self: &Arc<Self>) -> Option<Arc<Ticket>> {
        if !self.config.hand_off || self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let expires = Instant::now() + self.config.lease;
        let lease_until =
            Utc::now() + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        Some(Arc::new(Ticket {
            dispatcher: self.clone(),
            lease_until,
            expires,
            reserved: Mutex::new(HashMap::new()),
        }))
    }

    /// Starts the deliveries an ingest committed leased to this process. The ticket's room
    /// is given back once they are held (or refused: a rate limit learned meanwhile).
    pub fn hand_off(self: &Arc<Self>, ticket: Arc<Ticket>, claims: Vec<Claim>) {
        if claims.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut refused = Vec::new();
            let claims = claims.into_iter().map(|c| (c, None)).collect();
            this.start(
                claims,
                ticket.expires,
                Lane::Fast,
                Taken::HandOff,
                &mut refused,
            )
            .await;
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
