//! Partition files that a query reads as one version each.
//!
//! A rollup step replaces a partition by renaming a new file over it (or
//! removes it), while SQL lists the partitions when a query is planned and
//! reads them later. So readers get open handles, taken when they list:
//! an open file keeps the content it was opened with through a rename or
//! a removal. Listing and opening hold the shared side of a lock whose
//! exclusive side every rename and removal takes, so a listed size always
//! belongs to the handle's version.
//!
//! Each version also has a name of its own, which the query engine keys
//! its cache of parsed footers by: a rewritten file can have the size and
//! modification time of the one it replaced (times are coarse, sizes of
//! similar files often equal), and a footer read from the wrong version
//! would decode the new file wrongly.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::sync::RecoverRw;

/// One partition file, open at the version a query reads.
#[derive(Debug, Clone)]
pub struct PinnedPartition {
    pub file: Arc<File>,
    /// Bytes of this version.
    pub size: u64,
    /// A name no other version of any partition has in this process.
    pub version: String,
}

/// Which version of each partition is current; see the module doc.
#[derive(Debug)]
pub(crate) struct PartitionVersions {
    /// The version each partition written since open has; held shared
    /// while readers list and open, exclusively while a file is replaced.
    written: RwLock<HashMap<PathBuf, u64>>,
    /// Distinguishes this store's versions from another one's in the same
    /// process (a store reopened on the same folder, in tests).
    instance: u64,
    next: AtomicU64,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl PartitionVersions {
    pub(crate) fn new() -> Self {
        Self {
            written: RwLock::new(HashMap::new()),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            next: AtomicU64::new(1),
        }
    }

    /// Renames `tmp` over `path`, as one step no reader sees half of.
    pub(crate) fn replace(&self, tmp: &Path, path: &Path) -> std::io::Result<()> {
        let mut written = self.written.write_locked();
        std::fs::rename(tmp, path)?;
        written.insert(path.to_owned(), self.next.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }

    /// Removes `path`, as [`Self::replace`] replaces it.
    pub(crate) fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut written = self.written.write_locked();
        std::fs::remove_file(path)?;
        written.remove(path);
        Ok(())
    }

    /// Opens every file `list` names, at one version each.
    pub(crate) fn open(&self, list: impl FnOnce() -> Vec<PathBuf>) -> Result<Vec<PinnedPartition>> {
        let written = self.written.read_locked();
        let mut out = Vec::new();
        for path in list() {
            let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
            let file = File::open(&path).map_err(|e| io("opening", e))?;
            let size = file
                .metadata()
                .map_err(|e| io("reading the size of", e))?
                .len();
            let version = format!(
                "{}@{}.{}",
                path.display(),
                self.instance,
                written.get(&path).copied().unwrap_or(0)
            );
            out.push(PinnedPartition {
                file: Arc::new(file),
                size,
                version,
            });
        }
        Ok(out)
    }
}
