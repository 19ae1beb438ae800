//! Tests of the reading store: tiers, flush, compaction, retention,
//! recovery and backup.

use super::*;
use crate::chunk::{SensorNames, merge_newest_wins, read_chunk};
use crate::reading::{Reading, TimeRange};
use crate::test_util::batch;
use crate::wal::db::Compaction;

const T0: i64 = 1_764_979_200_000; // 2025-12-06T00:00:00Z
const QUARTER: i64 = 900_000;

fn catalog(dir: &Path, sensors: u32) -> Arc<Catalog> {
    crate::test_util::catalog_with_sensors(dir, sensors)
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
    let dropped = tokio::task::block_in_place(|| store.drop_expired(next_day + 3_600_000)).unwrap();
    assert_eq!(dropped, 2);
    assert!(visible(&store).is_empty());
    assert_eq!(store.snapshot().raw_floor_ms, next_day);
}

/// Issue 7, finding 13: a flush that keeps failing keeps one frozen
/// memtable (retries do not pile up more), ingestion is refused with
/// `Overloaded` once too much waits in memory, and both recover when the
/// flush succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flush_neither_piles_up_memtables_nor_grows_memory_without_bound() {
    use crate::faults::{FailPoint, arm};
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path(), 1);
    let store = open(dir.path(), &cat);
    store
        .hot_limit
        .store(100, std::sync::atomic::Ordering::Relaxed);
    let rows = |n: i64| -> Vec<(u32, i64, f64)> {
        (0..40)
            .map(|i| (0, T0 + (n * 40 + i) * QUARTER, 1.0))
            .collect()
    };
    for n in 0..3 {
        store.append(batch(&rows(n))).await.unwrap();
    }
    for _ in 0..3 {
        tokio::task::block_in_place(|| {
            arm(FailPoint::ChunkWrite, std::io::ErrorKind::Other);
            assert!(store.flush().is_err());
        });
        assert_eq!(store.tiers.read_locked().frozen.len(), 1);
    }
    match store.append(batch(&rows(3))).await {
        Err(Error::Overloaded(m)) => assert!(m.contains("120 readings"), "{m}"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    tokio::task::block_in_place(|| store.flush()).unwrap();
    assert!(store.tiers.read_locked().frozen.is_empty());
    store.append(batch(&rows(3))).await.unwrap();
    assert_eq!(visible(&store).len(), 160);
}

/// Issue 7, finding 13: a day whose compaction fails does not stop the
/// compaction of the other days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_day_does_not_stop_compaction_of_the_others() {
    use crate::faults::{FailPoint, arm};
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path(), 1);
    let store = open(dir.path(), &cat);
    let day = 86_400_000;
    for v in [1.0, 2.0] {
        store
            .append(batch(&[(0, T0, v), (0, T0 + day, v)]))
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.flush()).unwrap();
    }
    assert_eq!(store.snapshot().chunks.len(), 4);
    tokio::task::block_in_place(|| {
        // The first day's merged file cannot be written.
        arm(FailPoint::ChunkWrite, std::io::ErrorKind::Other);
        assert!(store.compact(true).is_err());
    });
    let days: Vec<i64> = store.snapshot().chunks.iter().map(|c| c.meta.day).collect();
    assert_eq!(days.iter().filter(|d| **d == T0 / day).count(), 2);
    assert_eq!(days.iter().filter(|d| **d == T0 / day + 1).count(), 1);
    assert_eq!(visible(&store), vec![(0, T0, 2.0), (0, T0 + day, 2.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_write_ahead_gives_its_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path(), 50);
    let store = open(dir.path(), &cat);
    let wal_bytes = || {
        std::fs::metadata(dir.path().join("wal.redb"))
            .unwrap()
            .len()
    };
    for day in 0..8 {
        let rows: Vec<(u32, i64, f64)> = (0..50)
            .flat_map(|s| (0..96).map(move |q| (s, T0 + day * 86_400_000 + q * QUARTER, 0.25)))
            .collect();
        store.append(batch(&rows)).await.unwrap();
    }
    let before = visible(&store);
    let full = wal_bytes();
    tokio::task::block_in_place(|| store.flush()).unwrap();
    assert!(wal_bytes() >= full, "redb keeps its file size by itself");
    let compact = |worth: fn(u64, u64) -> bool| {
        tokio::task::block_in_place(|| store.wal.compact(worth)).unwrap()
    };
    assert_eq!(compact(|_, _| false), Compaction::NotWorth);
    assert_eq!(wal_bytes(), full);
    assert_eq!(compact(|file, live| live < file), Compaction::Done);
    let compacted = wal_bytes();
    assert!(compacted < full / 2, "{compacted} of {full} bytes");
    // The store goes on: appends land, and all survives a reopen.
    store.append(batch(&[(0, T0 - 1, 9.0)])).await.unwrap();
    drop(store);
    let (store, report) = ReadingStore::open(dir.path(), cat.clone()).unwrap();
    assert_eq!(report.readings, 1);
    let sorted = |mut v: Vec<(u32, i64, f64)>| {
        v.sort_by_key(|r| (r.0, r.1));
        v
    };
    let mut want = before;
    want.push((0, T0 - 1, 9.0));
    let (got, want) = (sorted(visible(&store)), sorted(want));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the readings differ after compaction");
}

#[test]
fn the_write_ahead_is_compacted_when_large_and_mostly_free() {
    use super::flush::worth_compacting;
    const MIB: u64 = 1 << 20;
    assert!(worth_compacting(400 * MIB, 10 * MIB));
    assert!(worth_compacting(32 * MIB, 8 * MIB));
    assert!(!worth_compacting(31 * MIB, 0), "small files stay");
    assert!(
        !worth_compacting(400 * MIB, 300 * MIB),
        "mostly live data stays"
    );
}

/// A flush writes each day's file from memory sensor by sensor, a row
/// group at a time: a day of more than a row group's readings (one sensor
/// alone has more), a day of a few, one far apart and the ends of the i64
/// range each become one file holding exactly its
/// readings in chunk order (by rank, which is not key order here), with
/// the right count and time span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_writes_every_day_in_chunk_order_a_row_group_at_a_time() {
    use crate::chunk::{DAY_MS, WRITE_ROWS, day_of};
    let dir = tempfile::tempdir().unwrap();
    let cat = catalog(dir.path(), 12);
    let store = open(dir.path(), &cat);
    // Sensor 0 alone has more than a row group in the first day.
    let mut all: Vec<(u32, i64, f64)> = Vec::new();
    for s in 0..12u32 {
        let (n, step) = if s == 0 {
            (WRITE_ROWS as i64 + 5_000, 300)
        } else {
            (2_000, 30_000)
        };
        all.extend((0..n).map(|i| (s, T0 + i * step, f64::from(s) + i as f64 / 1e3)));
        all.push((s, T0 + DAY_MS + i64::from(s) * QUARTER, 0.5));
    }
    // A day far apart, and the first and last days of the i64 range.
    all.extend([
        (7, T0 + 40 * DAY_MS, 9.0),
        (3, i64::MAX, 1.0),
        (3, i64::MIN, 2.0),
    ]);
    for part in all.chunks(40_000) {
        store.append(batch(part)).await.unwrap();
    }
    let report = tokio::task::block_in_place(|| store.flush()).unwrap();
    assert_eq!(report.readings, all.len() as u64);
    assert_eq!(report.chunks_written, 5);

    let names = SensorNames::from_catalog(&store.catalog.view());
    let mut want = all.clone();
    want.sort_by_key(|&(s, t, _)| (day_of(t), names.rank(crate::ids::SensorKey(s)), t));
    let mut chunks = store.snapshot().chunks;
    chunks.sort_by_key(|c| c.meta.day);
    let mut got = Vec::new();
    for c in &chunks {
        let rows = read_chunk(&c.path, &names).unwrap();
        assert_eq!(c.meta.rows, rows.len() as u64);
        assert!(rows.iter().all(|r| day_of(r.ts_ms) == c.meta.day));
        assert_eq!(
            c.meta.min_ts_ms,
            rows.iter().map(|r| r.ts_ms).min().unwrap()
        );
        assert_eq!(
            c.meta.max_ts_ms,
            rows.iter().map(|r| r.ts_ms).max().unwrap()
        );
        got.extend(rows.iter().map(|r| (r.sensor.0, r.ts_ms, r.value_kwh)));
    }
    assert!(chunks[1].meta.rows > WRITE_ROWS as u64);
    assert_eq!(got, want);
    assert_eq!(visible(&store).len(), all.len());
}
