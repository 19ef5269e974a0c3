//! Sending one claimed delivery: waiting for its slots, renewing its claim, the request,
//! and writing the attempt with the delivery's next state.

use super::*;

impl Dispatcher {
    pub(super) async fn deliver_claimed(
        &self,
        claim: Claim,
        task: u64,
        place: Option<OwnedSemaphorePermit>,
        loaded: Option<Loaded>,
    ) {
        let delivery_id = claim.delivery_id;
        let slots = match place {
            Some(place) => Slots::Slow(place),
            None => {
                // The webhook's own limit first: waiting for it holds no global slot. It is
                // gone, or closed while waiting, when the webhook turns slow.
                let limit = self.books().fast_limit(claim.webhook_id, self.limits());
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
            let fresh = |l: &Loaded| {
                self.books()
                    .job_is_fresh(claim.webhook_id, l.at, Instant::now())
            };
            let job = match loaded.filter(fresh) {
                Some(loaded) => loaded.job,
                None => self.store.load_job(delivery_id).await?,
            };
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
    pub(super) async fn send_paced(
        &self,
        request: &OutgoingRequest,
        webhook_id: i64,
        delivery_id: i64,
        sending: Sending,
    ) -> Result<ReceiverResponse, SendError> {
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

    pub(super) fn answered(&self, webhook_id: i64, took: Duration, stale: bool) {
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
    pub(super) async fn circuit_changed(&self, job: &DeliveryJob, change: &HealthChange) {
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
    pub(super) async fn renew_claim(&self, delivery_id: i64) -> StoreResult<Option<i64>> {
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
    pub(super) async fn attempt(
        &self,
        job: DeliveryJob,
        lease: Option<i64>,
        sending: Option<Sending>,
    ) -> StoreResult<()> {
        let delivery_id = job.delivery_id;
        let manual = lease.is_none();
        let rendered = formats::render(
            job.webhook.format,
            &job.webhook.format_options,
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
        let status_code = result.as_ref().ok().map(|r| r.status);
        let now = Utc::now();
        let Verdict { outcome, health } = verdict(&Attempted {
            status: status_code,
            retry_after: result
                .as_ref()
                .ok()
                .and_then(|r| retry_after(r.status, &r.headers, now)),
            manual,
            state_before: job.state,
            next_before: job.next_attempt_at,
            automatic_done: job.automatic_attempts + i64::from(!manual),
            schedule: &self.config.schedule,
            now,
        });
        let success = outcome == Outcome::Succeeded;
        let gone = health == Health::Gone;
        if !success {
            self.books().attempt_failed(job.webhook.id, Instant::now());
        }
        // The common case, a healthy webhook staying healthy, needs no write.
        let unchanged = health == Health::Succeeded
            && job.webhook.failing_since.is_none()
            && job.webhook.circuit == Default::default();
        let change = if unchanged {
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
        match change {
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
            Err(e) => (None, Some(e.to_string()), Vec::new(), String::new(), false),
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
                    receiver = %job.webhook.url.host(),
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
