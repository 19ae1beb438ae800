//! [`ReadingStore`]: the write path for readings and the owner of the hot
//! buffer.
//!
//! Opening the store replays the write-ahead into the hot buffer (recovery);
//! [`ReadingStore::append`] returns only once the batch is durable and
//! visible to readers.

use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::hot::HotBuffer;
use crate::reading::ReadingBatch;
use crate::wal::writer::{AppendRequest, WalWriter, record_sizes};
use crate::wal::{WAL_TABLE, WalSequence, codec};

/// What recovery found in the write-ahead.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub batches: u64,
    pub readings: u64,
    pub elapsed: Duration,
}

pub struct ReadingStore {
    hot: Arc<HotBuffer>,
    queue: Mutex<Option<Sender<AppendRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl ReadingStore {
    /// Opens (or creates) `<data_dir>/wal.redb` and replays it into a fresh
    /// hot buffer. Blocking: run it off the async runtime.
    pub fn open(data_dir: &Path) -> Result<(Self, RecoveryReport)> {
        let started = Instant::now();
        let path = data_dir.join("wal.redb");
        let db = Database::create(&path).map_err(|e| Error::open(path.clone(), e))?;
        let hot = Arc::new(HotBuffer::default());
        let (next_seq, batches, readings) = replay(&db, &hot)?;
        let report = RecoveryReport {
            batches,
            readings,
            elapsed: started.elapsed(),
        };
        record_sizes(&path, &hot);
        let writer = WalWriter {
            db: Some(db),
            path,
            next_seq,
            hot: hot.clone(),
        };
        let (queue, handle) = writer.spawn()?;
        Ok((
            Self {
                hot,
                queue: Mutex::new(Some(queue)),
                writer: Mutex::new(Some(handle)),
            },
            report,
        ))
    }

    /// Stores `batch` durably. When this returns `Ok`, the batch survives a
    /// crash or power loss and readers see it.
    pub async fn append(&self, batch: ReadingBatch) -> Result<WalSequence> {
        let record = codec::encode(&batch.readings);
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            record,
            readings: batch.readings,
            reply,
        };
        {
            let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let queue = queue.as_ref().ok_or(Error::WalClosed)?;
            queue.send(request).map_err(|_| Error::WalClosed)?;
        }
        answer.await.map_err(|_| Error::WalClosed)?
    }

    pub fn hot(&self) -> &HotBuffer {
        &self.hot
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

/// Applies every write-ahead record, in sequence order, to `hot`. Returns
/// the next free sequence number and what was replayed.
fn replay(db: &Database, hot: &HotBuffer) -> Result<(u64, u64, u64)> {
    // Make sure the table exists, so that a fresh directory reads as empty.
    let txn = db.begin_write()?;
    txn.open_table(WAL_TABLE)?;
    txn.commit()?;

    let txn = db.begin_read()?;
    let table = txn.open_table(WAL_TABLE)?;
    let (mut next_seq, mut batches, mut readings) = (0u64, 0u64, 0u64);
    for entry in table.iter()? {
        let (seq, record) = entry?;
        let seq = seq.value();
        let decoded =
            codec::decode(record.value()).map_err(|reason| Error::WalCorrupt { seq, reason })?;
        hot.apply(&decoded);
        next_seq = seq + 1;
        batches += 1;
        readings += decoded.len() as u64;
    }
    Ok((next_seq, batches, readings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SensorKey;
    use crate::reading::{Reading, TimeRange};

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_batches_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, report) = ReadingStore::open(dir.path()).unwrap();
            assert_eq!(report.batches, 0);
            let a = store
                .append(batch(&[(1, 0, 1.0), (1, 900, 2.0)]))
                .await
                .unwrap();
            let b = store.append(batch(&[(1, 0, 3.0)])).await.unwrap();
            assert!(b > a);
            let seen = store.hot().range(SensorKey(1), TimeRange::ALL, 10);
            assert_eq!(seen.points, vec![(0, 3.0), (900, 2.0)]);
        }
        let (store, report) = ReadingStore::open(dir.path()).unwrap();
        assert_eq!((report.batches, report.readings), (2, 3));
        let seen = store.hot().range(SensorKey(1), TimeRange::ALL, 10);
        assert_eq!(seen.points, vec![(0, 3.0), (900, 2.0)]);
        let c = store.append(batch(&[(2, 5, 1.0)])).await.unwrap();
        assert_eq!(c, WalSequence(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = ReadingStore::open(dir.path()).unwrap();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append(batch(&[(i, 0, f64::from(i)), (i, 1, 1.0)]))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(store.hot().len(), 128);
    }
}
