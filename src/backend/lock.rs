//! The tenant file's lock: one process at a time changes a tenant file and its journal.
//!
//! Two `apply` runs on one file used to both buy (a purchase paid for and lost) and could
//! leave the file torn or gone. Every run that may write the file (`apply`, `delete`, `run`,
//! `emulate`) holds an exclusive advisory lock on `<file>.lock` beside it for its whole life;
//! `plan` holds a shared one (several plans may read at once, never while a writer runs). The
//! lock is the operating system's (`flock`, through the standard library's `File::lock`): it
//! goes with the process, however that ends, so a crash never leaves a stale lock behind. The
//! lock file itself is never removed (removing it would let two runs lock two different files);
//! it holds the pid and command of the last exclusive holder, for the message of a run that
//! cannot get the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only (`plan`): shared with other readers.
    Read,
    /// Changes the file: alone.
    Write,
}

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
}

/// The lock could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{file} is in use by {holder}: waited {waited}, nothing was changed (wait longer with \
         --lock-timeout, or let the other run finish)"
    )]
    Busy {
        file: String,
        holder: String,
        waited: String,
    },
    #[error("cannot lock {file}: {message}")]
    Io { file: String, message: String },
}

/// `tenant.yaml` → `tenant.yaml.lock`, beside it.
pub fn path_of(tenant: &Path) -> PathBuf {
    let mut name = tenant.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    tenant.with_file_name(name)
}

/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(50);

/// Lock `tenant` (its lock file beside it), waiting at most `timeout`; `command` names this
/// run for another run's message (e.g. `seatkeeper apply`).
pub fn acquire(
    tenant: &Path,
    access: Access,
    timeout: Duration,
    command: &str,
) -> Result<StateLock, LockError> {
    let path = path_of(tenant);
    let io = |e: std::io::Error| LockError::Io {
        file: tenant.display().to_string(),
        message: e.to_string(),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let start = Instant::now();
    loop {
        let tried = match access {
            Access::Read => file.try_lock_shared(),
            Access::Write => file.try_lock(),
        };
        match tried {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(POLL.min(timeout.saturating_sub(start.elapsed())));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Busy {
                    file: tenant.display().to_string(),
                    holder: holder(&mut file),
                    waited: shown(timeout),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    if access == Access::Write {
        // Who holds it, for the message of a run that waits; best effort.
        let me = format!("{command} (pid {})\n", std::process::id());
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()));
    }
    Ok(StateLock { _file: file, path })
}

/// Try once, without waiting: `None` when another process holds it.
pub fn try_acquire(tenant: &Path, command: &str) -> Result<Option<StateLock>, LockError> {
    match acquire(tenant, Access::Write, Duration::ZERO, command) {
        Ok(l) => Ok(Some(l)),
        Err(LockError::Busy { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The holder as the lock file names it (an exclusive holder writes itself there).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    match text.trim() {
        "" => "another seatkeeper run (a plan reading it)".into(),
        who => who.to_string(),
    }
}

/// The holder named in the lock file, when another process holds the lock now.
pub fn held_by(tenant: &Path) -> Option<String> {
    let mut file = File::open(path_of(tenant)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(holder(&mut file)),
    }
}

fn shown(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = dir.path().join("tenant.yaml");
        let first = acquire(&tenant, Access::Write, Duration::ZERO, "seatkeeper apply").unwrap();
        let err = acquire(&tenant, Access::Write, Duration::from_millis(120), "x").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("tenant.yaml is in use by seatkeeper apply (pid "),
            "{text}"
        );
        assert!(text.contains("waited 120ms"), "{text}");
        assert!(held_by(&tenant).is_some());
        drop(first);
        assert!(held_by(&tenant).is_none());
        acquire(&tenant, Access::Write, Duration::ZERO, "x").unwrap();
    }

    #[test]
    fn readers_share_and_keep_writers_out() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = dir.path().join("tenant.yaml");
        let a = acquire(&tenant, Access::Read, Duration::ZERO, "plan").unwrap();
        let _b = acquire(&tenant, Access::Read, Duration::ZERO, "plan").unwrap();
        assert!(try_acquire(&tenant, "apply").unwrap().is_none());
        drop(a);
        drop(_b);
        assert!(try_acquire(&tenant, "apply").unwrap().is_some());
    }
}
