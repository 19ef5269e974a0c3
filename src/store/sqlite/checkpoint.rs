//! WAL checkpoints on a thread of their own.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages:
//! every few thousand envelopes, one group commit (and every caller in its batch) waited
//! while pages were copied back into the database file and it was fsynced. Here no
//! connection checkpoints on commit (`wal_autocheckpoint = 0`), and this thread runs a
//! PASSIVE checkpoint every [`EVERY`]: it never waits for readers or the writer, so the
//! WAL stays a few seconds' worth of writes long and commits no longer stall behind it.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::{StoreError, StoreResult};

/// How often the WAL is written back into the database.
const EVERY: Duration = Duration::from_secs(1);

/// Ends the thread when the last clone of the store that holds it is dropped.
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("herald-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "a WAL checkpoint failed; the next one tries again");
                    }
                }
            })
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::registry::envelope::parse_envelope;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{DeliveryQueue, Engine};

    /// No commit checkpoints any more, so the database file grows only when this thread
    /// copies the WAL back into it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_written_back_without_a_commit_doing_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("herald.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let wal = || {
            let mut name = path.as_os_str().to_owned();
            name.push("-wal");
            std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let before = size();
        let padding = "x".repeat(2_000);
        for i in 0..100 {
            let body = format!(
                r#"{{"events":[{{"id":"cp-{i}","action":"pull","padding":"{padding}","target":{{"repository":"acme/web","digest":"sha256:1"}}}}]}}"#
            );
            let events = parse_envelope(body.as_bytes()).expect("envelope");
            store
                .ingest(&events, chrono::Utc::now())
                .await
                .expect("ingest");
        }
        // 100 envelopes of 2 kB are far below the 1,000 pages at which a commit would have
        // checkpointed by default.
        while size() < before + 100_000 {
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {} bytes (WAL {} bytes)",
                size(),
                wal()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
