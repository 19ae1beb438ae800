//! Recovery benchmark: how long the store takes to open with a full
//! write-ahead, after a crash and after a clean stop.
//!
//! ```text
//! cargo bench --bench recovery
//! ```
//!
//! A child process (this binary again) opens the store over the spec's
//! catalog (50,000 sensors), appends 10 million distinct readings through
//! the write path in 50,000-reading batches (each acknowledged, so durable)
//! with no flush, and exits without closing anything, as a daemon killed
//! by SIGKILL after its last acknowledgement would. This process then
//! times opening the catalog and the store (write-ahead repair and replay
//! into memory), checks every reading came back, reports the peak resident
//! memory, closes cleanly and times a second open. Run by
//! `cargo test --all-targets` (without `--bench`) it does the same on a
//! tiny data set, which keeps the benchmark tested.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DAY_MS, Shape, load_day, provision};
use wattline_storage::{Catalog, ReadingStore, RecoveryReport};

/// The data directory the child loads, when this process is the child.
const CHILD_ENV: &str = "WATTLINE_RECOVERY_LOAD";
/// Readings in the write-ahead at the spec's scale: the daemon's flush
/// trigger, so what a crash just before a flush leaves.
const FULL_READINGS: u64 = 10_000_000;
/// Readings of one sensor a day (15-minute readings, see [`load_day`]).
const PER_DAY: u64 = 96;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (full, shape) = Shape::from_args(3, false, 2);
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let loaded = load_and_crash(std::path::Path::new(&dir), full).await;
        println!("{loaded}");
        // No destructor runs: the write-ahead is left as a kill leaves it.
        std::process::exit(0);
    }

    let dir = tempfile::tempdir().unwrap();
    {
        let catalog = Catalog::open(dir.path()).unwrap();
        provision(&catalog, &shape, &["UTC"]);
    }
    let started = Instant::now();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args().skip(1))
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    assert!(child.status.success(), "{child:?}");
    let loaded: u64 = String::from_utf8_lossy(&child.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("the child printed no count: {child:?}"));
    let load_time = started.elapsed();
    let wal_bytes = std::fs::metadata(dir.path().join("wal.redb"))
        .unwrap()
        .len();

    let after_crash = open_timed(dir.path(), loaded);
    let peak_rss = common::status_kib("self", "VmHWM") * 1024;
    let after_stop = open_timed(dir.path(), loaded);

    println!(
        "\n## Recovery, {} sensors, {loaded} readings in the write-ahead\n",
        shape.tenants * shape.buildings_per_tenant * shape.sensors_per_building
    );
    println!("| measured | figure |");
    println!("|---|---:|");
    println!(
        "| load by a child process (append, 50,000 per batch, no flush) | {:.1} s, {:.2} M readings/s |",
        load_time.as_secs_f64(),
        loaded as f64 / load_time.as_secs_f64() / 1e6
    );
    println!(
        "| write-ahead file | {:.0} MB, {:.1} bytes per reading |",
        wal_bytes as f64 / 1e6,
        wal_bytes as f64 / loaded.max(1) as f64
    );
    let crash_open = after_crash.catalog + after_crash.store;
    for (what, o) in [
        (
            "after the child exited without closing (crash)",
            after_crash,
        ),
        ("after a clean close", after_stop),
    ] {
        println!(
            "| open {what}: catalog, store (of which replay) | {:.2} s, {:.2} s ({:.2} s, {} batches) |",
            o.catalog.as_secs_f64(),
            o.store.as_secs_f64(),
            o.report.elapsed.as_secs_f64(),
            o.report.batches
        );
    }
    println!(
        "| peak resident memory of the recovering process | {:.2} GiB |",
        peak_rss as f64 / f64::from(1u32 << 30)
    );
    common::summary(
        &format!("recovery: open after a crash, {loaded} readings in the write-ahead"),
        "s",
        crash_open.as_secs_f64(),
        None,
    );
    if !full {
        println!("(smoke run: `cargo bench --bench recovery` for the full scale)");
    }
}

/// The child: appends readings day by day (the last day for as many
/// sensors as reach the target) and returns how many.
async fn load_and_crash(dir: &std::path::Path, full: bool) -> u64 {
    let catalog = Arc::new(Catalog::open(dir).unwrap());
    let sensors: Vec<_> = catalog.view().sensors().map(|s| s.key).collect();
    let (store, _) = ReadingStore::open(dir, catalog.clone()).unwrap();
    let target = if full {
        FULL_READINGS
    } else {
        sensors.len() as u64 * PER_DAY + PER_DAY / 2
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut day = now.div_euclid(DAY_MS) - 3;
    let mut loaded = 0u64;
    while loaded < target {
        let room = usize::try_from((target - loaded).div_ceil(PER_DAY)).unwrap();
        let these = &sensors[..room.min(sensors.len())];
        loaded += load_day(&store, these, day * DAY_MS).await;
        day += 1;
    }
    std::mem::forget(store);
    std::mem::forget(catalog);
    loaded
}

/// Times to open the catalog and then the store.
struct Opened {
    catalog: Duration,
    store: Duration,
    report: RecoveryReport,
}

/// Opens catalog and store, checks all `loaded` readings are in memory,
/// closes.
fn open_timed(dir: &std::path::Path, loaded: u64) -> Opened {
    let started = Instant::now();
    let catalog = Arc::new(Catalog::open(dir).unwrap());
    let catalog_took = started.elapsed();
    let started = Instant::now();
    let (store, report) = ReadingStore::open(dir, catalog).unwrap();
    let store_took = started.elapsed();
    assert_eq!(store.hot_len_total(), loaded, "readings lost or doubled");
    store.close();
    Opened {
        catalog: catalog_took,
        store: store_took,
        report,
    }
}
