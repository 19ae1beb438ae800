//! Register meters against interval meters at the spec's scale: 2,500
//! buildings, 50,000 sensors, days of 15-minute readings (2 by default,
//! `WATTLINE_BENCH_DAYS`), loaded into fresh data directories: once with
//! every sensor an interval meter, once with half of them cumulative
//! registers sending the running total of the same consumption; three
//! rounds of both, the order alternating, and the median ratio printed.
//!
//! ```text
//! cargo bench --bench meters
//! ```
//!
//! Client: the storage write path (`ReadingStore::append`, durable: each
//! batch is fsynced in the write-ahead before it returns), 50,000 distinct
//! readings a batch, one writer, while a background thread runs the
//! rollup steps the daemon's maintenance loop runs; the ingest time
//! includes that work, then the rest of the catch-up is timed on its own.
//! Meter types change nothing before the rollups, so the HTTP front (the
//! same for both) is left out. Both runs must give the same building
//! energy per local day, which the benchmark checks. Run by `cargo test
//! --all-targets` (without `--bench`) it does the same at a tiny scale.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{DAY_MS, QUARTER_MS, Shape, ZONES, provision_with};
use wattline_storage::{
    Catalog, Meter, MeterType, Reading, ReadingBatch, ReadingStore, Resolution, SensorKey,
    TimeRange,
};

const BATCH: usize = 50_000;

struct Run {
    readings: u64,
    ingest: Duration,
    catch_up: Duration,
    /// Building -> daily kWh, to compare the runs.
    days: Vec<(String, Vec<(i64, f64)>)>,
}

/// The consumption of `sensor` (its index `i`) in quarter `q` of day
/// `day`, in mWh: a daily shape, a per-sensor scale and noise.
fn used_mwh(i: usize, day: i64, q: i64) -> i64 {
    let mut rng = (day as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64) << 8 ^ q as u64;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    let scale = 0.2 + (i % 17) as f64 * 0.15;
    let hour = q as f64 / 4.0;
    let shape = 0.6 + 0.4 * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0);
    let noise = (rng % 1000) as f64 / 1000.0 * 0.1;
    ((scale * shape + noise) * 1e6).round() as i64
}

