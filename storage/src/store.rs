//! [`ReadingStore`]: the readings of the appliance, hot and cold.
//!
//! Tiers, newest first: the active memtable (filled by the write-ahead
//! writer), frozen memtables (waiting to be written as chunks), and chunk
//! files. Readers take a [`Snapshot`] of all three under one lock, so a
//! flush or compaction that swaps tiers never shows a reader a reading
//! twice or not at all.
//!
//! Maintenance ([`ReadingStore::flush`], [`ReadingStore::compact`],
//! [`ReadingStore::drop_expired`]) runs on the caller's (blocking) thread,
//! one step at a time under a maintenance lock; each step ends with one
//! small manifest commit. Ingestion is never blocked by it for longer than
//! that commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::catalog::Catalog;
use crate::chunk::{
    ChunkFile, ChunkMeta, SensorNames, day_of, merge_newest_wins, read_chunk, write_chunk,
};
use crate::error::{Error, Result};
use crate::manifest::{self, ManifestChange};
use crate::memtable::Memtable;
use crate::reading::{Reading, ReadingBatch, TimeRange};
use crate::rollup::Rollups;
use crate::rollup::marks::Marks;
use crate::tree::{Transfer, link_or_copy};
use crate::wal::db::WalDb;
use crate::wal::writer::{AppendRequest, WalWriter, WriterMsg, record_wal_size, replay};
use crate::wal::{WalSequence, codec};

/// A day with this many files is compacted even if they do not overlap.
pub(crate) const MANY_FILES: usize = 8;

/// Readings in memory (active and frozen memtables) past which new batches
/// are refused with [`Error::Overloaded`] until a flush succeeds: a flush
/// that keeps failing must not grow memory and the write-ahead without
/// bound. Twice the daemon's size trigger for a flush.
pub const MAX_HOT_READINGS: u64 = 20_000_000;

/// What recovery found.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub batches: u64,
    pub readings: u64,
    pub chunks: usize,
    pub removed_stray_files: usize,
    pub elapsed: Duration,
}

/// What one flush did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushReport {
    /// Readings written from memory to chunk files.
    pub readings: u64,
    pub chunks_written: usize,
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    pub chunks: usize,
    pub chunk_bytes: u64,
}

/// The tiers, as the writer and maintenance change them.
pub(crate) struct Tiers {
    active: Arc<Memtable>,
    /// Oldest first, each with the first write-ahead sequence number it
    /// does not hold.
    frozen: Vec<(Arc<Memtable>, u64)>,
    chunks: BTreeMap<u64, Arc<ChunkFile>>,
}

impl Tiers {
    pub(crate) fn active(&self) -> Arc<Memtable> {
        self.active.clone()
    }

    pub(crate) fn freeze_active(&mut self, wal_upto: u64) {
        let old = std::mem::take(&mut self.active);
        self.frozen.push((old, wal_upto));
    }
}

/// A consistent view of every tier.
#[derive(Clone)]
pub struct Snapshot {
    /// Chunk files, lowest precedence first.
    pub chunks: Vec<Arc<ChunkFile>>,
    /// Memtables, oldest first; all newer than every chunk.
    pub memtables: Vec<Arc<Memtable>>,
    /// Raw readings before this instant may have been dropped by retention.
    pub raw_floor_ms: i64,
}

impl Snapshot {
    /// Readings still in memory for sensors `wanted` accepts, in `range`,
    /// deduplicated (the newest memtable wins), in (sensor, ts) order.
    pub fn hot_readings(
        &self,
        wanted: impl Fn(crate::SensorKey) -> bool,
        range: TimeRange,
    ) -> Vec<Reading> {
        let mut sources: Vec<Vec<Reading>> = self
            .memtables
            .iter()
            .map(|m| m.readings(&wanted, range))
            .filter(|rows| !rows.is_empty())
            .collect();
        if sources.len() <= 1 {
            return sources.pop().unwrap_or_default();
        }
        let mut all: Vec<(usize, Reading)> = sources
            .into_iter()
            .enumerate()
            .flat_map(|(i, rows)| rows.into_iter().map(move |r| (usize::MAX - i, r)))
            .collect();
        all.sort_unstable_by_key(|(newest_first, r)| (r.sensor, r.ts_ms, *newest_first));
        all.dedup_by_key(|(_, r)| (r.sensor, r.ts_ms));
        all.into_iter().map(|(_, r)| r).collect()
    }

