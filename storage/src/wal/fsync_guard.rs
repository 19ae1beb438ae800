//! The storage backend under `wal.redb`: the file, with every failed fsync
//! made fatal at the moment it happens.
//!
//! redb reports a failed commit as one error, whether the disk refused a
//! page write (the commit did not land) or the fsync after the commit
//! record failed (it may have landed, and the page cache may show either).
//! Only the second must stop the store, and only the backend can tell them
//! apart, so it reports failed fsyncs itself: to the write-ahead's fatal
//! flag, before redb's commit returns. This covers every commit on
//! `wal.redb`: batches, manifest changes, rollup marks and the zone ledger.

use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use redb::{BackendError, StorageBackend};

/// Set once, with the reason, when an fsync of `wal.redb` failed.
pub(crate) type FatalFlag = Arc<OnceLock<String>>;

pub(crate) struct FsyncGuard {
    pub(crate) inner: Box<dyn StorageBackend>,
    pub(crate) fatal: FatalFlag,
}

impl fmt::Debug for FsyncGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsyncGuard").finish_non_exhaustive()
    }
}

impl StorageBackend for FsyncGuard {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data().inspect_err(|e| {
            let _ = self
                .fatal
                .set(format!("fsync of the write-ahead failed: {e}"));
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
