//! Fault injection and power-loss simulation for the store.
//!
//! The write-ahead database (write-ahead, manifest, dirty marks) runs on
//! [`SimDisk`], a storage backend that keeps what was last fsynced apart
//! from what was only written: an fsync can be made to fail (leaving the
//! data durable or not, at random, as a real failed fsync may), the disk
//! can fill up, and the power can be cut at any fsync, after which every
//! operation fails; a reboot keeps only what was fsynced. Chunk and rollup
//! files fail through [`crate::faults`]. After each fault the invariant is
//! checked on a store reopened from what is durable:
//!
//! - every acknowledged reading is there, once, with its last
//!   acknowledged value, or with the value of a batch that failed after it
//!   (a failed commit may have landed, but never half of it);
//! - nothing appears that no batch wrote;
//! - the store either kept serving or stopped for good ([`Error::Stopped`]).

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::StorageBackend;

use crate::catalog::Catalog;
use crate::chunk::SensorNames;
use crate::error::Error;
use crate::faults::{FailPoint, arm};
use crate::reading::TimeRange;
use crate::store::ReadingStore;
use crate::test_util::batch;
use crate::wal::db::WalDb;

const T0: i64 = 1_764_979_200_000; // 2025-12-06T00:00:00Z
const NEVER: u64 = u64::MAX;

/// A disk holding one database file.
#[derive(Debug, Default)]
struct SimDisk {
    state: Mutex<DiskState>,
    /// fsyncs since the last reboot.
    syncs: AtomicU64,
    /// The fsync with this number fails (once).
    fail_sync_at: AtomicU64,
    /// The power goes at the fsync with this number.
    cut_at_sync: AtomicU64,
    dead: AtomicBool,
    full: AtomicBool,
    /// Decides whether a failed fsync made the data durable.
    coin: AtomicU64,
    /// A failed fsync reports a full disk (as some file systems do)
    /// rather than an I/O error.
    sync_says_full: AtomicBool,
}

#[derive(Debug, Default)]
struct DiskState {
    written: Vec<u8>,
    durable: Vec<u8>,
}

impl SimDisk {
    fn new() -> Arc<Self> {
        let disk = Arc::new(Self::default());
        disk.fail_sync_at.store(NEVER, Ordering::SeqCst);
        disk.cut_at_sync.store(NEVER, Ordering::SeqCst);
        disk
    }