    /// Every reading of sensors `wanted` accepts in `range`, across chunk
    /// files and memory, deduplicated (newest wins), day by day.
    /// Reads the chunk files whose span overlaps `range`. Blocking.
    pub fn merged_readings(
        &self,
        wanted: &dyn Fn(crate::SensorKey) -> bool,
        range: TimeRange,
        names: &SensorNames,
    ) -> Result<Vec<Reading>> {
        // Days do not share readings: merge (and sort) only within a day
        // that has several sources, and concatenate the days.
        let mut by_day: BTreeMap<i64, Vec<Vec<Reading>>> = BTreeMap::new();
        for c in &self.chunks {
            if c.meta.max_ts_ms >= range.start_ms && c.meta.min_ts_ms < range.end_ms {
                let rows = read_chunk(&c.path, names)?;
                by_day.entry(c.meta.day).or_default().push(
                    rows.into_iter()
                        .filter(|r| wanted(r.sensor) && range.contains(r.ts_ms))
                        .collect(),
                );
            }
        }
        let mut hot: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
        for r in self.hot_readings(wanted, range) {
            hot.entry(day_of(r.ts_ms)).or_default().push(r);
        }
        for (day, rows) in hot {
            by_day.entry(day).or_default().push(rows);
        }
        let mut out = Vec::new();
        for (_, sources) in by_day {
            out.extend(merge_newest_wins(sources, names));
        }
        Ok(out)
    }

    /// Readings held in memory, across memtables (duplicates counted).
    pub fn hot_len(&self) -> u64 {
        self.memtables.iter().map(|m| m.len()).sum()
    }
}

pub struct ReadingStore {
    data_dir: PathBuf,
    catalog: Arc<Catalog>,
    wal: Arc<WalDb>,
    tiers: Arc<RwLock<Tiers>>,
    queue: Mutex<Option<Sender<WriterMsg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Serialises maintenance; holds the next chunk id.
    maintenance: Mutex<u64>,
    rollups: Rollups,
    /// See [`Snapshot::raw_floor_ms`].
    raw_floor: std::sync::atomic::AtomicI64,
}

impl ReadingStore {
    /// Opens the store in `data_dir`: loads the manifest, deletes stray
    /// chunk files, and replays the write-ahead into the active memtable.
    /// Blocking: run it off the async runtime.
    pub fn open(data_dir: &Path, catalog: Arc<Catalog>) -> Result<(Self, RecoveryReport)> {
        let wal = WalDb::open(&data_dir.join("wal.redb"))?;
        Self::open_with(data_dir, catalog, wal)
    }

