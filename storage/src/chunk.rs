//! Chunk files: the cold store of raw readings.
//!
//! On disk, Hive-style, one folder per UTC day of the readings' `ts`:
//!
//! ```text
//! <data-dir>/chunks/readings/day=2026-11-29/part-00000000000000000042.parquet
//! ```
//!
//! Each file is zstd Parquet with the columns of the `readings` table
//! (`sensor_id`, `building_id`, `tenant_id`, `ts` as UTC milliseconds,
//! `value_kwh`), sorted by `(building_id, sensor_id, ts)`, with row-group
//! statistics and the page index, so a reader that wants one building and a
//! time range skips most of it. Invariants:
//!
//! - A file is in use only once the manifest (`manifest.rs`, a layer above) names
//!   it. Files are written under a temporary name, fsynced, renamed and the
//!   directory fsynced before the manifest commit that names them.
//! - Within one file a `(sensor_id, ts)` appears once. Across files of a
//!   day it may appear again (late data, corrections); the file with the
//!   higher [`ChunkMeta::precedence`] wins, and anything still in memory
//!   wins over every file. Compaction merges a day's files into one.
//! - Files not named by the manifest (a crash before the commit, or after a
//!   compaction's commit but before the old files were deleted) and
//!   temporary files are deleted at start.
//! - `chunks/readings/` holds exactly the files the manifest names: readers
//!   open a second hard link of each file under `chunks/open/`, so a file
//!   that compaction or retention replaced leaves `chunks/readings/` at
//!   once, while a query still reading it keeps its link until it ends.
//!   The links are rebuilt at start.

mod format;
mod merge;
mod names;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

pub use format::{read_chunk, readings_schema, to_record_batch};
pub(crate) use merge::merge_files;
pub(crate) use names::SensorIds;
pub use names::SensorNames;
pub(crate) use writer::{ChunkWriter, WRITE_ROWS, write_chunk};

use crate::reading::{Reading, TimeRange};

pub(crate) use crate::reading::{DAY_MS, day_of};

/// `YYYY-MM-DD` of a day number.
pub(crate) fn day_name(day: i64) -> String {
    day.checked_mul(DAY_MS)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day{day}"))
}

/// A chunk file's id: unique, never reused, and in the file's name.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ChunkId(pub u64);

impl ChunkId {
    /// The id after this one.
    pub(crate) fn next(self) -> ChunkId {
        ChunkId(self.0 + 1)
    }
}

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:020}", self.0)
    }
}

/// What the manifest records about one chunk file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// Unique, never reused; names the file.
    pub id: ChunkId,
    /// Which file wins on a duplicate `(sensor_id, ts)`: the higher. A flush
    /// gives its chunks fresh, higher values; a compaction gives its output
    /// the highest precedence of its inputs.
    pub precedence: u64,
    /// UTC day number of every reading in the file.
    pub day: i64,
    /// Path relative to the data directory.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
    /// CRC-32 of the whole file as written, for `wattline check` (the
    /// Parquet writer writes no page checksums). Absent in chunks written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
}

impl ChunkMeta {
    /// Whether the file may hold a reading in `range`.
    pub fn overlaps(&self, range: TimeRange) -> bool {
        self.max_ts_ms >= range.start_ms && self.min_ts_ms < range.end_ms
    }

    /// Whether a reading at `ts_ms` falls inside the file's time span.
    pub fn spans(&self, ts_ms: i64) -> bool {
        ts_ms >= self.min_ts_ms && ts_ms <= self.max_ts_ms
    }

    /// The relative path a chunk with this id and day gets.
    pub fn relative_path(id: ChunkId, day: i64) -> String {
        format!("chunks/readings/day={}/part-{id}.parquet", day_name(day))
    }
}

/// Whether the time spans of `files` overlap, so that a reading may be
/// in several of them.
pub fn spans_overlap(files: &[Arc<ChunkFile>]) -> bool {
    let mut spans: Vec<(i64, i64)> = files
        .iter()
        .map(|f| (f.meta.min_ts_ms, f.meta.max_ts_ms))
        .collect();
    spans.sort_unstable();
    spans.windows(2).any(|w| w[1].0 <= w[0].1)
}

/// The folder of the readers' links (see the module docs).
pub(crate) fn open_links_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("chunks").join("open")
}

