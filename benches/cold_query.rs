//! Cold-store benchmark: bytes per reading on disk, a full-scan aggregate
//! (sum by building) and a one-building, one-month query, over a generated
//! data set at the spec's shape (50 tenants, 2,500 buildings, 50,000
//! sensors, 15-minute readings; 21 days = 100.8 million readings), with
//! DuckDB running the same queries on the same Parquet files in the same
//! run for comparison.
//!
//! ```text
//! cargo bench --bench cold_query
//! ```
//!
//! `WATTLINE_BENCH_DAYS` sets the number of days (default 21). The data go
//! through the real write path (write-ahead, memtable, flush to chunk
//! files), one day at a time. DuckDB comes from PyPI (installed on first
//! use into the build's temp folder). Each query runs 5 times; the table
//! shows the median. Run by `cargo test --all-targets` (without `--bench`)
//! it does the same on a tiny data set, which keeps the benchmark tested.

mod common;
#[path = "../tests/api/pydeps.rs"]
mod pydeps;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DAY_MS, Shape, load_day, provision};
use wattline_query::{QueryEngine, QueryLimits, Scope};
use wattline_storage::{Catalog, ReadingStore};

const RUNS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (full, shape) = Shape::from_args(21, true, 3);
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
    let sensors = provision(&catalog, &shape, &["UTC"]);
    let (store, _) = ReadingStore::open(dir.path(), catalog.clone()).unwrap();
    let store = Arc::new(store);

    // The newest day ends at the last full UTC day before now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let first_day = now.div_euclid(DAY_MS) - shape.days;
    let started = Instant::now();
    let mut total = 0u64;
    for d in 0..shape.days {
        total += load_day(&store, &sensors, (first_day + d) * DAY_MS).await;
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.flush())
            .await
            .unwrap()
            .unwrap();
    }
    let load_time = started.elapsed();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.compact(true))
        .await
        .unwrap()
        .unwrap();
    let snapshot = store.snapshot();
    let bytes: u64 = snapshot.chunks.iter().map(|c| c.meta.bytes).sum();
    let rows: u64 = snapshot.chunks.iter().map(|c| c.meta.rows).sum();
    assert_eq!(rows, total);
    drop(snapshot);

    let engine = QueryEngine::new(
        store.clone(),
        QueryLimits {
            timeout: Duration::from_secs(600),
            memory_limit: 4 << 30,
            max_rows: 1_000_000,
            max_concurrent: 1,
            max_concurrent_per_tenant: None,
            max_join_rows: 100_000_000,
        },
    );
    let month_start = (first_day + shape.days - 30.min(shape.days)) * DAY_MS;
    let building = "b-0-1";
    let scan_sql = "SELECT building_id, sum(value_kwh) AS kwh FROM readings GROUP BY building_id";
    let month_sql = format!(
        "SELECT date_trunc('day', ts) AS day, sum(value_kwh) AS kwh FROM readings \
         WHERE building_id = '{building}' AND ts >= to_timestamp_millis({month_start}) \
         AND ts < to_timestamp_millis({}) GROUP BY 1 ORDER BY 1",
        month_start + 30 * DAY_MS
    );
    let (scan, scan_rows) = time_query(&engine, scan_sql).await;
    let (month, month_rows) = time_query(&engine, &month_sql).await;
    assert_eq!(scan_rows, shape.tenants * shape.buildings_per_tenant);
    assert_eq!(month_rows as i64, 30.min(shape.days));

    // DuckDB (from PyPI, so it needs the network) only in the real run.
    let glob = dir.path().join("chunks/readings/*/*.parquet");
    let duck = |sql: String| full.then(|| ms(duckdb_median(&sql)));
    let duck_scan = duck(format!(
        "SELECT building_id, sum(value_kwh) FROM read_parquet('{}') GROUP BY building_id",
        glob.display()
    ));
    let duck_month = duck(format!(
        "SELECT date_trunc('day', ts) AS day, sum(value_kwh) FROM read_parquet('{}') \
         WHERE building_id = '{building}' AND ts >= epoch_ms({month_start}) AND ts < epoch_ms({}) \
         GROUP BY 1 ORDER BY 1",
        glob.display(),
        month_start + 30 * DAY_MS
    ));

    println!(
        "cold_query: {} readings, {} sensors, {} buildings, {} days; loaded through the write path in {:.1} s ({:.0} readings/s incl. flush)",
        total,
        sensors.len(),
        shape.tenants * shape.buildings_per_tenant,
        shape.days,
        load_time.as_secs_f64(),
        total as f64 / load_time.as_secs_f64()
    );
    println!(
        "on disk: {} bytes in chunk files = {:.3} bytes per reading",
        bytes,
        bytes as f64 / total as f64
    );
    println!(
        "{:<38} {:>12} {:>16} {:>12}",
        "query (median of 5)", "wattline ms", "readings/s", "duckdb ms"
    );
    println!(
        "{:<38} {:>12.1} {:>16.0} {:>12}",
        "full scan: sum by building",
        ms(scan),
        total as f64 / scan.as_secs_f64(),
        shown(duck_scan)
    );
    println!(
        "{:<38} {:>12.1} {:>16} {:>12}",
        "one building, one month, by day",
        ms(month),
        "",
        shown(duck_month)
    );
}

/// A DuckDB time, or why there is none.
fn shown(ms: Option<f64>) -> String {
    ms.map_or_else(|| "--bench only".into(), |v| format!("{v:.1}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median time of [`RUNS`] runs, and the row count.
async fn time_query(engine: &QueryEngine, sql: &str) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = engine.sql(sql, &Scope::all()).await.unwrap();
        times.push(started.elapsed());
        rows = out.batches.iter().map(|b| b.num_rows()).sum();
    }
    times.sort();
    (times[RUNS / 2], rows)
}

/// Median time of [`RUNS`] runs of `sql` in DuckDB (timed inside Python,
/// after a warm-up, so interpreter start-up is not counted).
fn duckdb_median(sql: &str) -> Duration {
    let script = format!(
        "import duckdb, time\ncon = duckdb.connect()\ncon.execute('SET threads = 2')\n\
         con.sql({sql:?}).fetchall()\nts = []\nfor _ in range({RUNS}):\n    t = time.perf_counter()\n    \
         con.sql({sql:?}).fetchall()\n    ts.append(time.perf_counter() - t)\nts.sort()\nprint(ts[len(ts) // 2])"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .env("PYTHONPATH", pydeps::duckdb_pythonpath())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Duration::from_secs_f64(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}
