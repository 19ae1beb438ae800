//! The shared handle on `wal.redb`, used by the writer thread (appends) and
//! by maintenance (manifest commits that trim the write-ahead).
//!
//! After an I/O error (a full disk, say) redb refuses further writes on the
//! handle that saw it; [`WalDb::reset`] drops it and the next
//! [`WalDb::get`] reopens the file, which makes redb recover from its last
//! commit. Ingestion thus resumes by itself once the disk has room again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::Database;

use crate::error::{Error, Result};

pub(crate) struct WalDb {
    path: PathBuf,
    db: Mutex<Option<Arc<Database>>>,
}

impl WalDb {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|e| Error::open(path.to_owned(), e))?;
        Ok(Self {
            path: path.to_owned(),
            db: Mutex::new(Some(Arc::new(db))),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open database, reopening it after a [`WalDb::reset`].
    pub(crate) fn get(&self) -> Result<Arc<Database>> {
        let mut slot = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db =
            Arc::new(Database::create(&self.path).map_err(|e| Error::open(self.path.clone(), e))?);
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Forgets the handle after an I/O error.
    pub(crate) fn reset(&self) {
        self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