    /// Power back on: only what was fsynced is there.
    fn reboot(&self) {
        let mut s = self.state.lock().unwrap();
        s.written = s.durable.clone();
        self.syncs.store(0, Ordering::SeqCst);
        self.fail_sync_at.store(NEVER, Ordering::SeqCst);
        self.cut_at_sync.store(NEVER, Ordering::SeqCst);
        self.dead.store(false, Ordering::SeqCst);
        self.full.store(false, Ordering::SeqCst);
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn check(&self) -> std::io::Result<()> {
        if self.is_dead() {
            Err(std::io::Error::other("the power is off"))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
struct SimBackend(Arc<SimDisk>);

impl StorageBackend for SimBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.check()?;
        Ok(self.0.state.lock().unwrap().written.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.check()?;
        let s = self.0.state.lock().unwrap();
        let start = offset as usize;
        let bytes = s
            .written
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::new(ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.check()?;
        let mut s = self.0.state.lock().unwrap();
        if len as usize > s.written.len() && self.0.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        s.written.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.0.check()?;
        let n = self.0.syncs.fetch_add(1, Ordering::SeqCst);
        if n >= self.0.cut_at_sync.load(Ordering::SeqCst) {
            self.0.dead.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("the power is off"));
        }
        let mut s = self.0.state.lock().unwrap();
        if n == self.0.fail_sync_at.load(Ordering::SeqCst) {
            // A failed fsync may have written some, all or none of it.
            if self.0.coin.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                s.durable = s.written.clone();
            }
            if self.0.sync_says_full.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            return Err(std::io::Error::other("injected fsync failure"));
        }
        s.durable = s.written.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.check()?;
        // A full disk has no block to put new data in (the file's length
        // is set ahead, sparse).
        if self.0.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let mut s = self.0.state.lock().unwrap();
        let end = offset as usize + data.len();
        if end > s.written.len() {
            s.written.resize(end, 0);
        }
        s.written[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

fn open_store(dir: &Path, cat: &Arc<Catalog>, disk: &Arc<SimDisk>) -> ReadingStore {
    let disk = disk.clone();
    let wal = WalDb::open_with(
        &dir.join("wal.redb"),
        Arc::new(move |_: &Path| Ok(Box::new(SimBackend(disk.clone())) as Box<dyn StorageBackend>)),
    )
    .unwrap();
    ReadingStore::open_with(dir, cat.clone(), wal).unwrap().0
}

/// What the store must show: per reading, the values it may have.
#[derive(Default)]
struct Model {
    /// The last acknowledged value and values of later failed batches.
    allowed: BTreeMap<(u32, i64), Vec<f64>>,
    /// Readings only ever in failed batches: present with one of these
    /// values, or absent.
    maybe: BTreeMap<(u32, i64), Vec<f64>>,
}

impl Model {
    fn acked(&mut self, rows: &[(u32, i64, f64)]) {
        for &(s, t, v) in rows {
            self.allowed.insert((s, t), vec![v]);
            self.maybe.remove(&(s, t));
        }
    }

    fn failed(&mut self, rows: &[(u32, i64, f64)]) {
        for &(s, t, v) in rows {
            match self.allowed.get_mut(&(s, t)) {
                Some(values) => values.push(v),
                None => self.maybe.entry((s, t)).or_default().push(v),
            }
        }
    }

    /// Checks the store's readings; `what` names the case in failures.
    fn check(&self, store: &ReadingStore, what: &str) {
        let names = SensorNames::from_catalog(&store.catalog().view());
        let rows = store
            .snapshot()
            .merged_readings(&|_| true, TimeRange::ALL, &names)
            .unwrap();
        let mut seen: HashMap<(u32, i64), f64> = HashMap::new();
        for r in rows {
            let key = (r.sensor.0, r.ts_ms);
            assert!(
                seen.insert(key, r.value_kwh).is_none(),
                "{what}: {key:?} twice"
            );
        }
        for (key, values) in &self.allowed {
            let got = seen.get(key);
            assert!(
                got.is_some_and(|v| values.contains(v)),
                "{what}: acknowledged {key:?} is {got:?}, expected one of {values:?}"
            );
        }
        for (key, v) in &seen {
            assert!(
                self.allowed.contains_key(key)
                    || self.maybe.get(key).is_some_and(|m| m.contains(v)),
                "{what}: {key:?} = {v} was never written"
            );
        }
        // A failed batch is all or nothing: checked through `maybe` below.
    }
}

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One step of a workload.
#[derive(Debug, Clone, Copy)]
enum Step {
    Append,
    Correct,
    Late,
    Flush,
    Compact,
    Rollups,
}

fn workload(rng: &mut Rng, len: usize) -> Vec<Step> {
    (0..len)
        .map(|_| match rng.below(10) {
            0..=3 => Step::Append,
            4 => Step::Correct,
            5 => Step::Late,
            6 | 7 => Step::Flush,
            8 => Step::Compact,
            _ => Step::Rollups,
        })
        .collect()
}

/// Runs `steps` against `store`, recording outcomes in `model`. Returns
/// once the store stopped for good (or the steps ran out).
async fn run_steps(store: &ReadingStore, model: &mut Model, steps: &[Step], rng: &mut Rng) {
    let mut next_ts = T0 + 3 * 86_400_000;
    for (i, step) in steps.iter().enumerate() {
        let rows: Vec<(u32, i64, f64)> = match step {
            Step::Append => {
                next_ts += 900_000;
                (0..3)
                    .map(|s| (s, next_ts, (i * 10 + s as usize) as f64))
                    .collect()
            }
            Step::Correct if next_ts > T0 + 3 * 86_400_000 => {
                vec![(rng.below(3) as u32, next_ts, 1000.0 + i as f64)]
            }
            Step::Late => {
                let day = rng.below(3) as i64;
                vec![(
                    rng.below(3) as u32,
                    T0 + day * 86_400_000 + rng.below(96) as i64 * 900_000,
                    i as f64,
                )]
            }
            _ => Vec::new(),
        };
        let outcome = if rows.is_empty() {
            tokio::task::block_in_place(|| match step {
                Step::Flush => store.flush().map(|_| ()),
                Step::Compact => store.compact(rng.below(2) == 0).map(|_| ()),
                Step::Rollups => store.catch_up_rollups().map(|_| ()),
                _ => Ok(()),
            })
        } else {
            let result = store.append(batch(&rows)).await.map(|_| ());
            match &result {
                Ok(()) => model.acked(&rows),
                Err(_) => model.failed(&rows),
            }
            result
        };
        match outcome {
            Ok(()) => {}
            Err(Error::Stopped) => {
                assert!(store.fatal().is_some());
                // Stopped for good: nothing more is acknowledged.
                let more = store.append(batch(&[(0, T0, 1.0)])).await;
                assert!(matches!(more, Err(Error::Stopped)), "{more:?}");
                model.failed(&[(0, T0, 1.0)]);
                return;
            }
            Err(_) => {}
        }
    }
}

fn fresh(sensors: u32) -> (tempfile::TempDir, Arc<Catalog>, Arc<SimDisk>) {
    let dir = tempfile::tempdir().unwrap();
    let cat = crate::test_util::catalog_with_sensors(dir.path(), sensors);
    (dir, cat, SimDisk::new())
}

/// Reopens after a reboot and checks the model, then checks that the
/// reopened store works: a flush and a full compaction keep it.
async fn reboot_and_check(
    dir: &Path,
    cat: &Arc<Catalog>,
    disk: &Arc<SimDisk>,
    model: &Model,
    what: &str,
) {
    disk.reboot();
    let store = open_store(dir, cat, disk);
    model.check(&store, what);
    tokio::task::block_in_place(|| {
        store.flush().unwrap();
        store.compact(true).unwrap();
        store.catch_up_rollups().unwrap();
    });
    model.check(&store, &format!("{what}, after flush and compaction"));
    // Every file in the readings folder is named by the manifest.
    let named = store.snapshot().chunks.len();
    let on_disk = walk(&dir.join("chunks/readings"));
    assert_eq!(on_disk, named, "{what}: stray chunk files");
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { 1 }
        })
        .sum()
}

/// A failed fsync at every commit of a workload (write-ahead batches,
/// flush and compaction manifests, rollup marks): the store stops, and
/// what recovery finds keeps every acknowledged reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_at_any_commit_stops_the_store_and_loses_nothing_acknowledged() {
    let steps = workload(&mut Rng(7), 40);
    for fail_at in 0..60 {
        let (dir, cat, disk) = fresh(3);
        let mut model = Model::default();
        {
            let store = open_store(dir.path(), &cat, &disk);
            disk.syncs.store(0, Ordering::SeqCst);
            disk.fail_sync_at.store(fail_at, Ordering::SeqCst);
            disk.sync_says_full
                .store(fail_at % 2 == 1, Ordering::SeqCst);
            run_steps(&store, &mut model, &steps, &mut Rng(fail_at + 1)).await;
        }
        reboot_and_check(
            dir.path(),
            &cat,
            &disk,
            &model,
            &format!("fsync {fail_at} failed"),
        )
        .await;
    }
}

/// A full disk under the write-ahead refuses batches with `StorageFull`,
/// stores nothing of them, and ingestion resumes once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_batches_cleanly_and_ingestion_resumes() {
    let (dir, cat, disk) = fresh(3);
    let mut model = Model::default();
    let store = open_store(dir.path(), &cat, &disk);
    let mut ts = T0;
    let mut refused = 0;
    for round in 0..200 {
        disk.full
            .store((100..150).contains(&round), Ordering::SeqCst);
        ts += 900_000;
        let rows: Vec<_> = (0..3).map(|s| (s, ts, round as f64)).collect();
        match store.append(batch(&rows)).await {
            Ok(_) => model.acked(&rows),
            Err(Error::StorageFull) => refused += 1,
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    assert!(refused > 0, "the disk never filled up");
    assert!(store.fatal().is_none());
    model.check(&store, "after the disk had room again");
    drop(store);
    reboot_and_check(dir.path(), &cat, &disk, &model, "full disk").await;
}

/// Chunk and rollup file steps failing (short write, full disk, failed
/// fsync of the file or its folder): the step fails, nothing is lost, no
/// file is left behind, and the next attempt succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_chunk_and_rollup_file_steps_lose_nothing_and_leave_no_files() {
    let points = [
        FailPoint::ChunkWrite,
        FailPoint::ChunkSync,
        FailPoint::ChunkDirSync,
        FailPoint::RollupWrite,
    ];
    let kinds = [
        ErrorKind::StorageFull,
        ErrorKind::Other,
        ErrorKind::WriteZero,
    ];
    for point in points {
        for kind in kinds {
            for target in [Step::Flush, Step::Compact, Step::Rollups] {
                let (dir, cat, disk) = fresh(3);
                let mut model = Model::default();
                let store = open_store(dir.path(), &cat, &disk);
                let base = [
                    Step::Append,
                    Step::Late,
                    Step::Flush,
                    Step::Late,
                    Step::Append,
                    Step::Flush,
                ];
                run_steps(&store, &mut model, &base, &mut Rng(3)).await;
                arm(point, kind);
                let failed = tokio::task::block_in_place(|| match target {
                    Step::Flush => {
                        store.append_blocking(&[(0, T0 + 86_400_000, 5.0)], &mut model);
                        store.flush().map(|_| ())
                    }
                    Step::Compact => store.compact(true).map(|_| ()),
                    _ => store.catch_up_rollups().map(|_| ()),
                });
                // Disarm whatever the target did not reach.
                let _ = crate::faults::inject(point);
                let what = format!("{point:?} failing with {kind:?} during {target:?}");
                if failed.is_err() {
                    assert!(store.fatal().is_none(), "{what}: a file error is not fatal");
                }
                model.check(&store, &what);
                tokio::task::block_in_place(|| {
                    store.flush().unwrap();
                    store.compact(true).unwrap();
                    store.catch_up_rollups().unwrap();
                });
                model.check(&store, &format!("{what}, retried"));
                drop(store);
                reboot_and_check(dir.path(), &cat, &disk, &model, &what).await;
            }
        }
    }
}

impl ReadingStore {
    /// Appends from blocking code (the tests' flush target).
    fn append_blocking(&self, rows: &[(u32, i64, f64)], model: &mut Model) {
        let handle = tokio::runtime::Handle::current();
        match handle.block_on(self.append(batch(rows))) {
            Ok(_) => model.acked(rows),
            Err(_) => model.failed(rows),
        }
    }
}

/// Power cut at a random fsync of a random workload, many rounds: what
/// was fsynced is all that survives, and recovery keeps every reading
/// acknowledged before the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_at_any_fsync_keeps_every_acknowledged_reading() {
    let rounds: u64 = std::env::var("WATTLINE_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    for round in 0..rounds {
        let mut rng = Rng(round * 7919 + 13);
        let (dir, cat, disk) = fresh(3);
        let steps = workload(&mut rng, 30);
        let mut model = Model::default();
        // A few lives per round: cut, reboot, go on with more steps.
        for life in 0..3 {
            let store = open_store(dir.path(), &cat, &disk);
            disk.syncs.store(0, Ordering::SeqCst);
            disk.cut_at_sync.store(rng.below(40), Ordering::SeqCst);
            let mut lost = Model::default();
            run_cut(&store, &disk, &mut model, &mut lost, &steps, &mut rng).await;
            drop(store);
            disk.reboot();
            let store = open_store(dir.path(), &cat, &disk);
            model.check(&store, &format!("round {round}, life {life}"));
        }
    }
}

/// Like [`run_steps`], but an acknowledgement counts only if the power was
/// still on when it came (after the cut, the simulated disk's answers are
/// not to be trusted, as a real disk's are not after power loss).
async fn run_cut(
    store: &ReadingStore,
    disk: &Arc<SimDisk>,
    model: &mut Model,
    lost: &mut Model,
    steps: &[Step],
    rng: &mut Rng,
) {
    let mut ts = T0 + 10 * 86_400_000 + rng.below(1_000) as i64 * 900_000;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Flush | Step::Compact | Step::Rollups => {
                let _ = tokio::task::block_in_place(|| match step {
                    Step::Flush => store.flush().map(|_| ()),
                    Step::Compact => store.compact(true).map(|_| ()),
                    _ => store.catch_up_rollups().map(|_| ()),
                });
            }
            _ => {
                ts += 900_000;
                let rows: Vec<_> = (0..3)
                    .map(|s| (s, ts, (i * 3 + s as usize) as f64))
                    .collect();
                let ok = store.append(batch(&rows)).await.is_ok();
                if ok && !disk.is_dead() {
                    model.acked(&rows);
                } else {
                    model.failed(&rows);
                    lost.failed(&rows);
                }
            }
        }
        if disk.is_dead() {
            return;
        }
    }
}