/// A chunk file in use. Retiring it (compaction or retention replaced it)
/// removes its name under `chunks/readings/`; dropping its last handle then
/// deletes the readers' link, so a query that still reads it is never cut
/// short.
#[derive(Debug)]
pub struct ChunkFile {
    pub meta: ChunkMeta,
    /// What readers open: the link under `chunks/open/` (or the file itself
    /// where the file system has no hard links).
    pub path: PathBuf,
    /// The name the manifest records.
    public: PathBuf,
    retired: AtomicBool,
}

impl ChunkFile {
    /// The chunk `meta` names, with its readers' link (made if missing).
    pub(crate) fn new(data_dir: &Path, meta: ChunkMeta) -> Self {
        let public = data_dir.join(&meta.file);
        let dir = open_links_dir(data_dir);
        let link = dir.join(format!("part-{}.parquet", meta.id));
        let linked = link.exists()
            || std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::hard_link(&public, &link))
                .is_ok();
        Self {
            path: if linked { link } else { public.clone() },
            public,
            meta,
            retired: AtomicBool::new(false),
        }
    }

    /// Marks the file for deletion once nobody reads it any more.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        if self.path != self.public {
            remove_chunk_file(&self.public);
        }
    }
}

/// Deletes a chunk file (a missing one is fine) and its day folder once
/// empty.
fn remove_chunk_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not delete a retired chunk");
    }
    // Only succeeds when empty.
    if let Some(dir) = path.parent()
        && dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("day="))
    {
        let _ = std::fs::remove_dir(dir);
    }
}

impl Drop for ChunkFile {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            remove_chunk_file(&self.path);
        }
    }
}

/// Merges sources of readings, each sorted by `(rank, ts)` and listed
/// oldest first: on a duplicate `(sensor, ts)` the newest source's value
/// wins. The result is sorted by `(rank, ts)`.
pub fn merge_newest_wins(sources: Vec<Vec<Reading>>, names: &SensorNames) -> Vec<Reading> {
    if sources.len() == 1 {
        return sources.into_iter().next().unwrap_or_default();
    }
    let mut all: Vec<(u32, i64, usize, Reading)> = sources
        .into_iter()
        .enumerate()
        .flat_map(|(i, rows)| {
            rows.into_iter()
                .map(move |r| (0, r.ts_ms, usize::MAX - i, r))
        })
        .collect();
    for row in &mut all {
        row.0 = names.rank(row.3.sensor);
    }
    // Ties on (rank, ts) mean the same sensor (ranks are unique per sensor);
    // the newest source sorts first and is kept.
    all.sort_unstable_by_key(|&(rank, ts, newest_first, _)| (rank, ts, newest_first));
    all.dedup_by_key(|&mut (rank, ts, _, _)| (rank, ts));
    all.into_iter().map(|(_, _, _, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_paths() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_name(day_of(1_764_979_200_000)), "2025-12-06");
        assert_eq!(
            ChunkMeta::relative_path(ChunkId(42), 20_428),
            "chunks/readings/day=2025-12-06/part-00000000000000000042.parquet"
        );
    }

    /// Ids are read as a dictionary and looked up once per batch: every
    /// row gets its own sensor back, and a file naming a sensor the
    /// catalog does not know is refused with its name.
    #[test]
    fn a_chunk_reads_back_row_for_row_and_unknown_sensors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cat = crate::test_util::catalog_with_sensors(dir.path(), 300);
        let names = SensorNames::from_catalog(&cat.view());
        let day = day_of(1_764_979_200_000);
        // More rows than a read batch, sensors interleaved as a file
        // sorts them (by name), values distinct per row.
        let mut rows: Vec<Reading> = (0..300u32)
            .flat_map(|s| {
                (0..300i64).map(move |q| Reading {
                    sensor: crate::ids::SensorKey(s),
                    ts_ms: day * DAY_MS + q * 60_000,
                    value_kwh: f64::from(s) + q as f64 / 1000.0,
                })
            })
            .collect();
        rows.sort_unstable_by_key(|r| (names.rank(r.sensor), r.ts_ms));
        let meta = write_chunk(dir.path(), ChunkId(1), 1, day, &rows, &names).unwrap();
        let path = dir.path().join(&meta.file);
        assert_eq!(read_chunk(&path, &names).unwrap(), rows);

        let other = tempfile::tempdir().unwrap();
        let fewer = crate::test_util::catalog_with_sensors(other.path(), 299);
        let err = read_chunk(&path, &SensorNames::from_catalog(&fewer.view())).unwrap_err();
        assert!(
            err.to_string().contains("\"s299\" is not in the catalog"),
            "{err}"
        );
    }
}
