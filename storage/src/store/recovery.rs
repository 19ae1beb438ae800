//! Recovery of the chunk files at start: every file the manifest names
//! must be there (else the start stops, deleting nothing), readers' links
//! are rebuilt, and files no manifest entry names are deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::chunk::{ChunkFile, ChunkId, ChunkMeta};
use crate::error::{Error, Result};

/// What recovery found.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub batches: u64,
    pub readings: u64,
    pub chunks: usize,
    pub removed_stray_files: usize,
    pub elapsed: Duration,
}

/// The chunk files `metas` name, by id, and how many stray files were
/// removed.
pub(super) fn recover_chunks(
    data_dir: &Path,
    metas: &[ChunkMeta],
) -> Result<(BTreeMap<ChunkId, Arc<ChunkFile>>, usize)> {
    // Every named file must be there before anything unnamed is
    // deleted: a directory restored wrongly is refused untouched.
    // Readers' links are rebuilt (none is in use before the store is).
    let _ = std::fs::remove_dir_all(crate::chunk::open_links_dir(data_dir));
    let mut chunks = BTreeMap::new();
    for meta in metas.iter().cloned() {
        let file = ChunkFile::new(data_dir, meta);
        if !file.path.exists() {
            return Err(Error::ChunkMissing {
                path: file.path.clone(),
            });
        }
        chunks.insert(file.meta.id, Arc::new(file));
    }
    let removed = remove_stray_files(data_dir, metas)?;
    Ok((chunks, removed))
}

/// Deletes temporary files and files the manifest does not name under
/// `<data-dir>/chunks/readings`, and day folders left empty.
fn remove_stray_files(data_dir: &Path, metas: &[ChunkMeta]) -> Result<usize> {
    let root = data_dir.join("chunks").join("readings");
    let known: std::collections::HashSet<PathBuf> =
        metas.iter().map(|m| data_dir.join(&m.file)).collect();
    let Ok(days) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    let mut removed = 0;
    for day in days.flatten() {
        let dir = day.path();
        if !dir.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !known.contains(&path) {
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("removing stray {}", path.display()), e))?;
                tracing::info!(path = %path.display(), "removed a chunk file no manifest entry names");
                removed += 1;
            }
        }
        // Only succeeds when empty.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(removed)
}
