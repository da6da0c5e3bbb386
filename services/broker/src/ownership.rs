//! One broker per log: an exclusive lock on a file beside the log, held for
//! the broker's lifetime. Two brokers on one log would each cache the groups
//! and answer for deliveries the other leased; the second one refuses to start.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a starting broker waits for a previous one on the same log to let
/// go (a restart right after a stop, while the old process is still exiting).
const WAIT_FOR_PREVIOUS: Duration = Duration::from_secs(5);

/// The held lock; released when dropped (or when the process dies, whatever the way).
#[derive(Debug)]
pub(crate) struct Ownership {
    _file: File,
}

/// Why the log could not be claimed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OwnershipError {
    /// Another broker holds it.
    #[error("another broker is using {log} (it holds {lock}); stop it first, or give this one another data dir")]
    Taken {
        /// The log.
        log: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Claims the log at `log`, waiting a few seconds for a previous owner to stop.
pub(crate) async fn claim(log: &Path) -> Result<Ownership, OwnershipError> {
    let lock = log.with_extension("lock");
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(|source| OwnershipError::Io { path: dir.to_owned(), source })?;
    }
    let file = File::create(&lock).map_err(|source| OwnershipError::Io { path: lock.clone(), source })?;
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PREVIOUS;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Ownership { _file: file }),
            Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(TryLockError::WouldBlock) => return Err(OwnershipError::Taken { log: log.to_owned(), lock }),
            Err(TryLockError::Error(source)) => return Err(OwnershipError::Io { path: lock, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_on_one_log_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("broker/log.sqlite");
        let first = claim(&log).await.unwrap();
        let second = claim(&log).await;
        assert!(matches!(second, Err(OwnershipError::Taken { .. })), "{second:?}");
        drop(first);
        assert!(claim(&log).await.is_ok());
    }
}
