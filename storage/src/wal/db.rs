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

use crate::sync::Recover;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, StorageBackend};

use super::fsync_guard::{FatalFlag, FsyncGuard};
use crate::error::{Error, Result};

/// Opens the storage under the database file; tests put a simulated disk
/// here.
pub(crate) type Opener =
    Arc<dyn Fn(&Path) -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync>;

pub(crate) struct WalDb {
    path: PathBuf,
    opener: Opener,
    db: Mutex<Option<Arc<Database>>>,
    /// Why the write-ahead stopped, once it has.
    fatal: FatalFlag,
    /// Whether the stop was logged.
    reported: AtomicBool,
}

/// What [`WalDb::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compaction {
    Done,
    NotWorth,
    /// In use; tried again after the next flush.
    Busy,
}

/// Bytes of the pages the database uses.
fn live_bytes(db: &Database) -> Result<u64> {
    let txn = db.begin_write()?;
    let stats = txn.stats()?;
    txn.abort()?;
    Ok(stats.allocated_pages() * stats.page_size() as u64)
}

/// The file itself, as redb opens it.
fn open_file(path: &Path) -> std::io::Result<Box<dyn StorageBackend>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let backend = redb::backends::FileBackend::new(file).map_err(std::io::Error::other)?;
    Ok(Box::new(backend))
}

impl WalDb {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Arc::new(open_file))
    }

    pub(crate) fn open_with(path: &Path, opener: Opener) -> Result<Self> {
        let wal = Self {
            path: path.to_owned(),
            opener,
            db: Mutex::new(None),
            fatal: FatalFlag::default(),
            reported: AtomicBool::new(false),
        };
        wal.get()?;
        Ok(wal)
    }

    fn open_database(&self) -> Result<Database> {
        let inner = (self.opener)(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        let backend = FsyncGuard {
            inner,
            fatal: self.fatal.clone(),
        };
        Database::builder()
            .create_with_backend(backend)
            .map_err(|e| Error::open(self.path.clone(), e))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, reopening it after a [`WalDb::reset`].
    pub(crate) fn get(&self) -> Result<Arc<Database>> {
        if self.fatal().is_some() {
            return Err(Error::Stopped);
        }
        let mut slot = self.db.locked();
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(self.open_database()?);
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Gives the file's free pages back to the file system when they are
    /// most of it (`worth` says, from the file's and the live pages'
    /// sizes): redb reuses freed pages but never shrinks its file, so
    /// without this the write-ahead stays as large as the most it ever
    /// held (one memtable before a flush trimmed it). Appends wait
    /// meanwhile; moving little live data keeps that short. `Busy` while a
    /// transaction or another handle is in use.
    pub(crate) fn compact(&self, worth: impl Fn(u64, u64) -> bool) -> Result<Compaction> {
        let mut slot = self.db.locked();
        let Some(db) = slot.take() else {
            return Ok(Compaction::Busy);
        };
        let mut db = match Arc::try_unwrap(db) {
            Ok(db) => db,
            Err(shared) => {
                *slot = Some(shared);
                return Ok(Compaction::Busy);
            }
        };
        let file = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let live = match live_bytes(&db) {
            Ok(live) => live,
            Err(e) => {
                *slot = Some(Arc::new(db));
                return Err(e);
            }
        };
        if !worth(file, live) {
            *slot = Some(Arc::new(db));
            return Ok(Compaction::NotWorth);
        }
        match db.compact() {
            Ok(_) => {
                *slot = Some(Arc::new(db));
                Ok(Compaction::Done)
            }
            // The handle is dropped: the next use reopens the file and
            // redb recovers from its last commit.
            Err(redb::CompactionError::Storage(e)) => Err(Error::from(e)),
            Err(e) => {
                tracing::debug!(error = %e, "write-ahead compaction skipped");
                *slot = Some(Arc::new(db));
                Ok(Compaction::Busy)
            }
        }
    }

    /// Forgets the handle after an I/O error.
    pub(crate) fn reset(&self) {
        self.db.locked().take();
    }

    /// Stops every further use after a commit of unknown outcome.
    pub(crate) fn poison(&self, why: String) {
        let _ = self.fatal.set(why);
        self.fatal();
        self.reset();
    }

    /// Why the write-ahead stopped, if it has: a commit of unknown outcome,
    /// or any failed fsync of the file (see [`super::fsync_guard`]).
    pub(crate) fn fatal(&self) -> Option<&str> {
        let why = self.fatal.get().map(String::as_str)?;
        if !self.reported.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %why, "the write-ahead stopped: nothing more is acknowledged; exiting so recovery can replay what is durable");
            metrics::counter!("wattline_wal_fatal_total").increment(1);
        }
        Some(why)
    }
}
