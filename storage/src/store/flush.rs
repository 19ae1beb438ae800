//! Flush, compaction and retention: the steps that move readings from
//! memory to chunk files, merge a day's files, and drop old days. Each
//! step ends with one manifest commit (see [`crate::manifest`]); only a
//! change known not to have landed deletes the files it wrote.

use crate::sync::{Recover, RecoverRw};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::ReadingStore;
use crate::chunk::{
    ChunkFile, ChunkId, ChunkMeta, ChunkWriter, SensorNames, WRITE_ROWS, merge_files, spans_overlap,
};
use crate::error::{Error, Result};
use crate::ids::SensorKey;
use crate::manifest::{self, ManifestChange};
use crate::memtable::Memtable;
use crate::reading::{day_of, day_span};
use crate::wal::db::Compaction;
use crate::wal::writer::{WriterMsg, record_wal_size};

/// A write-ahead file smaller than this is left as it is.
const WAL_COMPACT_BYTES: u64 = 32 << 20;

/// Whether a write-ahead file of `file` bytes, of which its pages in use
/// take `live`, is worth compacting: large, and mostly free pages.
pub(crate) fn worth_compacting(file: u64, live: u64) -> bool {
    file >= WAL_COMPACT_BYTES && live <= file / 4
}

/// A day with this many files is compacted even if they do not overlap.
pub(crate) const MANY_FILES: usize = 8;

/// What one flush did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushReport {
    /// Readings written from memory to chunk files.
    pub readings: u64,
    pub chunks_written: usize,
}

impl ReadingStore {
    /// Writes everything in memory to chunk files and trims the
    /// write-ahead. Blocking.
    ///
    /// Memtables frozen by an earlier flush that failed are written first,
    /// before the active one is frozen: retries of a failing flush do not
    /// pile up frozen memtables.
    pub fn flush(&self) -> Result<FlushReport> {
        let mut next_id = self.maintenance.locked();
        let started = Instant::now();
        let names = SensorNames::from_catalog(&self.catalog.view());
        let mut report = FlushReport::default();
        let left_over = !self.tiers.read_locked().frozen.is_empty();
        if left_over {
            self.flush_frozen(&mut next_id, &names, &mut report)?;
        }
        let (reply, answer) = oneshot::channel();
        self.send(WriterMsg::Freeze(reply))?;
        answer.blocking_recv().map_err(|_| Error::WalClosed)?;
        self.flush_frozen(&mut next_id, &names, &mut report)?;
        metrics::histogram!("wattline_flush_seconds").record(started.elapsed().as_secs_f64());
        self.shrink_wal();
        record_wal_size(&self.wal);
        self.record_chunk_metrics();
        Ok(report)
    }

    /// Compacts the write-ahead once a flush has trimmed it, when it is
    /// worth it ([`worth_compacting`]): what it still holds is what arrived
    /// during the flush, so the file returns to about that size. A failure
    /// is logged; the file just stays large until the next try.
    fn shrink_wal(&self) {
        let started = Instant::now();
        let before = std::fs::metadata(self.wal.path()).map_or(0, |m| m.len());
        if before < WAL_COMPACT_BYTES {
            return;
        }
        match self.wal.compact(worth_compacting) {
            Ok(Compaction::Done) => {
                let after = std::fs::metadata(self.wal.path()).map_or(0, |m| m.len());
                metrics::counter!("wattline_wal_compactions_total").increment(1);
                tracing::info!(
                    before,
                    after,
                    seconds = started.elapsed().as_secs_f64(),
                    "compacted the write-ahead"
                );
            }
            Ok(Compaction::NotWorth) => {}
            Ok(Compaction::Busy) => {
                metrics::counter!("wattline_wal_compactions_skipped_total").increment(1);
            }
            Err(e) => tracing::warn!(error = %e, "compacting the write-ahead failed"),
        }
    }