async fn run(shape: &Shape, registers: bool, first_day: i64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
    // Every other sensor a register in the second run.
    let meter = |i: usize| {
        if registers && i % 2 == 1 {
            Meter {
                meter_type: MeterType::Cumulative,
                ..Meter::default()
            }
        } else {
            Meter::default()
        }
    };
    let sensors: Vec<SensorKey> = provision_with(&catalog, shape, &ZONES, meter);
    let store = Arc::new(ReadingStore::open(dir.path(), catalog).unwrap().0);

    // Rollup steps in the background, as the daemon runs them.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.catch_up_rollups().unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let started = Instant::now();
    let mut totals = vec![0i64; sensors.len()];
    let mut batch = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    let mut send = async |batch: &mut Vec<Reading>| {
        n += batch.len() as u64;
        store
            .append(ReadingBatch {
                readings: std::mem::take(batch),
            })
            .await
            .unwrap();
    };
    for d in 0..shape.days {
        let day = first_day + d;
        for (i, &sensor) in sensors.iter().enumerate() {
            let register = meter(i).meter_type == MeterType::Cumulative;
            for q in 0..96 {
                let used = used_mwh(i, day, q);
                let value = if register {
                    // The register before the quarter: the difference to
                    // the next reading is the quarter's consumption.
                    let before = totals[i];
                    totals[i] += used;
                    before
                } else {
                    used
                };
                batch.push(Reading {
                    sensor,
                    ts_ms: day * DAY_MS + q * QUARTER_MS,
                    value_kwh: value as f64 / 1e6,
                });
                if batch.len() == BATCH {
                    send(&mut batch).await;
                }
            }
        }
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.flush())
            .await
            .unwrap()
            .unwrap();
    }
    // The next day's first quarter from every sensor, and from each
    // register also the reading that closes that quarter (a register's
    // consumption is known only at its next reading): both runs end the
    // same way, on a new UTC day whose readings reach back into the last.
    let next = first_day + shape.days;
    for (i, &sensor) in sensors.iter().enumerate() {
        let used = used_mwh(i, next, 0);
        let mut push = |ts_ms: i64, mwh: i64| {
            batch.push(Reading {
                sensor,
                ts_ms,
                value_kwh: mwh as f64 / 1e6,
            })
        };
        if meter(i).meter_type == MeterType::Cumulative {
            push(next * DAY_MS, totals[i]);
            push(next * DAY_MS + QUARTER_MS, totals[i] + used);
        } else {
            push(next * DAY_MS, used);
        }
        if batch.len() >= BATCH {
            send(&mut batch).await;
        }
    }
    if !batch.is_empty() {
        send(&mut batch).await;
    }
    let ingest = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let started = Instant::now();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.catch_up_rollups())
        .await
        .unwrap()
        .unwrap();
    let catch_up = started.elapsed();
    let days = (0..shape.tenants)
        .flat_map(|t| (0..shape.buildings_per_tenant).map(move |b| format!("b-{t}-{b}")))
        .map(|b| {
            let tz = ZONES[0].parse().unwrap();
            let series = store
                .rollups()
                .series(&b, tz, Resolution::Day, TimeRange::ALL)
                .into_iter()
                .map(|(t, a)| (t, a.kwh))
                .collect();
            (b, series)
        })
        .collect();
    Run {
        readings: n,
        ingest,
        catch_up,
        days,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (full, shape) = Shape::from_args(2, true, 2);
    // Rounds of both runs, the order alternating, since the same run
    // varies by about 10% from one time to the next.
    let rounds = if full { 3 } else { 1 };
    let today = chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS);
    let first_day = today - shape.days - 1;
    println!(
        "meters: {} buildings, {} sensors, {} days of 15-minute readings, {rounds} rounds",
        shape.tenants * shape.buildings_per_tenant,
        shape.tenants * shape.buildings_per_tenant * shape.sensors_per_building,
        shape.days
    );
    println!(
        "{:<6} {:<16} {:>10} {:>10} {:>12} {:>11} {:>10}",
        "round", "run", "readings", "ingest s", "readings/s", "catch-up s", "total s"
    );
    let rate = |r: &Run| r.readings as f64 / r.ingest.as_secs_f64();
    let until_done = |r: &Run| (r.ingest + r.catch_up).as_secs_f64();
    let (mut rates, mut totals) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let registers_first = round % 2 == 1;
        let first = run(&shape, registers_first, first_day).await;
        let second = run(&shape, !registers_first, first_day).await;
        let (interval, registers) = if registers_first {
            (second, first)
        } else {
            (first, second)
        };
        // The same consumption, the same energy per day, in every building.
        assert_eq!(interval.days.len(), registers.days.len());
        for ((b, want), (_, got)) in interval.days.iter().zip(&registers.days) {
            assert_eq!(got.len(), want.len(), "{b}");
            for ((t, w), (_, g)) in want.iter().zip(got) {
                assert!((w - g).abs() < 1e-6, "{b} {t}: {g} vs {w}");
            }
        }
        for (name, r) in [("all interval", &interval), ("half registers", &registers)] {
            println!(
                "{:<6} {:<16} {:>10} {:>10.2} {:>12.0} {:>11.2} {:>10.2}",
                round + 1,
                name,
                r.readings,
                r.ingest.as_secs_f64(),
                rate(r),
                r.catch_up.as_secs_f64(),
                until_done(r)
            );
        }
        rates.push(rate(&registers) / rate(&interval));
        totals.push(until_done(&registers) / until_done(&interval));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "half registers / all interval, median of {rounds}: ingest rate {:.2}; first reading to rollups complete {:.2} (each round: {})",
        median(&mut rates),
        median(&mut totals.clone()),
        totals
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