    /// [`ReadingStore::open`] on a write-ahead opened by the caller.
    pub(crate) fn open_with(
        data_dir: &Path,
        catalog: Arc<Catalog>,
        wal: WalDb,
    ) -> Result<(Self, RecoveryReport)> {
        let started = Instant::now();
        let wal = Arc::new(wal);
        let (metas, next_chunk_id) = manifest::load(wal.get()?.as_ref())?;
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
        let removed_stray_files = remove_stray_files(data_dir, &metas)?;
        let active = Arc::new(Memtable::default());
        let (replayed_next, batches, readings) = replay(&wal, &active)?;
        let next_seq = replayed_next.max(manifest::next_wal_seq(wal.get()?.as_ref())?);
        let raw_floor = manifest::raw_floor_ms(wal.get()?.as_ref())?;
        let marks = Arc::new(Marks::default());
        marks.set_applied(next_seq);
        let rollups = Rollups::open(data_dir, catalog.clone(), wal.clone(), marks.clone())?;
        let report = RecoveryReport {
            batches,
            readings,
            chunks: chunks.len(),
            removed_stray_files,
            elapsed: started.elapsed(),
        };
        let tiers = Arc::new(RwLock::new(Tiers {
            active: active.clone(),
            frozen: Vec::new(),
            chunks,
        }));
        record_wal_size(&wal);
        metrics::gauge!("wattline_hot_readings").set(active.len() as f64);
        let (queue, handle) = WalWriter {
            wal: wal.clone(),
            next_seq,
            tiers: tiers.clone(),
            marks,
        }
        .spawn()?;
        let store = Self {
            data_dir: data_dir.to_owned(),
            catalog,
            wal,
            tiers,
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(handle)),
            maintenance: Mutex::new(next_chunk_id),
            rollups,
            raw_floor: std::sync::atomic::AtomicI64::new(raw_floor),
        };
        store.record_chunk_metrics();
        Ok((store, report))
    }

    /// Why the store stopped for good (a commit of unknown outcome), if it
    /// has: the daemon then reports not ready and exits, and the next start
    /// recovers from what is durable.
    pub fn fatal(&self) -> Option<&str> {
        self.wal.fatal()
    }

    /// Stores `batch` durably. When this returns `Ok`, the batch survives a
    /// crash or power loss and readers see it.
    pub async fn append(&self, batch: ReadingBatch) -> Result<WalSequence> {
        if self.wal.fatal().is_some() {
            return Err(Error::Stopped);
        }
        let hot = self.hot_len_total();
        if hot >= MAX_HOT_READINGS {
            metrics::counter!("wattline_ingest_backpressure_total").increment(1);
            return Err(Error::Overloaded(format!(
                "{hot} readings wait in memory for a flush to chunk files (the most allowed is \
                 {MAX_HOT_READINGS}); check the log for why flushing fails"
            )));
        }
        let record = codec::encode(&batch.readings);
        let (reply, answer) = oneshot::channel();
        self.send(WriterMsg::Append(AppendRequest {
            record,
            readings: batch.readings,
            reply,
        }))?;
        answer.await.map_err(|_| Error::WalClosed)?
    }

    fn send(&self, msg: WriterMsg) -> Result<()> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let queue = queue.as_ref().ok_or(Error::WalClosed)?;
        queue.send(msg).map_err(|_| Error::WalClosed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let tiers = self.tiers.read().unwrap_or_else(|e| e.into_inner());
        let mut chunks: Vec<_> = tiers.chunks.values().cloned().collect();
        chunks.sort_by_key(|c| c.meta.precedence);
        let mut memtables: Vec<_> = tiers.frozen.iter().map(|(m, _)| m.clone()).collect();
        memtables.push(tiers.active.clone());
        Snapshot {
            chunks,
            memtables,
            raw_floor_ms: self.raw_floor.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Readings in every memtable, active and frozen.
    pub fn hot_len_total(&self) -> u64 {
        let tiers = self.tiers.read().unwrap_or_else(|e| e.into_inner());
        tiers.active.len() + tiers.frozen.iter().map(|(m, _)| m.len()).sum::<u64>()
    }

    /// Readings in the active memtable (the trigger for a size-based flush).
    pub fn active_len(&self) -> u64 {
        self.tiers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .active
            .len()
    }

    /// Writes everything in memory to chunk files and trims the
    /// write-ahead. Blocking.
    ///
    /// Memtables frozen by an earlier flush that failed are written first,
    /// before the active one is frozen: retries of a failing flush do not
    /// pile up frozen memtables.
    pub fn flush(&self) -> Result<FlushReport> {
        let mut next_id = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let names = SensorNames::from_catalog(&self.catalog.view());
        let mut report = FlushReport::default();
        let left_over = !self
            .tiers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .frozen
            .is_empty();
        if left_over {
            self.flush_frozen(&mut next_id, &names, &mut report)?;
        }
        let (reply, answer) = oneshot::channel();
        self.send(WriterMsg::Freeze(reply))?;
        answer.blocking_recv().map_err(|_| Error::WalClosed)?;
        self.flush_frozen(&mut next_id, &names, &mut report)?;
        metrics::histogram!("wattline_flush_seconds").record(started.elapsed().as_secs_f64());
        record_wal_size(&self.wal);
        self.record_chunk_metrics();
        Ok(report)
    }

    /// Writes the frozen memtables, oldest first, one manifest commit each.
    fn flush_frozen(
        &self,
        next_id: &mut u64,
        names: &SensorNames,
        report: &mut FlushReport,
    ) -> Result<()> {
        loop {
            let Some((mem, wal_upto)) = self
                .tiers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .frozen
                .first()
                .cloned()
            else {
                break;
            };
            let mut by_day: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
            for r in mem.readings(|_| true, TimeRange::ALL) {
                by_day.entry(day_of(r.ts_ms)).or_default().push(r);
            }
            let mut written = Vec::new();
            for (day, mut rows) in by_day {
                rows.sort_unstable_by_key(|r| (names.rank(r.sensor), r.ts_ms));
                let id = *next_id;
                *next_id += 1;
                match write_chunk(&self.data_dir, id, id, day, &rows, names) {
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
            let mut tiers = self.tiers.write().unwrap_or_else(|e| e.into_inner());
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
    /// corrections) or that have [`MANY_FILES`] or more. Returns how many
    /// days were merged. Blocking.
    pub fn compact(&self, all: bool) -> Result<usize> {
        let mut next_id = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_day: BTreeMap<i64, Vec<Arc<ChunkFile>>> = BTreeMap::new();
        for c in self.snapshot().chunks {
            by_day.entry(c.meta.day).or_default().push(c);
        }
        let names = SensorNames::from_catalog(&self.catalog.view());
        let mut merged_days = 0;
        let needed = |files: &[Arc<ChunkFile>]| {
            let mut spans: Vec<(i64, i64)> = files
                .iter()
                .map(|f| (f.meta.min_ts_ms, f.meta.max_ts_ms))
                .collect();
            spans.sort_unstable();
            files.len() >= 2
                && (all || files.len() >= MANY_FILES || spans.windows(2).any(|w| w[1].0 <= w[0].1))
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
        next_id: &mut u64,
        day: i64,
        files: &[Arc<ChunkFile>],
        names: &SensorNames,
    ) -> Result<()> {
        let sources = files
            .iter()
            .map(|f| read_chunk(&f.path, names))
            .collect::<Result<Vec<_>>>()?;
        let rows = merge_newest_wins(sources, names);
        let precedence = files.iter().map(|f| f.meta.precedence).max().unwrap_or(0);
        let id = *next_id;
        *next_id += 1;
        let meta = write_chunk(&self.data_dir, id, precedence, day, &rows, names)?;
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
        let next_id = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Writes a consistent copy of the whole data directory (catalog,
    /// write-ahead, manifest and the chunk files it names) into `dir`, which
    /// must not exist or be empty; `serve` can open it. Maintenance waits
    /// meanwhile, ingestion does not: the copy is the state as of its first
    /// step. Blocking.
    pub fn backup(&self, dir: &Path) -> Result<BackupReport> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Replaces `old` chunks by `new` in the tiers; old files are deleted
    /// once no reader holds them.
    fn swap_chunks(&self, old: &[Arc<ChunkFile>], new: Option<ChunkMeta>) {
        let mut tiers = self.tiers.write().unwrap_or_else(|e| e.into_inner());
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
            Err(CommitError::Before(e) | CommitError::Commit(e @ Error::StorageFull)) => {
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

    fn record_chunk_metrics(&self) {
        let tiers = self.tiers.read().unwrap_or_else(|e| e.into_inner());
        metrics::gauge!("wattline_chunks").set(tiers.chunks.len() as f64);
        let bytes: u64 = tiers.chunks.values().map(|c| c.meta.bytes).sum();
        metrics::gauge!("wattline_chunk_bytes").set(bytes as f64);
        let rows: u64 = tiers.chunks.values().map(|c| c.meta.rows).sum();
        metrics::gauge!("wattline_chunk_readings").set(rows as f64);
    }

    pub fn rollups(&self) -> &Rollups {
        &self.rollups
    }

    /// Brings the rollups up to date with every reading stored so far.
    /// Blocking.
    pub fn catch_up_rollups(&self) -> Result<usize> {
        self.rollups.catch_up(|| self.snapshot())
    }

    /// Rebuilds a building's rollups after its time zone changed, unless
    /// it was rebuilt within the last minute (the rollup worker then does
    /// it later; see [`crate::rollup`]). Returns whether it rebuilt now.
    /// Blocking.
    pub fn rebuild_building_rollups(&self, building: &str) -> Result<bool> {
        if !self.rollups.rebuild_building(building, &self.snapshot())? {
            return Ok(false);
        }
        self.catch_up_rollups()?;
        Ok(true)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Stops accepting batches, lets the writer commit what is queued and
    /// waits for it. Blocking.
    pub fn close(&self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for ReadingStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// How a manifest commit ended.
enum CommitOutcome {
    Committed,
    NotCommitted(Error),
    /// See [`ReadingStore::commit_change`].
    Unknown,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SensorKey;

    const T0: i64 = 1_764_979_200_000; // 2025-12-06T00:00:00Z
    const QUARTER: i64 = 900_000;

    fn catalog(dir: &Path, sensors: u32) -> Arc<Catalog> {
        crate::test_util::catalog_with_sensors(dir, sensors)
    }

    fn batch(values: &[(u32, i64, f64)]) -> ReadingBatch {
        ReadingBatch {
            readings: values
                .iter()
                .map(|&(s, t, v)| Reading {
                    sensor: SensorKey(s),
                    ts_ms: t,
                    value_kwh: v,
                })
                .collect(),
        }
    }

    /// Everything a reader sees: cold then hot, newest wins, as the query
    /// layer merges it.
    fn visible(store: &ReadingStore) -> Vec<(u32, i64, f64)> {
        let snap = store.snapshot();
        let names = SensorNames::from_catalog(&store.catalog.view());
        let mut sources: Vec<Vec<Reading>> = snap
            .chunks
            .iter()
            .map(|c| read_chunk(&c.path, &names).unwrap())
            .collect();
        sources.push(snap.hot_readings(|_| true, TimeRange::ALL));
        merge_newest_wins(sources, &names)
            .into_iter()
            .map(|r| (r.sensor.0, r.ts_ms, r.value_kwh))
            .collect()
    }

    fn open(dir: &Path, cat: &Arc<Catalog>) -> ReadingStore {
        ReadingStore::open(dir, cat.clone()).unwrap().0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_batches_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 2);
        {
            let store = open(dir.path(), &cat);
            let a = store
                .append(batch(&[(1, T0, 1.0), (1, T0 + QUARTER, 2.0)]))
                .await
                .unwrap();
            let b = store.append(batch(&[(1, T0, 3.0)])).await.unwrap();
            assert!(b > a);
            assert_eq!(visible(&store), vec![(1, T0, 3.0), (1, T0 + QUARTER, 2.0)]);
        }
        let (store, report) = ReadingStore::open(dir.path(), cat.clone()).unwrap();
        assert_eq!((report.batches, report.readings), (2, 3));
        assert_eq!(visible(&store), vec![(1, T0, 3.0), (1, T0 + QUARTER, 2.0)]);
        let c = store.append(batch(&[(0, T0, 1.0)])).await.unwrap();
        assert_eq!(c, WalSequence(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 64);
        let store = Arc::new(open(dir.path(), &cat));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append(batch(&[(i, T0, f64::from(i)), (i, T0 + 1, 1.0)]))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(visible(&store).len(), 128);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_moves_memory_to_chunks_and_trims_the_write_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 3);
        let store = open(dir.path(), &cat);
        // Two UTC days, three sensors, out of order.
        store
            .append(batch(&[
                (2, T0 + 86_400_000, 5.0),
                (0, T0, 1.0),
                (1, T0, 2.0),
            ]))
            .await
            .unwrap();
        let before = visible(&store);
        let report = tokio::task::block_in_place(|| store.flush()).unwrap();
        assert_eq!(
            report,
            FlushReport {
                readings: 3,
                chunks_written: 2
            }
        );
        assert_eq!(visible(&store), before);
        assert_eq!(store.snapshot().hot_len(), 0);
        let files: Vec<_> = store
            .snapshot()
            .chunks
            .iter()
            .map(|c| c.meta.file.clone())
            .collect();
        assert!(
            files[0].starts_with("chunks/readings/day=2025-12-06/part-"),
            "{files:?}"
        );
        assert!(
            files[1].starts_with("chunks/readings/day=2025-12-07/part-"),
            "{files:?}"
        );
        drop(store);
        let (store, report) = ReadingStore::open(dir.path(), cat.clone()).unwrap();
        assert_eq!((report.batches, report.chunks), (0, 2));
        assert_eq!(visible(&store), before);
        // Sequence numbers are never reused, even with the write-ahead
        // empty at start.
        let next = store.append(batch(&[(0, T0 + 5, 1.0)])).await.unwrap();
        assert_eq!(next, WalSequence(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrections_across_tiers_resolve_newest_first_and_compaction_keeps_that() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 2);
        let store = open(dir.path(), &cat);
        store
            .append(batch(&[(0, T0, 1.0), (1, T0, 1.0)]))
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store
            .append(batch(&[(0, T0, 2.0), (0, T0 + QUARTER, 7.0)]))
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.append(batch(&[(0, T0, 3.0)])).await.unwrap();
        let want = vec![(0, T0, 3.0), (0, T0 + QUARTER, 7.0), (1, T0, 1.0)];
        assert_eq!(visible(&store), want);
        assert_eq!(store.snapshot().chunks.len(), 2);
        let old: Vec<PathBuf> = store
            .snapshot()
            .chunks
            .iter()
            .map(|c| c.path.clone())
            .collect();

        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert_eq!(
            tokio::task::block_in_place(|| store.compact(true)).unwrap(),
            1
        );
        let snap = store.snapshot();
        assert_eq!(snap.chunks.len(), 1);
        assert_eq!(snap.chunks[0].meta.rows, 3);
        drop(snap);
        assert!(old.iter().all(|p| !p.exists()), "merged files are deleted");
        assert_eq!(visible(&store), want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retired_file_stays_readable_while_a_snapshot_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 1);
        let store = open(dir.path(), &cat);
        store.append(batch(&[(0, T0, 1.0)])).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.append(batch(&[(0, T0 + 1, 1.0)])).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        let held = store.snapshot();
        tokio::task::block_in_place(|| store.compact(true)).unwrap();
        assert!(held.chunks.iter().all(|c| c.path.exists()));
        // The replaced files left the readings folder at once.
        let day = dir.path().join("chunks/readings/day=2025-12-06");
        assert_eq!(std::fs::read_dir(&day).unwrap().count(), 1);
        let paths: Vec<_> = held.chunks.iter().map(|c| c.path.clone()).collect();
        drop(held);
        assert!(paths.iter().all(|p| !p.exists()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stray_and_temporary_files_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 1);
        {
            let store = open(dir.path(), &cat);
            store.append(batch(&[(0, T0, 1.0)])).await.unwrap();
            tokio::task::block_in_place(|| store.flush()).unwrap();
        }
        let day = dir.path().join("chunks/readings/day=2025-12-06");
        std::fs::write(day.join(".tmp-00000000000000000099.parquet"), b"half").unwrap();
        std::fs::write(day.join("part-00000000000000000098.parquet"), b"orphan").unwrap();
        let (store, report) = ReadingStore::open(dir.path(), cat.clone()).unwrap();
        assert_eq!(report.removed_stray_files, 2);
        assert_eq!(visible(&store), vec![(0, T0, 1.0)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_drops_whole_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 1);
        let store = open(dir.path(), &cat);
        store
            .append(batch(&[(0, T0, 1.0), (0, T0 + 86_400_000, 2.0)]))
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        let old = store.snapshot().chunks[0].path.clone();
        let dropped = tokio::task::block_in_place(|| store.drop_expired(T0 + 86_400_000)).unwrap();
        assert_eq!(dropped, 1);
        assert!(!old.exists());
        assert_eq!(visible(&store), vec![(0, T0 + 86_400_000, 2.0)]);
    }

    /// Issue 7, finding 15: a day with an old file and a newer correction
    /// file, the retention cutoff inside the day. Dropping files by their
    /// own span dropped the correction (all of it before the cutoff) and
    /// kept the old file, whose stale value came back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_never_brings_back_a_corrected_value() {
        let dir = tempfile::tempdir().unwrap();
        let cat = catalog(dir.path(), 1);
        let store = open(dir.path(), &cat);
        let evening = T0 + 20 * 3_600_000;
        store
            .append(batch(&[(0, T0, 1.0), (0, evening, 5.0)]))
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        store.append(batch(&[(0, T0, 9.0)])).await.unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
        assert_eq!(store.snapshot().chunks.len(), 2);
        // The cutoff falls between the correction and the evening reading.
        let cutoff = T0 + 12 * 3_600_000;
        let dropped = tokio::task::block_in_place(|| store.drop_expired(cutoff)).unwrap();
        assert_eq!(dropped, 0, "the day holding the cutoff is kept whole");
        assert_eq!(visible(&store), vec![(0, T0, 9.0), (0, evening, 5.0)]);
        assert_eq!(store.snapshot().raw_floor_ms, i64::MIN);
        // Once the whole day is past the cutoff, it goes as a whole, and
        // the raw floor is the start of the cutoff's day.
        let next_day = T0 + 86_400_000;
        let dropped =
            tokio::task::block_in_place(|| store.drop_expired(next_day + 3_600_000)).unwrap();
        assert_eq!(dropped, 2);
        assert!(visible(&store).is_empty());
        assert_eq!(store.snapshot().raw_floor_ms, next_day);
    }
}
