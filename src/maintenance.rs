//! Background upkeep: the retention sweep, and the sends the command line asks for.

use std::time::Duration;

use crate::AppState;

/// Rows deleted per transaction: small enough that ingest never waits long behind a sweep.
const BATCH: i64 = 500;

/// Deletes finished deliveries older than `retention.days` or beyond
/// `retention.max_per_webhook`, in small batches, every `retention.interval`.
pub async fn retention_loop(state: AppState) {
    let interval = state.config.retention_interval.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(interval).await;
        match sweep(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention sweep removed old deliveries"),
            Err(e) => tracing::error!(error = %e, "retention sweep failed; will try again"),
        }
    }
}

/// One full sweep; returns how many deliveries went.
pub async fn sweep(state: &AppState) -> Result<u64, crate::store::StoreError> {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::days(i64::from(state.config.retention_days));
    let keep = i64::from(state.config.retention_max_per_webhook);
    let mut total = 0;
    loop {
        let n = state.store.prune(cutoff, keep, BATCH).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
        // Let other writers in between batches.
        tokio::task::yield_now().await;
    }
}

/// How often a serving process looks for sends the command line asked for.
const SEND_REQUESTS_EVERY: Duration = Duration::from_millis(200);

/// Makes the sends asked for where no dispatcher runs (`herald deliveries retrigger`,
/// `herald webhook ping`): each as a manual attempt, with this process's settings, as the
/// UI's retrigger is. Each request is taken by one process.
pub async fn send_requests_loop(state: AppState) {
    loop {
        tokio::time::sleep(SEND_REQUESTS_EVERY).await;
        let taken = match state.store.take_send_requests(16).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the queued sends; will try again");
                continue;
            }
        };
        for delivery in taken {
            let dispatcher = state.dispatcher.clone();
            tokio::spawn(async move {
                if let Err(e) = dispatcher.retrigger(delivery).await {
                    tracing::warn!(delivery, error = %e, "a queued send failed to run");
                }
            });
        }
    }
}
