//! The embedded default: SQLite in WAL mode with full fsync on commit, so a 2xx to the
//! registry always means the events are on disk.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::sql::control::claim_gate;
use super::sql::{json_ids, Backend};
use super::{
    one_per_webhook_window, to_ms, AttemptRecord, Claim, ClaimScope, DeliveryQueue, Engine,
    HandOff, IngestSummary, StoreError, StoreResult,
};
use crate::domain::events::IncomingEvent;
use group_commit::{Done, GroupCommit, Job};

mod group_commit;
mod owner;

pub use owner::DataDirLock;

/// Bytes of the database file readers map into memory (address space, not RSS: pages are
/// the kernel's page cache, shared and reclaimable).
const MMAP_SIZE: u64 = 1 << 30;

/// Write transactions take the write lock at once: one that read first and then found
/// the group committer's connection had written meanwhile would fail at once with
/// SQLITE_BUSY instead of waiting its turn.
const IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Two pools: one connection for writes, so writers queue in-process instead of fighting
/// over SQLite's lock, and several for reads, which WAL lets run beside the writer.
/// Ingest and delivery results, the writes that come in floods, share commits through
/// `group_commit`.
#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    writer: GroupCommit,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if !url.contains(":memory:") && !url.contains("mode=memory") {
            private_database_files(options.get_filename())?;
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        // Readers map the file: after each commit elsewhere a reader drops its page cache,
        // and reading pages from the mapping is far cheaper than a pread per page.
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().pragma("mmap_size", MMAP_SIZE.to_string()))
            .await?;
        let writer = GroupCommit::start(options.get_filename())?;
        Ok(Self {
            write,
            read,
            writer,
        })
    }

    /// Transactions the group committer has run: fewer than its jobs under load.
    pub fn group_commits(&self) -> u64 {
        self.writer.commits()
    }
}

/// The database holds every event and the sealed secrets: only Herald's user may read it.
/// SQLite would create the file 0644 (less the umask) and gives its `-wal` and `-shm` files
/// the database file's mode, so the file is created 0600 first (empty, which SQLite takes
/// as a new database) and all three are private, without touching the process's umask. An
/// existing database that others may read is tightened, with its `-wal` and `-shm`.
fn private_database_files(path: &std::path::Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
    match options.open(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        if let Some(had) = crate::secrets::tighten(&file, 0o600).map_err(io)? {
            tracing::warn!(path = %file.display(), was = format!("{had:o}"), "others could read the database; it is now 0600");
        }
    }
    Ok(())
}

impl Backend for SqliteStore {
    type Row = SqliteRow;
    type Pool = SqlitePool;
    type Tx = Transaction<'static, Sqlite>;
    const LOCKS_ROWS: bool = false;
    const HEADERS_JSON: &'static str =
        "(SELECT json_group_array(json_array(h.name, hex(h.value))) FROM \
          (SELECT name, value FROM webhook_headers WHERE webhook_id = w.id \
           ORDER BY lower(name), name) h)";
    const IN_JSON_IDS: &'static str = "IN (SELECT value FROM json_each($1))";

    fn reader(&self) -> SqlitePool {
        self.read.clone()
    }

    fn writer(&self) -> SqlitePool {
        self.write.clone()
    }

    async fn begin(&self) -> StoreResult<Self::Tx> {
        Ok(self.write.begin_with(IMMEDIATE).await?)
    }
}

#[async_trait]
impl Engine for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.write)
            .await
            .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    fn writer_busy_for(&self) -> Option<Duration> {
        self.writer.busy_for()
    }

    async fn migrations_current(&self) -> StoreResult<bool> {
        let known = sqlx::migrate!("./migrations/sqlite").iter().count() as i64;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.read)
                .await?;
        Ok(applied >= known)
    }
}

/// Ingest, claims and results go through the group committer (`group_commit.rs`): one
/// writer thread, one transaction per batch.
#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn ingest_handing_off(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
        hand_off: Option<Arc<dyn HandOff>>,
    ) -> StoreResult<IngestSummary> {
        let job = Job::Ingest {
            events: events.to_vec(),
            now,
            hand_off,
        };
        match self.writer.submit(job).await? {
            Done::Ingested(summary) => Ok(summary),
            _ => Err(mismatched()),
        }
    }

    async fn claim_due_in(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        scope: ClaimScope<'_>,
    ) -> StoreResult<Vec<Claim>> {
        // Finding the due deliveries may read many rows (past a large backlog of a skipped
        // webhook), so it runs on a reader; the writer only takes those still due and free.
        // `+webhook_id`: the due index finds due rows in order, where one on webhook_id
        // would read the webhooks' whole history. The gate passes over open circuits and
        // fifo deliveries that must wait, so their backlogs never fill the window.
        static SKIPPING: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT id, webhook_id FROM deliveries \
                 WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?1 \
                   AND (locked_until IS NULL OR locked_until <= ?1) \
                   AND webhook_id NOT IN (SELECT value FROM json_each(?3)) \
                   AND {} \
                 ORDER BY next_attempt_at, id LIMIT ?2",
                claim_gate("?1")
            )
        });
        static ONLY: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT id, webhook_id FROM deliveries \
                 WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?1 \
                   AND (locked_until IS NULL OR locked_until <= ?1) \
                   AND +webhook_id IN (SELECT value FROM json_each(?3)) \
                   AND {} \
                 ORDER BY next_attempt_at, id LIMIT ?2",
                claim_gate("?1")
            )
        });
        let (webhooks, only) = scope.webhooks();
        let one_each = matches!(scope, ClaimScope::OnePerWebhookSkipping(_));
        let list = json_ids(webhooks);
        let rows: Vec<(i64, i64)> = sqlx::query_as(if only {
            ONLY.as_str()
        } else {
            SKIPPING.as_str()
        })
        .bind(to_ms(now))
        .bind(if one_each {
            one_per_webhook_window(limit)
        } else {
            limit
        })
        .bind(&list)
        .fetch_all(&self.read)
        .await?;
        let due: Vec<i64> = if one_each {
            let mut seen = std::collections::HashSet::new();
            rows.into_iter()
                .filter(|(_, webhook)| seen.insert(*webhook))
                .map(|(id, _)| id)
                .take(usize::try_from(limit).unwrap_or_default())
                .collect()
        } else {
            rows.into_iter().map(|(id, _)| id).collect()
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let job = Job::Claim {
            ids: due,
            now,
            lease_until,
        };
        match self.writer.submit(job).await? {
            Done::Claimed(claims) => Ok(claims),
            _ => Err(mismatched()),
        }
    }

    async fn record_attempt(&self, r: AttemptRecord) -> StoreResult<()> {
        match self.writer.submit(Job::Attempt(Box::new(r))).await? {
            Done::Recorded => Ok(()),
            _ => Err(mismatched()),
        }
    }
}

fn mismatched() -> StoreError {
    StoreError::Writer("it answered a different kind of job".into())
}
