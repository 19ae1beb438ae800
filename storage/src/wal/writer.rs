//! The write-ahead's single writer thread and its group commit.
//!
//! Request tasks encode their batch (CPU work, done in parallel) and send it
//! here with a reply channel. The thread blocks for the first request, then
//! takes every request already waiting, up to [`MAX_GROUP_BYTES`], and commits
//! them all in one redb transaction: one fsync for the whole group. Only
//! after the commit does it apply the readings to the active memtable, in
//! sequence order, and answer each request. While a commit is in flight new
//! requests queue up and form the next group, so the number of fsyncs per
//! second stays bounded by the disk while throughput grows with load.
//!
//! Freezing the active memtable (the first step of a flush) also happens on
//! this thread, between two groups, so the frozen memtable holds exactly the
//! records below the sequence number it reports.

use crate::sync::{Recover, RecoverRw};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use super::db::WalDb;
use super::{WAL_TABLE, WalSequence};
use crate::error::{Error, Result};
use crate::last_seen::LastSeen;
use crate::memtable::Memtable;
use crate::reading::Reading;
use crate::reading::day_of;
use crate::tiers::Tiers;
use crate::wal::marks::{DIRTY, Marks};

/// Upper bound on the encoded bytes committed in one transaction.
const MAX_GROUP_BYTES: usize = 64 << 20;

/// One batch on its way into the write-ahead.
pub(crate) struct AppendRequest {
    pub(crate) record: Vec<u8>,
    pub(crate) readings: Vec<Reading>,
    pub(crate) reply: oneshot::Sender<Result<WalSequence>>,
}

pub(crate) enum WriterMsg {
    Append(AppendRequest),
    /// Swap in a fresh active memtable; answers with the first sequence
    /// number *not* in the frozen one.
    Freeze(oneshot::Sender<WalSequence>),
}

pub(crate) struct WalWriter {
    pub(crate) wal: Arc<WalDb>,
    pub(crate) next_seq: WalSequence,
    pub(crate) tiers: Arc<RwLock<Tiers>>,
    pub(crate) marks: Arc<Marks>,
    pub(crate) last_seen: Arc<LastSeen>,
}

/// Why a group's commit failed, in a form every waiter can get a copy of.
enum CommitFailure {
    /// Known not to have landed: the disk was full.
    DiskFull,
    /// Known not to have landed: failed before the commit.
    Other(String),
    /// The commit itself failed (an fsync error): it may have landed. The
    /// write-ahead is poisoned and the daemon stops.
    Unknown,
}

impl CommitFailure {
    fn to_error(&self) -> Error {
        match self {
            CommitFailure::DiskFull => Error::StorageFull,
            CommitFailure::Other(msg) => Error::WalCommit(msg.clone()),
            CommitFailure::Unknown => Error::Stopped,
        }
    }
}

/// Publishes the write-ahead's file size.
pub(crate) fn record_wal_size(wal: &WalDb) {
    if let Ok(meta) = std::fs::metadata(wal.path()) {
        metrics::gauge!("wattline_wal_bytes").set(meta.len() as f64);
    }
}

