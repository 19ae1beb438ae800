//! Register and power meters through the rollups: a register sensor and
//! an interval sensor fed the same consumption give the same buckets,
//! whatever order, duplicates, corrections, flushes and restarts the
//! register's readings come through.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono_tz::Tz;

use super::Resolution;
use super::windows::WindowSpan;
use crate::catalog::{Catalog, NewBuilding, NewSensor};
use crate::ids::{BuildingId, SensorId, SensorKey, TenantId};
use crate::meter::{Meter, MeterType};
use crate::reading::{Reading, ReadingBatch, TimeRange};
use crate::store::ReadingStore;

const STEP: i64 = 900_000;
const ZONE: &str = "Asia/Kolkata";

/// Buildings `interval` (sensor key 0) and `register` (key 1) in a
/// half-hour zone, and `power` (key 2).
fn setup(dir: &Path) -> Arc<Catalog> {
    let c = Catalog::open(dir).unwrap();
    let t = TenantId::parse("t").unwrap();
    c.create_tenant(t.clone(), "T".into()).unwrap();
    let meters = [
        ("interval", Meter::default()),
        (
            "register",
            Meter {
                meter_type: MeterType::Cumulative,
                register_max: Some(1000.0),
                ..Meter::default()
            },
        ),
        (
            "power",
            Meter {
                meter_type: MeterType::Power,
                ..Meter::default()
            },
        ),
    ];
    for (name, meter) in meters {
        let building = BuildingId::parse(name).unwrap();
        c.create_building(NewBuilding {
            id: building.clone(),
            tenant_id: t.clone(),
            name: name.into(),
            floor_area_m2: None,
            timezone: Some(ZONE.into()),
        })
        .unwrap();
        c.create_sensor(NewSensor {
            id: SensorId::parse(&format!("{name}-1")).unwrap(),
            building_id: building,
            kind: None,
            unit: None,
            is_active: None,
            meter,
        })
        .unwrap();
    }
    Arc::new(c)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn reading(sensor: u32, ts_ms: i64, value_kwh: f64) -> Reading {
    Reading {
        sensor: SensorKey(sensor),
        ts_ms,
        value_kwh,
    }
}

fn kwh_series(store: &ReadingStore, building: &str, res: Resolution) -> BTreeMap<i64, f64> {
    let tz: Tz = ZONE.parse().unwrap();
    store
        .rollups()
        .series(building, tz, res, TimeRange::ALL)
        .into_iter()
        .map(|(t, a)| (t, a.kwh))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_and_an_interval_meter_give_the_same_rollups() {
    for seed in [3u64, 77, 4242] {
        let dir = tempfile::tempdir().unwrap();
        let catalog = setup(dir.path());
        let mut store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
        let mut rng = Rng(seed);
        // Two and a half days up to now, so the 15-minute windows of the
        // alerts are kept too.
        let now = crate::now_ms();
        let start = now - now.rem_euclid(STEP) - 240 * STEP;
        let n = 240;
        // Up to 4 kWh a quarter, in mWh.
        let used: Vec<i64> = (0..n).map(|_| rng.below(4000) as i64 * 1000).collect();
        // The register in whole mWh: wraps at 1000 kWh (it starts near the
        // top), one reset, and glitches inside an hour (the glitch's
        // energy is counted at the reading before it, in the same hour).
        let mut units = vec![999_000_000i64];
        for (i, u) in used.iter().enumerate() {
            let next = if i == 150 {
                *u
            } else {
                (units[i] + u) % 1_000_000_000
            };
            units.push(next);
        }
        let mut register: Vec<(i64, f64)> = units
            .iter()
            .enumerate()
            .map(|(i, &u)| (start + i as i64 * STEP, u as f64 / 1e6))
            .collect();
        // The reset at 151 is from the lower half (the wrap came first).
        assert!(units[150] < 500_000_000 && units[150] > 100_000_000);
        // Not at the start of a local hour (:30 UTC in this zone).
        let glitches: Vec<usize> = [41, 90, 201]
            .into_iter()
            .map(|k| {
                (k..)
                    .find(|&k| (start + k as i64 * STEP).rem_euclid(3_600_000) != 1_800_000)
                    .unwrap()
            })
            .collect();
        for &k in &glitches {
            register[k].1 = register[k - 1].1 - 50.0;
        }
        let interval: Vec<Reading> = used
            .iter()
            .enumerate()
            .map(|(i, &u)| reading(0, start + i as i64 * STEP, u as f64 / 1e6))
            .collect();
        store
            .append(ReadingBatch { readings: interval })
            .await
            .unwrap();

        // The register's readings in random order and batches, some sent
        // twice, some first with a wrong value then corrected.
        let mut order: Vec<usize> = (0..register.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut round = 0;
        while !order.is_empty() {
            let take = (rng.below(40) as usize + 1).min(order.len());
            let mut batch: Vec<Reading> = Vec::new();
            for i in order.drain(..take) {
                let (ts, v) = register[i];
                if rng.below(8) == 0 {
                    store
                        .append(ReadingBatch {
                            readings: vec![reading(1, ts, v + 123.0)],
                        })
                        .await
                        .unwrap();
                }
                batch.push(reading(1, ts, v));
                if rng.below(8) == 0 {
                    batch.push(reading(1, ts, v));
                }
            }
            batch.sort_by_key(|r| r.ts_ms);
            batch.dedup_by_key(|r| r.ts_ms);
            store
                .append(ReadingBatch { readings: batch })
                .await
                .unwrap();
            round += 1;
            match rng.below(5) {
                0 => tokio::task::block_in_place(|| store.flush().map(|_| ())).unwrap(),
                1 => tokio::task::block_in_place(|| store.compact(false).map(|_| ())).unwrap(),
                2 => {
                    tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
                }
                3 if round % 4 == 3 => {
                    drop(store);
                    store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
                }
                _ => {}
            }
        }
        tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
        for res in [Resolution::Hour, Resolution::Day, Resolution::Month] {
            let want = kwh_series(&store, "interval", res);
            assert!(!want.is_empty());
            assert_eq!(kwh_series(&store, "register", res), want, "{res:?}");
        }
        // The alerts' 15-minute windows: equal except at the glitches,
        // whose energy moved to the quarter before.
        let tz: Tz = ZONE.parse().unwrap();
        let windows = store.rollups().windows();
        let quarter = |b: &str, i: usize| {
            windows
                .energy(b, WindowSpan::Quarter, tz, start + i as i64 * STEP)
                .map(|a| a.kwh)
        };
        let mut compared = 0;
        for i in 0..n {
            if glitches.iter().any(|&k| i == k || i + 1 == k)
                || start + (i as i64) * STEP < (now / 86_400_000 - 2) * 86_400_000
            {
                continue;
            }
            assert_eq!(
                quarter("register", i),
                quarter("interval", i),
                "quarter {i} at {} (now {now}), seed {seed}",
                start + i as i64 * STEP
            );
            compared += 1;
        }
        assert!(compared > 100);
        drop(windows);
        drop(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_samples_integrate_into_hours() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
    // 4 kW flat, a sample a minute for three hours from 10:00 local
    // (04:30 UTC): 4 kWh in each hour, exactly (a minute is 1/15 kWh, a
    // binary fraction, but a quarter sums to 1). The last sample closes the
    // third hour; then a two-hour gap (past max_gap) and one more sample.
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-10-02T04:30:00Z")
        .unwrap()
        .timestamp_millis();
    let mut samples: Vec<Reading> = (0..=180)
        .map(|i| reading(2, t0 + i * 60_000, 4.0))
        .collect();
    samples.push(reading(2, t0 + 5 * 3_600_000, 4.0));
    // Sent newest first, in two batches.
    samples.reverse();
    let later = samples.split_off(100);
    for batch in [samples, later] {
        store
            .append(ReadingBatch { readings: batch })
            .await
            .unwrap();
        tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
    }
    let hours: Vec<f64> = kwh_series(&store, "power", Resolution::Hour)
        .into_values()
        .collect();
    assert_eq!(hours, vec![4.0, 4.0, 4.0]);
}