    /// Writes the frozen memtables, oldest first, one manifest commit each.
    fn flush_frozen(
        &self,
        next_id: &mut ChunkId,
        names: &SensorNames,
        report: &mut FlushReport,
    ) -> Result<()> {
        loop {
            let Some((mem, wal_upto)) = self.tiers.read_locked().frozen.first().cloned() else {
                break;
            };
            let mut written = Vec::new();
            for (day, mut sensors) in mem.sensors_by_day() {
                // Chunk order (unknown sensors last, as `sort_by_rank`).
                sensors.sort_by_cached_key(|&s| (names.rank(s), s));
                let id = *next_id;
                *next_id = id.next();
                match write_memtable_day(&self.data_dir, &mem, &sensors, id, day, names) {
                    Ok(meta) => written.push(meta),
                    Err(e) => {
                        self.discard(&written);
                        return Err(e);
                    }
                }
            }
            self.commit_or_discard(
                &ManifestChange {
                    add: written.clone(),
                    remove: vec![],
                    trim_wal_below: Some(wal_upto),
                    next_chunk_id: *next_id,
                    raw_floor_ms: None,
                },
                &written,
            )?;
            report.readings += mem.len();
            report.chunks_written += written.len();
            let mut tiers = self.tiers.write_locked();
            tiers.frozen.remove(0);
            for meta in written {
                tiers
                    .chunks
                    .insert(meta.id, Arc::new(ChunkFile::new(&self.data_dir, meta)));
            }
        }
        Ok(())
    }

