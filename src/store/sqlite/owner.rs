//! One `herald serve` owns a SQLite data directory. The lock says so to a second process
//! (which refuses to start with a clear message instead of sharing the writer), and it
//! lets a starting process give up every lease at once: no other process can hold them,
//! so after a crash and restart deliveries go out at once rather than after their lease.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Held for the life of the process; the kernel releases it when the process ends, however
/// it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        let path: PathBuf = data_dir.join("herald.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock takes a file descriptor this process owns and changes no memory.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            anyhow::bail!(
                "another `herald serve` (pid {}) is using the data directory {}: one process \
                 owns a SQLite database; stop it first, or share a PostgreSQL database between \
                 processes (--database postgres://...)",
                if holder.is_empty() { "unknown" } else { holder },
                data_dir.display()
            );
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(Self { _file: file })
    }
}
