//! PostgreSQL, for several Herald processes sharing one database. Most of the store is
//! shared with SQLite (`../sql/`); here is what sharing a database needs: claims with
//! `FOR UPDATE SKIP LOCKED` (`queue.rs`), `NOTIFY` after ingest so idle workers elsewhere
//! start at once, and heartbeats so a dead process's claims are given back within seconds.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};

use super::sql::Backend;
use super::{to_ms, Engine, StoreError, StoreResult, WakeupTask};

mod group_commit;
mod queue;

/// The channel ingest notifies after committing deliveries.
pub const WAKEUP_CHANNEL: &str = "herald_deliveries";

/// How long a request waits for a pooled connection: while the database is down, ingest
/// answers 500 (and the registry retries) well within the registry's own timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool size and time limits, from `--database-max-connections` and
/// `--database-statement-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct PgSettings {
    pub max_connections: u32,
    /// Zero: no limit.
    pub statement_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The listener gets a pool of its own, so it never takes a connection from queries.
    listen_options: PgConnectOptions,
    /// This process's row in `workers` once it runs workers; its claims carry it.
    worker_id: Arc<std::sync::OnceLock<i64>>,
    /// Ingest and results, one transaction per batch.
    writer: group_commit::GroupCommit,
    /// Processes heartbeating in `workers` at the last beat, this one included.
    claiming: Arc<AtomicUsize>,
}

/// How often a process heartbeats, and after how many missed beats the others give back
/// its claims: a dead process's deliveries go out again within seconds, not after a lease.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
const HEARTBEATS_MISSED: u32 = 4;

impl PgStore {
    pub async fn connect(url: &str, settings: PgSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("herald")
            .options([(
                "statement_timeout",
                format!("{}ms", settings.statement_timeout.as_millis()),
            )]);
        // The pool tests connections before handing them out and replaces dead ones, so a
        // database restart costs the requests in flight, not the process.
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            writer: group_commit::GroupCommit::start(pool.clone()),
            pool,
            listen_options: options,
            worker_id: Arc::default(),
            claiming: Arc::new(AtomicUsize::new(1)),
        })
    }
}

impl Backend for PgStore {
    type Row = PgRow;
    type Pool = PgPool;
    type Tx = Transaction<'static, Postgres>;
    const LOCKS_ROWS: bool = true;
    const HEADERS_JSON: &'static str =
        "(SELECT COALESCE(json_agg(json_build_array(h.name, encode(h.value, 'hex')) \
           ORDER BY lower(h.name), h.name), '[]')::text \
          FROM webhook_headers h WHERE h.webhook_id = w.id)";
    const IN_JSON_IDS: &'static str = "= ANY(CAST(translate($1, '[]', '{}') AS BIGINT[]))";

    fn reader(&self) -> PgPool {
        self.pool.clone()
    }

    fn writer(&self) -> PgPool {
        self.pool.clone()
    }

    async fn begin(&self) -> StoreResult<Self::Tx> {
        Ok(self.pool.begin().await?)
    }
}

impl PgStore {
    /// Keeps calling `wake` on every notification, reconnecting after errors, forever.
    async fn listen(options: PgConnectOptions, wake: Arc<dyn Fn() + Send + Sync>) {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for new deliveries; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if let Err(e) = listener.listen(WAKEUP_CHANNEL).await {
                tracing::warn!(error = %e, "cannot listen for new deliveries; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            tracing::debug!(channel = WAKEUP_CHANNEL, "listening for new deliveries");
            backoff = Duration::from_millis(200);
            // Whatever was notified while not listening is found by the next poll; waking
            // once after a (re)connect shortens even that.
            wake();
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake(),
                    Ok(None) => {
                        tracing::warn!("the notification connection was lost; reconnecting");
                        wake();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for new deliveries failed; reconnecting");
                        break;
                    }
                }
            }
            // A fresh listener, so a connection that failed oddly is not reused.
            drop(listener);
            tokio::time::sleep(backoff).await;
        }
    }
}

#[async_trait]
impl Engine for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so processes starting together migrate one at a time.
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn writer_busy_for(&self) -> Option<Duration> {
        self.writer.busy_for()
    }

    fn claiming_processes(&self) -> usize {
        self.claiming.load(Ordering::Relaxed).max(1)
    }

    async fn migrations_current(&self) -> StoreResult<bool> {
        let known = sqlx::migrate!("./migrations/postgres").iter().count() as i64;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied >= known)
    }

    fn wakeups(&self, wake: Arc<dyn Fn() + Send + Sync>) -> Option<WakeupTask> {
        Some(Box::pin(Self::listen(self.listen_options.clone(), wake)))
    }

    async fn liveness(
        &self,
        released: Arc<dyn Fn() + Send + Sync>,
    ) -> StoreResult<Option<WakeupTask>> {
        let now = to_ms(Utc::now());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO workers (host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             RETURNING id",
        )
        .bind(host)
        .bind(i64::from(std::process::id()))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let _ = self.worker_id.set(id);
        let pool = self.pool.clone();
        let claiming = self.claiming.clone();
        Ok(Some(Box::pin(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                ticks.tick().await;
                match heartbeat(&pool, id).await {
                    Ok(Beat { released: 0, live }) => claiming.store(live, Ordering::Relaxed),
                    Ok(Beat { released: n, live }) => {
                        claiming.store(live, Ordering::Relaxed);
                        tracing::warn!(
                            deliveries = n,
                            "gave back the claims of a Herald process that stopped heartbeating"
                        );
                        released();
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
                }
            }
        })))
    }
}

/// What a heartbeat found.
struct Beat {
    /// Deliveries given back.
    released: u64,
    /// Processes alive, this one included.
    live: usize,
}

/// Beats for `id`, then gives back the claims of processes that missed their beats and
/// forgets them.
async fn heartbeat(pool: &PgPool, id: i64) -> StoreResult<Beat> {
    let now = Utc::now();
    let dead_before = to_ms(now) - (HEARTBEAT_INTERVAL * HEARTBEATS_MISSED).as_millis() as i64;
    let mut tx = pool.begin().await?;
    // A process declared dead that beats again simply registers anew under its old id.
    sqlx::query(
        "INSERT INTO workers (id, host, pid, started_at, heartbeat_at) \
         OVERRIDING SYSTEM VALUE VALUES ($1, '', 0, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
    )
    .bind(id)
    .bind(to_ms(now))
    .execute(&mut *tx)
    .await?;
    let released = sqlx::query(
        "UPDATE deliveries SET locked_until = NULL, claimed_by = NULL \
         WHERE claimed_by IN (SELECT id FROM workers WHERE heartbeat_at < $1) \
         AND state IN ('pending', 'retrying')",
    )
    .bind(dead_before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if released > 0 {
        sqlx::query(crate::store::sql::control::FREE_ORPHANED_PROBES)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
        .bind(dead_before)
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workers")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Beat {
        released,
        live: usize::try_from(live).unwrap_or(1).max(1),
    })
}