impl WalWriter {
    /// Starts the writer thread; it ends once every sender is dropped and the
    /// queue is drained.
    pub(crate) fn spawn(self) -> Result<(Sender<WriterMsg>, JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || self.run(rx))
            .map_err(|e| Error::io("starting the write-ahead thread", e))?;
        Ok((tx, handle))
    }

    fn run(mut self, rx: Receiver<WriterMsg>) {
        let mut pending = rx.recv().ok();
        while let Some(msg) = pending.take() {
            match msg {
                WriterMsg::Freeze(reply) => self.freeze(reply),
                WriterMsg::Append(first) => {
                    let mut bytes = first.record.len();
                    let mut group = vec![first];
                    while bytes < MAX_GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(WriterMsg::Append(req)) => {
                                bytes += req.record.len();
                                group.push(req);
                            }
                            Ok(freeze) => {
                                pending = Some(freeze);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
            }
            if pending.is_none() {
                pending = rx.recv().ok();
            }
        }
    }

    fn freeze(&mut self, reply: oneshot::Sender<WalSequence>) {
        let mut tiers = self.tiers.write_locked();
        tiers.freeze_active(self.next_seq);
        let _ = reply.send(self.next_seq);
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let started = Instant::now();
        let marks = self.marks.clone();
        // Held until the batch is applied: see `rollup::marks`.
        let mut known = marks.known.locked();
        let mut new_marks: Vec<(i64, u32)> = Vec::new();
        for r in group.iter().flat_map(|r| r.readings.iter()) {
            let pair = (day_of(r.ts_ms), r.sensor.0);
            if new_marks.last() != Some(&pair) && !known.contains(&pair) {
                new_marks.push(pair);
            }
        }
        new_marks.sort_unstable();
        new_marks.dedup();
        match self.commit(&group, &new_marks) {
            Ok(first_seq) => {
                let active = self.tiers.read_locked().active();
                for req in &group {
                    active.apply(&req.readings);
                    self.last_seen.note(&req.readings);
                }
                known.extend(new_marks);
                self.marks.set_applied(self.next_seq);
                drop(known);
                metrics::histogram!("wattline_wal_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("wattline_wal_commits_total").increment(1);
                metrics::gauge!("wattline_hot_readings").set(active.len() as f64);
                record_wal_size(&self.wal);
                for (i, req) in group.into_iter().enumerate() {
                    // A requester that gave up (timeout, closed connection)
                    // no longer listens; its batch is durable all the same.
                    let _ = req.reply.send(Ok(first_seq.after(i as u64)));
                }
            }
            Err(failure) => {
                tracing::error!(error = %failure.to_error(), batches = group.len(), "write-ahead commit failed");
                metrics::counter!("wattline_wal_commit_failures_total").increment(1);
                for req in group {
                    let _ = req.reply.send(Err(failure.to_error()));
                }
                if !matches!(failure, CommitFailure::Unknown) {
                    self.wal.reset();
                }
            }
        }
    }

    /// Writes the group in one durable transaction; returns the first
    /// sequence number used.
    fn commit(
        &mut self,
        group: &[AppendRequest],
        new_marks: &[(i64, u32)],
    ) -> Result<WalSequence, CommitFailure> {
        let classify = |e: Error| match e {
            Error::StorageFull => CommitFailure::DiskFull,
            Error::Stopped => CommitFailure::Unknown,
            e => CommitFailure::Other(e.to_string()),
        };
        let db = self.wal.get().map_err(classify)?;
        let first_seq = self.next_seq;
        let write = || -> Result<redb::WriteTransaction> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(WAL_TABLE)?;
                for (i, req) in group.iter().enumerate() {
                    table.insert(first_seq.after(i as u64).0, req.record.as_slice())?;
                }
                let mut dirty = txn.open_table(DIRTY)?;
                for &pair in new_marks {
                    dirty.insert(pair, first_seq.0)?;
                }
            }
            Ok(txn)
        };
        let txn = write().map_err(classify)?;
        // A full disk refusing a page write fails before the commit record:
        // the commit did not land. Any other failure here, and a full disk
        // reported by an fsync (the guard under the file has then stopped
        // the write-ahead), may have come after it: the outcome is unknown.
        match txn.commit().map_err(Error::from) {
            Ok(()) => {}
            Err(Error::StorageFull) if self.wal.fatal().is_none() => {
                return Err(CommitFailure::DiskFull);
            }
            Err(e) => {
                self.wal.poison(format!("write-ahead commit: {e}"));
                return Err(CommitFailure::Unknown);
            }
        }
        self.next_seq = self.next_seq.after(group.len() as u64);
        Ok(first_seq)
    }
}

/// Replays every write-ahead record, in sequence order, into `mem`.
/// Returns the next free sequence number, batches and readings replayed.
pub(crate) fn replay(wal: &WalDb, mem: &Memtable) -> Result<(WalSequence, u64, u64)> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = wal.get()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(WAL_TABLE)?;
    let (mut next_seq, mut batches, mut readings) = (WalSequence(0), 0u64, 0u64);
    for entry in table.iter()? {
        let (seq, record) = entry?;
        let seq = seq.value();
        let decoded = super::codec::decode(record.value())
            .map_err(|reason| Error::WalCorrupt { seq, reason })?;
        mem.apply(&decoded);
        next_seq = WalSequence(seq).after(1);
        batches += 1;
        readings += decoded.len() as u64;
    }
    Ok((next_seq, batches, readings))
}
