//! The data directory: created 0700 (it holds buffered events and dead
//! letters) and locked (flock on `fuwa.lock`) for as long as the agent runs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::buffer::config::BufferType;
use crate::config::Config;

/// Creates data_dir (0700: it holds buffered events and dead letters).
/// False when it could not be created and nothing needs it.
pub(super) fn create_data_dir(cfg: &Config) -> Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    let needs_dir = cfg
        .outputs
        .iter()
        .any(|o| o.buffer.kind == BufferType::File);
    let created = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.agent.data_dir);
    if let Err(e) = created {
        if cfg.data_dir_explicit || needs_dir {
            return Err(e).with_context(|| {
                format!("cannot create data_dir {}", cfg.agent.data_dir.display())
            });
        }
        warn!(data_dir = %cfg.agent.data_dir.display(), error = %e, "cannot create the default data_dir; nothing needs it with memory buffers");
        return Ok(false);
    }
    Ok(true)
}

/// The name of the lock file in data_dir.
pub const LOCK_FILE: &str = "fuwa.lock";

/// Another `fuwa run` holds data_dir (or it could not be locked): exit 2,
/// a restart cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// the lock file cannot be opened (EACCES, EROFS...)
    #[error("{0}")]
    Open(String),
    /// held by another process, or flock failed
    #[error("{0}")]
    Held(String),
}

/// An exclusive lock (flock) on `data_dir/fuwa.lock`, holding the pid of
/// the agent that has it; released when dropped or when the process ends,
/// however it ends. Two agents on one data_dir would queue, deliver and
/// delete each other's chunks; the second one refuses to start instead.
/// `fuwa dead-letter`, `fuwa check` and `fuwa athena-ddl` do not take it.
pub struct DataDirLock {
    pub dir: PathBuf,
    _file: std::fs::File,
}

impl DataDirLock {
    pub fn acquire(dir: &std::path::Path) -> Result<DataDirLock, LockError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                LockError::Open(format!("cannot open the lock file {}: {e}", path.display()))
            })?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut held = String::new();
                let _ = f.take(64).read_to_string(&mut held);
                let pid = held.trim();
                let holder = if pid.is_empty() {
                    "another process".to_string()
                } else {
                    format!("another fuwa (pid {pid})")
                };
                return Err(LockError::Held(format!(
                    "data_dir {} is in use by {holder} (lock file {}): two agents on one data_dir would lose events; stop it or give this one another --data-dir",
                    dir.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(LockError::Held(format!(
                    "cannot lock data_dir {} ({}): {e}",
                    dir.display(),
                    path.display()
                )))
            }
        }
        let written = f
            .set_len(0)
            .and_then(|_| f.rewind())
            .and_then(|_| writeln!(f, "{}", std::process::id()))
            .and_then(|_| f.sync_data());
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "cannot write the pid into the lock file (the lock is held)");
        }
        info!(data_dir = %dir.display(), pid = std::process::id(), "data_dir locked");
        Ok(DataDirLock {
            dir: dir.to_path_buf(),
            _file: f,
        })
    }
}

/// Creates and locks the data_dir of `cfg` (None when there is no usable
/// data_dir and nothing needs one).
pub(super) fn lock_data_dir(cfg: &Config) -> Result<Option<DataDirLock>> {
    if !create_data_dir(cfg)? {
        return Ok(None);
    }
    let needs_dir = cfg
        .outputs
        .iter()
        .any(|o| o.buffer.kind == BufferType::File);
    match DataDirLock::acquire(&cfg.agent.data_dir) {
        Ok(l) => Ok(Some(l)),
        // a default data_dir this user cannot write (the package's, say)
        // while only memory buffers run: as when it cannot be created
        Err(LockError::Open(e)) if !cfg.data_dir_explicit && !needs_dir => {
            warn!(data_dir = %cfg.agent.data_dir.display(), error = %e, "cannot lock the default data_dir; nothing needs it with memory buffers");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