    /// Merges a day's files into one: with `all`, every day with two or
    /// more files (so each reading is in exactly one file afterwards);
    /// otherwise days whose files overlap in time (late data or
    /// corrections) or that have `MANY_FILES` (8) or more. Returns how many
    /// days were merged. Blocking.
    pub fn compact(&self, all: bool) -> Result<usize> {
        let mut next_id = self.maintenance.locked();
        let mut by_day: BTreeMap<i64, Vec<Arc<ChunkFile>>> = BTreeMap::new();
        for c in self.snapshot().chunks {
            by_day.entry(c.meta.day).or_default().push(c);
        }
        let names = SensorNames::from_catalog(&self.catalog.view());
        let mut merged_days = 0;
        let needed = |files: &[Arc<ChunkFile>]| {
            files.len() >= 2 && (all || files.len() >= MANY_FILES || spans_overlap(files))
        };
        // A day that fails is logged and skipped: it does not hold up the
        // others. The first error is returned once all were tried.
        let mut first_error = None;
        for (day, files) in by_day.into_iter().filter(|(_, f)| needed(f)) {
            match self.compact_day(&mut next_id, day, &files, &names) {
                Ok(()) => {
                    merged_days += 1;
                    metrics::counter!("wattline_compactions_total").increment(1);
                }
                Err(Error::Stopped) => return Err(Error::Stopped),
                Err(e) => {
                    metrics::counter!("wattline_compaction_failures_total").increment(1);
                    tracing::error!(day = %crate::chunk::day_name(day), error = %e, "compacting a day failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        self.record_chunk_metrics();
        match first_error {
            Some(e) => Err(e),
            None => Ok(merged_days),
        }
    }

    /// Merges one day's `files` into one file.
    fn compact_day(
        &self,
        next_id: &mut ChunkId,
        day: i64,
        files: &[Arc<ChunkFile>],
        names: &SensorNames,
    ) -> Result<()> {
        let precedence = files.iter().map(|f| f.meta.precedence).max().unwrap_or(0);
        let id = *next_id;
        *next_id = id.next();
        let paths: Vec<&std::path::Path> = files.iter().map(|f| f.path.as_path()).collect();
        let meta = merge_files(&self.data_dir, id, precedence, day, &paths, names)?;
        let change = ManifestChange {
            add: vec![meta.clone()],
            remove: files.iter().map(|f| f.meta.id).collect(),
            trim_wal_below: None,
            next_chunk_id: *next_id,
            raw_floor_ms: None,
        };
        self.commit_or_discard(&change, std::slice::from_ref(&meta))?;
        self.swap_chunks(files, Some(meta));
        Ok(())
    }

    /// Drops the chunk files of every UTC day that ends before `cutoff_ms`
    /// and frees their space. Returns how many files were dropped.
    /// Blocking.
    ///
    /// Whole days only: a day's files overlap (a correction in a newer
    /// file), and dropping one of them could bring an older value back.
    /// The raw floor becomes the start of the day holding the cutoff.
    pub fn drop_expired(&self, cutoff_ms: i64) -> Result<usize> {
        let next_id = self.maintenance.locked();
        let cut_day = day_of(cutoff_ms);
        let expired: Vec<_> = self
            .snapshot()
            .chunks
            .into_iter()
            .filter(|c| c.meta.day < cut_day)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let floor = cut_day * crate::chunk::DAY_MS;
        let change = ManifestChange {
            remove: expired.iter().map(|c| c.meta.id).collect(),
            next_chunk_id: *next_id,
            raw_floor_ms: Some(floor),
            ..ManifestChange::default()
        };
        self.commit_or_discard(&change, &[])?;
        self.raw_floor
            .fetch_max(floor, std::sync::atomic::Ordering::AcqRel);
        self.swap_chunks(&expired, None);
        self.record_chunk_metrics();
        Ok(expired.len())
    }

    /// Replaces `old` chunks by `new` in the tiers; old files are deleted
    /// once no reader holds them.
    fn swap_chunks(&self, old: &[Arc<ChunkFile>], new: Option<ChunkMeta>) {
        let mut tiers = self.tiers.write_locked();
        for f in old {
            tiers.chunks.remove(&f.meta.id);
            f.retire();
        }
        if let Some(meta) = new {
            tiers
                .chunks
                .insert(meta.id, Arc::new(ChunkFile::new(&self.data_dir, meta)));
        }
    }

    /// Commits a manifest change. [`CommitOutcome::NotCommitted`] is the
    /// only failure whose new files the caller may delete. A commit that
    /// failed in a way that may have come after it became durable (an
    /// fsync error) is [`CommitOutcome::Unknown`]: its files are kept, the
    /// write-ahead is poisoned, and the next start tells live files (named
    /// by the manifest on disk) from orphans.
    fn commit_change(&self, change: &ManifestChange) -> CommitOutcome {
        use manifest::CommitError;
        let db = match self.wal.get() {
            Ok(db) => db,
            Err(e) => return CommitOutcome::NotCommitted(e),
        };
        match manifest::commit(&db, change) {
            Ok(()) => CommitOutcome::Committed,
            Err(CommitError::Commit(Error::StorageFull)) if self.wal.fatal().is_none() => {
                self.wal.reset();
                CommitOutcome::NotCommitted(Error::StorageFull)
            }
            Err(CommitError::Before(e)) => {
                self.wal.reset();
                CommitOutcome::NotCommitted(e)
            }
            Err(CommitError::Commit(e)) => {
                self.wal.poison(format!("manifest commit: {e}"));
                CommitOutcome::Unknown
            }
        }
    }

    /// Commits `change`; deletes `written` (the files it adds) only when
    /// the change is known not to have landed.
    fn commit_or_discard(&self, change: &ManifestChange, written: &[ChunkMeta]) -> Result<()> {
        match self.commit_change(change) {
            CommitOutcome::Committed => Ok(()),
            CommitOutcome::NotCommitted(e) => {
                self.discard(written);
                Err(e)
            }
            CommitOutcome::Unknown => Err(Error::Stopped),
        }
    }

    /// Deletes files written by a step whose manifest commit failed.
    fn discard(&self, written: &[ChunkMeta]) {
        for meta in written {
            let _ = std::fs::remove_file(self.data_dir.join(&meta.file));
        }
    }
}

/// Writes `mem`'s readings of UTC `day` as chunk `id` (its own
/// precedence), taking `sensors` in their order (chunk order) and handing
/// the writer a row group at a time: the memory it takes is a row group,
/// not the day.
fn write_memtable_day(
    data_dir: &std::path::Path,
    mem: &Memtable,
    sensors: &[SensorKey],
    id: ChunkId,
    day: i64,
    names: &SensorNames,
) -> Result<ChunkMeta> {
    let span = day_span(day);
    let mut out = ChunkWriter::create(data_dir, id, day, names)?;
    let mut rows = Vec::with_capacity(WRITE_ROWS);
    for &sensor in sensors {
        let mut from = *span.start();
        loop {
            let room = WRITE_ROWS - rows.len();
            let more = mem.extend_series(sensor, from..=*span.end(), room, &mut rows);
            if rows.len() == WRITE_ROWS {
                out.write(&rows)?;
                rows.clear();
            }
            match more {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    out.write(&rows)?;
    out.finish(id.0)
}

/// How a manifest commit ended.
enum CommitOutcome {
    Committed,
    NotCommitted(Error),
    /// See [`ReadingStore::commit_change`].
    Unknown,
}
