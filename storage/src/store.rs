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

mod backup;
mod flush;
mod recovery;
#[cfg(test)]
mod tests;

pub use backup::BackupReport;
pub use flush::FlushReport;
pub use recovery::RecoveryReport;

use crate::sync::{Recover, RecoverRw};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::catalog::Catalog;
use crate::chunk::ChunkId;
use crate::error::{Error, Result};
use crate::last_seen::LastSeen;
use crate::manifest::{self};
use crate::memtable::Memtable;
use crate::reading::ReadingBatch;
use crate::rollup::Rollups;
use crate::tiers::{Snapshot, Tiers};
use crate::wal::db::WalDb;
use crate::wal::marks::Marks;
use crate::wal::writer::{AppendRequest, WalWriter, WriterMsg, record_wal_size, replay};
use crate::wal::{WalSequence, codec};

/// Readings in memory (active and frozen memtables) past which new batches
/// are refused with [`Error::Overloaded`] until a flush succeeds: a flush
/// that keeps failing must not grow memory and the write-ahead without
/// bound. Twice the daemon's size trigger for a flush.
pub const MAX_HOT_READINGS: u64 = 20_000_000;

pub struct ReadingStore {
    data_dir: PathBuf,
    catalog: Arc<Catalog>,
    wal: Arc<WalDb>,
    tiers: Arc<RwLock<Tiers>>,
    queue: Mutex<Option<Sender<WriterMsg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Serialises maintenance; holds the next chunk id.
    maintenance: Mutex<ChunkId>,
    rollups: Rollups,
    last_seen: Arc<LastSeen>,
    /// See [`Snapshot::raw_floor_ms`].
    raw_floor: std::sync::atomic::AtomicI64,
    /// [`MAX_HOT_READINGS`]; tests lower it.
    hot_limit: std::sync::atomic::AtomicU64,
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
        let (chunks, removed_stray_files) = recovery::recover_chunks(data_dir, &metas)?;
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
        let last_seen = Arc::new(LastSeen::default());
        let (queue, handle) = WalWriter {
            wal: wal.clone(),
            next_seq,
            tiers: tiers.clone(),
            marks,
            last_seen: last_seen.clone(),
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
            last_seen,
            raw_floor: std::sync::atomic::AtomicI64::new(raw_floor),
            hot_limit: std::sync::atomic::AtomicU64::new(MAX_HOT_READINGS),
        };
        store.record_chunk_metrics();
        let newest = store.rollups.rebuild_quarters(&store.snapshot())?;
        store.last_seen.merge(newest);
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
        let limit = self.hot_limit.load(std::sync::atomic::Ordering::Relaxed);
        if hot >= limit {
            metrics::counter!("wattline_ingest_backpressure_total").increment(1);
            return Err(Error::Overloaded(format!(
                "{hot} readings wait in memory for a flush to chunk files (the most allowed is \
                 {limit}); check the log for why flushing fails"
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
        let queue = self.queue.locked();
        let queue = queue.as_ref().ok_or(Error::WalClosed)?;
        queue.send(msg).map_err(|_| Error::WalClosed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let tiers = self.tiers.read_locked();
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
        let tiers = self.tiers.read_locked();
        tiers.active.len() + tiers.frozen.iter().map(|(m, _)| m.len()).sum::<u64>()
    }

    /// Readings in the active memtable (the trigger for a size-based flush).
    pub fn active_len(&self) -> u64 {
        self.tiers.read_locked().active.len()
    }

    fn record_chunk_metrics(&self) {
        let tiers = self.tiers.read_locked();
        metrics::gauge!("wattline_chunks").set(tiers.chunks.len() as f64);
        let bytes: u64 = tiers.chunks.values().map(|c| c.meta.bytes).sum();
        metrics::gauge!("wattline_chunk_bytes").set(bytes as f64);
        let rows: u64 = tiers.chunks.values().map(|c| c.meta.rows).sum();
        metrics::gauge!("wattline_chunk_readings").set(rows as f64);
    }

    pub fn rollups(&self) -> &Rollups {
        &self.rollups
    }

    /// The newest reading time of each sensor.
    pub fn last_seen(&self) -> &LastSeen {
        &self.last_seen
    }

    /// Brings the rollups up to date with every reading stored so far.
    /// Blocking.
    pub fn catch_up_rollups(&self) -> Result<usize> {
        self.rollups.catch_up(|| self.snapshot())
    }

    /// Rebuilds a building's rollups after its time zone changed, unless
    /// it was rebuilt within the last minute (the rollup worker then does
    /// it later; see the rollups' zone ledger). Returns whether it rebuilt now.
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
        drop(self.queue.locked().take());
        if let Some(handle) = self.writer.locked().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for ReadingStore {
    fn drop(&mut self) {
        self.close();
    }
}
