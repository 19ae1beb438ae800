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
//! Each version also has a number of its own, which the query engine's
//! cache of parsed footers checks: a rewritten file can have the size and
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
    pub path: PathBuf,
    /// Bytes of this version.
    pub size: u64,
    /// No other version of this path has this number in this process.
    pub version: u64,
}

/// The partition files one query holds open, each at one version: every
/// scan of a table in the query reads the same version of a file, and a
/// query referring to a table many times opens its files once.
#[derive(Debug, Default)]
pub struct PinnedPartitions(HashMap<PathBuf, PinnedPartition>);

/// Which version of each partition is current; see the module doc.
#[derive(Debug)]
pub(crate) struct PartitionVersions {
    /// The version of each partition written since open; held shared
    /// while readers list and open, exclusively while a file is replaced.
    written: RwLock<HashMap<PathBuf, u64>>,
    /// The version of every file not written since open.
    found: u64,
}

/// Versions are unique in the process, also across stores opened on the
/// same folder one after another (in tests).
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

impl PartitionVersions {
    pub(crate) fn new() -> Self {
        Self {
            written: RwLock::new(HashMap::new()),
            found: next_version(),
        }
    }

    /// Renames `tmp` over `path`, as one step no reader sees half of.
    pub(crate) fn replace(&self, tmp: &Path, path: &Path) -> std::io::Result<()> {
        let mut written = self.written.write_locked();
        std::fs::rename(tmp, path)?;
        written.insert(path.to_owned(), next_version());
        Ok(())
    }

    /// Removes `path`, as [`Self::replace`] replaces it.
    pub(crate) fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut written = self.written.write_locked();
        std::fs::remove_file(path)?;
        written.remove(path);
        Ok(())
    }

    /// The files `list` names, opened unless `pinned` holds them already
    /// (and then added to it).
    pub(crate) fn open(
        &self,
        list: impl FnOnce() -> Vec<PathBuf>,
        pinned: &mut PinnedPartitions,
    ) -> Result<Vec<PinnedPartition>> {
        let written = self.written.read_locked();
        let mut out = Vec::new();
        for path in list() {
            if let Some(p) = pinned.0.get(&path) {
                out.push(p.clone());
                continue;
            }
            let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
            let file = File::open(&path).map_err(|e| io("opening", e))?;
            let size = file
                .metadata()
                .map_err(|e| io("reading the size of", e))?
                .len();
            let p = PinnedPartition {
                file: Arc::new(file),
                version: written.get(&path).copied().unwrap_or(self.found),
                path: path.clone(),
                size,
            };
            pinned.0.insert(path, p.clone());
            out.push(p);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn content(p: &PinnedPartition) -> String {
        let mut s = String::new();
        (&*p.file).read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn a_pinned_version_outlives_its_replacement_and_is_opened_once_per_query() {
        let dir = tempfile::tempdir().unwrap();
        let (path, tmp) = (dir.path().join("part"), dir.path().join("tmp"));
        std::fs::write(&path, "old").unwrap();
        let versions = PartitionVersions::new();
        let list = || vec![path.clone()];

        let mut query = PinnedPartitions::default();
        let first = versions.open(list, &mut query).unwrap().remove(0);
        std::fs::write(&tmp, "newer").unwrap();
        versions.replace(&tmp, &path).unwrap();
        let again = versions.open(list, &mut query).unwrap().remove(0);
        assert!(Arc::ptr_eq(&first.file, &again.file), "one open per query");
        assert_eq!((content(&first), first.size), ("old".into(), 3));

        let mut later = PinnedPartitions::default();
        let newer = versions.open(list, &mut later).unwrap().remove(0);
        assert_eq!((content(&newer), newer.size), ("newer".into(), 5));
        assert_ne!(newer.version, first.version);

        versions.remove(&path).unwrap();
        assert_eq!(versions.open(list, &mut later).unwrap()[0].size, 5);
        let mut after = PinnedPartitions::default();
        let gone = versions.open(Vec::new, &mut after).unwrap();
        assert!(gone.is_empty());
        std::fs::write(&tmp, "again").unwrap();
        versions.replace(&tmp, &path).unwrap();
        let back = versions.open(list, &mut after).unwrap().remove(0);
        assert!(![first.version, newer.version].contains(&back.version));
        // A store opened later on the same folder numbers its versions anew.
        let reopened = PartitionVersions::new();
        let seen = reopened
            .open(list, &mut PinnedPartitions::default())
            .unwrap();
        assert!(![first.version, newer.version, back.version].contains(&seen[0].version));
    }
}
