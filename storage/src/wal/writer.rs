//! The write-ahead's single writer thread and its group commit.
//!
//! Request tasks encode their batch (CPU work, done in parallel) and send it
//! here with a reply channel. The thread blocks for the first request, then
//! takes every request already waiting, up to [`MAX_GROUP_BYTES`], and commits
//! them all in one redb transaction: one fsync for the whole group. Only
//! after the commit does it apply the readings to the hot buffer, in
//! sequence order, and answer each request. While a commit is in flight new
//! requests queue up and form the next group, so the number of fsyncs per
//! second stays bounded by the disk while throughput grows with load.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::Database;
use tokio::sync::oneshot;

use super::{WAL_TABLE, WalSequence};
use crate::error::{Error, Result};
use crate::hot::HotBuffer;
use crate::reading::Reading;

/// Upper bound on the encoded bytes committed in one transaction.
const MAX_GROUP_BYTES: usize = 64 << 20;

/// One batch on its way into the write-ahead.
pub(crate) struct AppendRequest {
    pub(crate) record: Vec<u8>,
    pub(crate) readings: Vec<Reading>,
    pub(crate) reply: oneshot::Sender<Result<WalSequence>>,
}

pub(crate) struct WalWriter {
    pub(crate) db: Option<Database>,
    pub(crate) path: PathBuf,
    pub(crate) next_seq: u64,
    pub(crate) hot: Arc<HotBuffer>,
}

/// Why a group's commit failed, in a form every waiter can get a copy of.
enum CommitFailure {
    DiskFull,
    Other(String),
}

impl CommitFailure {
    fn to_error(&self) -> Error {
        match self {
            CommitFailure::DiskFull => Error::StorageFull,
            CommitFailure::Other(msg) => Error::WalCommit(msg.clone()),
        }
    }
}

/// Publishes the write-ahead's file size and the hot buffer's size.
pub(crate) fn record_sizes(path: &std::path::Path, hot: &HotBuffer) {
    metrics::gauge!("wattline_hot_readings").set(hot.len() as f64);
    if let Ok(meta) = std::fs::metadata(path) {
        metrics::gauge!("wattline_wal_bytes").set(meta.len() as f64);
    }
}

impl WalWriter {
    /// Starts the writer thread; it ends once every sender is dropped and the
    /// queue is drained.
    pub(crate) fn spawn(self) -> Result<(Sender<AppendRequest>, JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || self.run(rx))
            .map_err(|e| Error::io("starting the write-ahead thread", e))?;
        Ok((tx, handle))
    }

    fn run(mut self, rx: Receiver<AppendRequest>) {
        while let Ok(first) = rx.recv() {
            let mut bytes = first.record.len();
            let mut group = vec![first];
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.record.len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let started = Instant::now();
        match self.commit(&group) {
            Ok(first_seq) => {
                for req in &group {
                    self.hot.apply(&req.readings);
                }
                metrics::histogram!("wattline_wal_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("wattline_wal_commits_total").increment(1);
                record_sizes(&self.path, &self.hot);
                for (i, req) in group.into_iter().enumerate() {
                    // A requester that gave up (timeout, closed connection)
                    // no longer listens; its batch is durable all the same.
                    let _ = req.reply.send(Ok(WalSequence(first_seq + i as u64)));
                }
            }
            Err(failure) => {
                tracing::error!(error = %failure.to_error(), batches = group.len(), "write-ahead commit failed");
                metrics::counter!("wattline_wal_commit_failures_total").increment(1);
                for req in group {
                    let _ = req.reply.send(Err(failure.to_error()));
                }
                // After an I/O error redb refuses further writes on this
                // handle; reopening re-runs its recovery from the last commit.
                self.db = None;
            }
        }
    }

    /// Writes the group in one durable transaction; returns the first
    /// sequence number used.
    fn commit(&mut self, group: &[AppendRequest]) -> Result<u64, CommitFailure> {
        let classify = |e: Error| match e {
            Error::StorageFull => CommitFailure::DiskFull,
            e => CommitFailure::Other(e.to_string()),
        };
        if self.db.is_none() {
            let db = Database::create(&self.path)
                .map_err(|e| classify(Error::open(self.path.clone(), e)))?;
            self.db = Some(db);
        }
        let db = self.db.as_ref().expect("opened above");
        let first_seq = self.next_seq;
        let write = || -> Result<()> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(WAL_TABLE)?;
                for (i, req) in group.iter().enumerate() {
                    table.insert(first_seq + i as u64, req.record.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        write().map_err(classify)?;
        self.next_seq += group.len() as u64;
        Ok(first_seq)
    }
}
