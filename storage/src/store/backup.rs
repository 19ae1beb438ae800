//! Online backup: a consistent copy of the data directory while ingestion
//! goes on.

use crate::sync::Recover;
use std::path::Path;

use super::ReadingStore;
use crate::error::{Error, Result};
use crate::manifest;
use crate::tree::{Transfer, link_or_copy};

/// What a backup copied.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    pub chunks: usize,
    pub chunk_bytes: u64,
}

impl ReadingStore {
    /// Writes a consistent copy of the whole data directory (catalog,
    /// write-ahead, manifest and the chunk files it names) into `dir`, which
    /// must not exist or be empty; `serve` can open it. Maintenance waits
    /// meanwhile, ingestion does not: the copy is the state as of its first
    /// step. Blocking.
    pub fn backup(&self, dir: &Path) -> Result<BackupReport> {
        let _maintenance = self.maintenance.locked();
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
                .next()
                .is_some()
        {
            return Err(Error::InvalidArgument(format!(
                "backup directory {} is not empty",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // The write-ahead first: the catalog copied after it knows every
        // sensor its records name.
        // The rollup files as of the same moment as the dirty marks copied
        // with the write-ahead: no rollup step runs in between.
        // The catalog as of the same moment too (a zone changed since is
        // reconciled by the rollups when the copy is opened).
        let chunks = self.rollups.backup_with(dir, || {
            let chunks = manifest::backup_to(self.wal.get()?.as_ref(), &dir.join("wal.redb"))?;
            self.catalog.backup_to(&dir.join("meta.redb"))?;
            Ok(chunks)
        })?;
        let mut bytes = 0;
        for meta in &chunks {
            // A hard link is instant and safe: chunk files are never
            // modified, only replaced.
            link_or_copy(
                &self.data_dir.join(&meta.file),
                &dir.join(&meta.file),
                Transfer::LinkOrCopy,
            )?;
            bytes += meta.bytes;
        }
        let key = self.data_dir.join("admin.key");
        if key.exists() {
            link_or_copy(&key, &dir.join("admin.key"), Transfer::Copy)?;
        }
        crate::tree::sync_dirs(dir)?;
        Ok(BackupReport {
            chunks: chunks.len(),
            chunk_bytes: bytes,
        })
    }
}
