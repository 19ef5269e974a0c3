//! Background upkeep: the retention sweep.

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
