//! Cold-store benchmark: bytes per reading on disk and the raw-data SQL an
//! energy manager runs (the last quarter hour and the last hour of every
//! sensor, a full scan by building, alone and joined to `sensors`, one
//! building's month by day), over a generated
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
//! shows the median and the ratio wattline / DuckDB. Run by `cargo test --all-targets` (without `--bench`)
//! it does the same on a tiny data set, which keeps the benchmark tested.

mod common;
#[allow(dead_code)]
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
    let mut slowest_flush = Duration::ZERO;
    for d in 0..shape.days {
        total += load_day(&store, &sensors, (first_day + d) * DAY_MS).await;
        let s = store.clone();
        let flush_started = Instant::now();
        tokio::task::spawn_blocking(move || s.flush())
            .await
            .unwrap()
            .unwrap();
        slowest_flush = slowest_flush.max(flush_started.elapsed());
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
            // The join query joins every reading to its sensor.
            max_join_rows: 1_000_000_000,
        },
    );
    let month_start = (first_day + shape.days - 30.min(shape.days)) * DAY_MS;
    let month_end = month_start + 30.min(shape.days) * DAY_MS;
    let data_end = (first_day + shape.days) * DAY_MS;
    let building = "b-0-1";
    // The sensors' buildings as a file, for DuckDB's side of the join.
    let sensors_csv = dir.path().join("sensors.csv");
    let mut csv = String::from("sensor_id,building_id\n");
    for s in catalog.view().sensors() {
        csv.push_str(&format!("{},{}\n", s.id, s.building_id));
    }
    std::fs::write(&sensors_csv, csv).unwrap();
    let glob = dir.path().join("chunks/readings/*/*.parquet");
    let readings = format!("read_parquet('{}')", glob.display());
    let sensor_file = format!("read_csv('{}')", sensors_csv.display());

    let buildings = shape.tenants * shape.buildings_per_tenant;
    let all_sensors = sensors.len();
    // (what, wattline SQL, DuckDB SQL, rows expected)
    let queries: Vec<(&str, String, String, usize)> = vec![
        (
            "last 15 min, summed per building",
            format!(
                "SELECT building_id, sum(value_kwh) FROM readings WHERE ts >= to_timestamp_millis({}) \
                 AND ts < to_timestamp_millis({data_end}) GROUP BY building_id",
                data_end - 900_000
            ),
            format!(
                "SELECT building_id, sum(value_kwh) FROM {readings} WHERE ts >= epoch_ms({}) \
                 AND ts < epoch_ms({data_end}) GROUP BY building_id",
                data_end - 900_000
            ),
            buildings,
        ),
        (
            "one hour, count/sum/min/max per sensor",
            format!(
                "SELECT sensor_id, count(*), sum(value_kwh), min(value_kwh), max(value_kwh) FROM readings \
                 WHERE ts >= to_timestamp_millis({}) AND ts < to_timestamp_millis({data_end}) GROUP BY sensor_id",
                data_end - 3_600_000
            ),
            format!(
                "SELECT sensor_id, count(*), sum(value_kwh), min(value_kwh), max(value_kwh) FROM {readings} \
                 WHERE ts >= epoch_ms({}) AND ts < epoch_ms({data_end}) GROUP BY sensor_id",
                data_end - 3_600_000
            ),
            all_sensors,
        ),
        (
            "full scan: sum by building",
            "SELECT building_id, sum(value_kwh) AS kwh FROM readings GROUP BY building_id".into(),
            format!("SELECT building_id, sum(value_kwh) FROM {readings} GROUP BY building_id"),
            buildings,
        ),
        (
            "same, joined to sensors",
            "SELECT s.building_id, sum(r.value_kwh) FROM readings r \
             JOIN sensors s ON r.sensor_id = s.sensor_id GROUP BY 1"
                .into(),
            format!(
                "SELECT s.building_id, sum(r.value_kwh) FROM {readings} r \
                 JOIN {sensor_file} s ON r.sensor_id = s.sensor_id GROUP BY 1"
            ),
            buildings,
        ),
        (
            "one building, one month, by day",
            format!(
                "SELECT date_trunc('day', ts) AS day, sum(value_kwh) AS kwh FROM readings \
                 WHERE building_id = '{building}' AND ts >= to_timestamp_millis({month_start}) \
                 AND ts < to_timestamp_millis({month_end}) GROUP BY 1 ORDER BY 1"
            ),
            format!(
                "SELECT date_trunc('day', ts) AS day, sum(value_kwh) FROM {readings} \
                 WHERE building_id = '{building}' AND ts >= epoch_ms({month_start}) \
                 AND ts < epoch_ms({month_end}) GROUP BY 1 ORDER BY 1"
            ),
            30.min(shape.days) as usize,
        ),
    ];

    println!(
        "cold_query: {} readings, {} sensors, {} buildings, {} days; loaded through the write path in {:.1} s ({:.0} readings/s incl. flush)",
        total,
        all_sensors,
        buildings,
        shape.days,
        load_time.as_secs_f64(),
        total as f64 / load_time.as_secs_f64()
    );
    println!(
        "on disk: {} bytes in chunk files = {:.3} bytes per reading",
        bytes,
        bytes as f64 / total as f64
    );
    // DuckDB (from PyPI, so it needs the network) only in the real run:
    // its own file of the same readings, for bytes per reading.
    let duck_bytes = full.then(|| duckdb_native_bytes(&readings, &dir.path().join("duck.db")));
    println!(
        "{:<40} {:>12} {:>12} {:>8}",
        "query (median of 5)", "wattline ms", "duckdb ms", "ratio"
    );
    let mut summaries = Vec::new();
    for (what, sql, duck_sql, expected) in queries {
        let (took, rows) = time_query(&engine, &sql).await;
        assert_eq!(rows, expected, "{what}");
        let duck = full.then(|| ms(duckdb_median(&duck_sql)));
        let ratio = duck.map_or_else(String::new, |d| format!("{:.2}", ms(took) / d));
        println!(
            "{:<40} {:>12.1} {:>12} {:>8}",
            what,
            ms(took),
            shown(duck),
            ratio
        );
        summaries.push((format!("SQL: {what}"), ms(took), duck));
    }
    let per_reading = |b: u64| b as f64 / total as f64;
    let data_dir = common::dir_bytes(dir.path())
        - std::fs::metadata(&sensors_csv).map_or(0, |m| m.len())
        - duck_bytes.unwrap_or(0);
    common::summary(
        "load through the write path, flushes included",
        "M readings/s",
        total as f64 / load_time.as_secs_f64() / 1e6,
        None,
    );
    common::summary(
        &format!(
            "slowest flush of a day ({} readings)",
            total / shape.days as u64
        ),
        "s",
        slowest_flush.as_secs_f64(),
        None,
    );
    common::summary(
        "bytes per reading: chunk files (DuckDB: its own database file)",
        "B",
        per_reading(bytes),
        duck_bytes.map(per_reading),
    );
    common::summary(
        "bytes per reading: whole data directory",
        "B",
        per_reading(data_dir),
        None,
    );
    for (what, wattline, duck) in summaries {
        common::summary(&what, "ms", wattline, duck);
    }
    common::summary(
        "peak resident memory: load, flushes and queries in one process",
        "GiB",
        common::status_kib("self", "VmHWM") as f64 / f64::from(1u32 << 20),
        None,
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

/// Bytes of a DuckDB database file holding `readings` (loaded, then
/// checkpointed).
fn duckdb_native_bytes(readings: &str, file: &std::path::Path) -> u64 {
    let script = format!(
        "import duckdb\ncon = duckdb.connect({:?})\ncon.execute('SET threads = 2')\n\
         con.execute('SET enable_progress_bar = false')\n\
         con.execute({:?})\ncon.execute('CHECKPOINT')\ncon.close()",
        file.display().to_string(),
        format!("CREATE TABLE readings AS SELECT * FROM {readings} ORDER BY sensor_id, ts")
    );
    run_python(&script);
    let bytes = std::fs::metadata(file).unwrap().len();
    let wal = file.with_extension("db.wal");
    bytes + std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Median time of [`RUNS`] runs of `sql` in DuckDB (timed inside Python,
/// after a warm-up, so interpreter start-up is not counted).
fn duckdb_median(sql: &str) -> Duration {
    let script = format!(
        "import duckdb, time\ncon = duckdb.connect()\ncon.execute('SET threads = 2')\ncon.execute('SET enable_progress_bar = false')\n\
         con.sql({sql:?}).fetchall()\nts = []\nfor _ in range({RUNS}):\n    t = time.perf_counter()\n    \
         con.sql({sql:?}).fetchall()\n    ts.append(time.perf_counter() - t)\nts.sort()\nprint(ts[len(ts) // 2])"
    );
    let out = run_python(&script);
    Duration::from_secs_f64(out.trim().parse().unwrap())
}

/// What `script` prints, run with DuckDB importable.
fn run_python(script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", pydeps::duckdb_pythonpath())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
