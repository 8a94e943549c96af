//! The tenant file's journal, for large tenants.
//!
//! Rewriting a 9 MiB tenant file after each of 4,500 licence batches took ten minutes, so a
//! tenant file larger than [`JOURNAL_FROM_BYTES`] is not rewritten after every change: the
//! change is appended to `<file>.journal` as one JSON line (written and fsync'ed before the
//! change is acknowledged) and the journal is folded into the file (an atomic rewrite, then the
//! journal is removed) when it reaches half the file's size and whenever a run ends.
//!
//! An entry holds values, not operations: the organization's subscriptions as they became and
//! the licences of the users the change touched. Replaying the lines in order is therefore
//! idempotent: a crash between the rewrite and the journal's removal replays changes the file
//! already holds, to the same result. A last line cut short by a crash was never acknowledged
//! and is ignored (and cut off before the next append).

use crate::domain::{Instant, Licence, Subscription};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Tenant files up to this size are rewritten after every change (cheap at this size).
pub const JOURNAL_FROM_BYTES: u64 = 256 * 1024;

/// One acknowledged change of one organization.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    pub organization: String,
    /// The organization's subscriptions after the change, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<Subscription>>,
    /// Each touched user's licences after the change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserLicences>,
    /// The organization's groups after the change, when their licences changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<crate::domain::Group>>,
    /// When it was made (the tenant's `lastChange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<RecordedChange>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserLicences {
    pub upn: String,
    pub licenses: Vec<Licence>,
}

/// `tenant.yaml` → `tenant.yaml.journal`, beside it.
pub fn path_of(tenant: &Path) -> PathBuf {
    let mut name = tenant.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    tenant.with_file_name(name)
}

/// When a change was made and what it was, in words (the tenant's `lastChange`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordedChange {
    pub at: Instant,
    pub what: String,
}

/// Hands each entry of the journal beside `path`, if there is one, to `apply` (which applies
/// it to the tenant just read from `path`), in order.
pub fn replay(
    path: &Path,
    mut apply: impl FnMut(Entry) -> Result<(), String>,
) -> Result<(), String> {
    let journal = path_of(path);
    let text = match std::fs::read_to_string(&journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: cannot read: {e}", journal.display())),
    };
    // Only lines ending in a newline were acknowledged.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for (i, line) in complete.lines().enumerate() {
        let edited = "; was the tenant file edited while a run was cut short? Delete the \
                      journal to drop its changes";
        serde_json::from_str::<Entry>(line)
            .map_err(|e| e.to_string())
            .and_then(&mut apply)
            .map_err(|e| format!("{} line {}: {e}{edited}", journal.display(), i + 1))?;
    }
    Ok(())
}

/// Appends entries, each durable before [`Writer::append`] returns.
pub struct Writer {
    file: std::fs::File,
    pub len: u64,
}

impl Writer {
    /// Open for appending; a last line cut short by a crash is cut off.
    pub fn open(path: &Path) -> std::io::Result<Writer> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let len = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        Ok(Writer { file, len })
    }

    pub fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.len += line.len() as u64;
        Ok(())
    }
}
