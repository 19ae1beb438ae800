//! The shared handle on `wal.redb`, used by the writer thread (appends) and
//! by maintenance (manifest commits that trim the write-ahead).
//!
//! After an I/O error (a full disk, say) redb refuses further writes on the
//! handle that saw it; [`WalDb::reset`] drops it and the next
//! [`WalDb::get`] reopens the file, which makes redb recover from its last
//! commit. Ingestion thus resumes by itself once the disk has room again.
//!
//! That holds only for errors known to come before a commit (a full disk
//! while writing pages). A commit whose fsync failed may or may not be
//! durable, and the page cache may show it either way: retrying would
//! reuse its sequence numbers, and reading it back proves nothing. Such an
//! error [poisons](WalDb::poison) the handle for good: every later use
//! fails with [`Error::Stopped`], the daemon reports not ready and exits,
//! and recovery at the next start reads what the disk really holds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use redb::Database;

use crate::error::{Error, Result};

/// Opens (or creates) the database file; tests put a fault-injecting
/// storage backend here.
pub(crate) type Opener =
    Arc<dyn Fn(&Path) -> std::result::Result<Database, redb::DatabaseError> + Send + Sync>;

pub(crate) struct WalDb {
    path: PathBuf,
    opener: Opener,
    db: Mutex<Option<Arc<Database>>>,
    /// Why the write-ahead stopped, once it has.
    fatal: OnceLock<String>,
}

impl WalDb {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Arc::new(|p: &Path| Database::create(p)))
    }

    pub(crate) fn open_with(path: &Path, opener: Opener) -> Result<Self> {
        let db = opener(path).map_err(|e| Error::open(path.to_owned(), e))?;
        Ok(Self {
            path: path.to_owned(),
            opener,
            db: Mutex::new(Some(Arc::new(db))),
            fatal: OnceLock::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, reopening it after a [`WalDb::reset`].
    pub(crate) fn get(&self) -> Result<Arc<Database>> {
        if self.fatal.get().is_some() {
            return Err(Error::Stopped);
        }
        let mut slot = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db =
            Arc::new((self.opener)(&self.path).map_err(|e| Error::open(self.path.clone(), e))?);
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Forgets the handle after an I/O error.
    pub(crate) fn reset(&self) {
        self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Stops every further use after a commit of unknown outcome.
    pub(crate) fn poison(&self, why: String) {
        tracing::error!(error = %why, "the write-ahead stopped: a commit's outcome is unknown; exiting so recovery can replay");
        metrics::counter!("wattline_wal_fatal_total").increment(1);
        let _ = self.fatal.set(why);
        self.reset();
    }

    /// Why the write-ahead stopped, if it has.
    pub(crate) fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }
}
