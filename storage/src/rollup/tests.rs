//! Rollups against a brute-force recomputation from the raw readings, with
//! duplicates, corrections, out-of-order and days-late arrivals, flushes,
//! compactions and restarts in between, in zones with DST, half-hour
//! offsets and half-hour DST shifts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Offset, Timelike};
use chrono_tz::Tz;

use super::calendar::local_date;
use super::{Agg, Resolution};
use crate::catalog::{Catalog, NewBuilding, NewSensor};
use crate::ids::{BuildingId, SensorId, SensorKey, TenantId};
use crate::reading::{Reading, ReadingBatch, TimeRange};
use crate::store::ReadingStore;

const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/New_York",
];

fn setup(dir: &Path) -> Arc<Catalog> {
    let c = Catalog::open(dir).unwrap();
    c.create_tenant(TenantId::parse("t").unwrap(), "T".into())
        .unwrap();
    for (i, zone) in ZONES.iter().enumerate() {
        c.create_building(NewBuilding {
            id: BuildingId::parse(&format!("b{i}")).unwrap(),
            tenant_id: TenantId::parse("t").unwrap(),
            name: "B".into(),
            floor_area_m2: None,
            timezone: Some((*zone).into()),
        })
        .unwrap();
        for j in 0..2 {
            c.create_sensor(NewSensor {
                id: SensorId::parse(&format!("s{i}{j}")).unwrap(),
                building_id: BuildingId::parse(&format!("b{i}")).unwrap(),
                kind: None,
                unit: None,
                is_active: None,
                meter: Default::default(),
            })
            .unwrap();
        }
    }
    Arc::new(c)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

/// Sums per bucket key, brute force, with chrono's local time directly.
fn brute(
    truth: &BTreeMap<(u32, i64), f64>,
    key: impl Fn(Tz, i64) -> String,
) -> BTreeMap<(usize, String), (f64, f64, i64)> {
    let mut out: BTreeMap<(usize, String), (f64, f64, i64)> = BTreeMap::new();
    for (&(sensor, ts), &v) in truth {
        let b = sensor as usize / 2;
        let tz: Tz = ZONES[b].parse().unwrap();
        let e = out.entry((b, key(tz, ts))).or_insert((0.0, f64::MIN, 0));
        e.0 += v;
        e.1 = e.1.max(v);
        e.2 += 1;
    }
    out
}

/// Peak demand per bucket key, brute force: the building's 15-minute
/// sums, the largest in each bucket, times four.
fn brute_demand(
    truth: &BTreeMap<(u32, i64), f64>,
    key: impl Fn(Tz, i64) -> String,
) -> BTreeMap<(usize, String), f64> {
    let mut quarters: BTreeMap<(usize, i64), f64> = BTreeMap::new();
    for (&(sensor, ts), &v) in truth {
        *quarters
            .entry((sensor as usize / 2, ts - ts.rem_euclid(900_000)))
            .or_default() += v;
    }
    let mut out: BTreeMap<(usize, String), f64> = BTreeMap::new();
    for ((b, q), kwh) in quarters {
        let tz: Tz = ZONES[b].parse().unwrap();
        let e = out.entry((b, key(tz, q))).or_insert(f64::MIN);
        *e = e.max(kwh * 4.0);
    }
    out
}

/// Peak demand per bucket key, as the rollups hold it.
fn demand(
    store: &ReadingStore,
    res: Resolution,
    key: impl Fn(Tz, i64) -> String,
) -> BTreeMap<(usize, String), f64> {
    let mut out = BTreeMap::new();
    for (b, zone) in ZONES.iter().enumerate() {
        let tz: Tz = zone.parse().unwrap();
        for (start, a) in store
            .rollups()
            .series(&format!("b{b}"), tz, res, TimeRange::ALL)
        {
            out.insert((b, key(tz, start)), a.peak_kw.expect("days have a demand"));
        }
    }
    out
}

fn assert_demand(
    got: &BTreeMap<(usize, String), f64>,
    want: &BTreeMap<(usize, String), f64>,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, w) in want {
        assert!((got[k] - w).abs() < 1e-6, "{what} {k:?}: {} != {w}", got[k]);
    }
}

fn local(tz: Tz, ts: i64) -> chrono::DateTime<Tz> {
    DateTime::from_timestamp_millis(ts)
        .unwrap()
        .with_timezone(&tz)
}

fn hour_key(tz: Tz, ts: i64) -> String {
    let l = local(tz, ts);
    format!("{} {:02} {}", l.date_naive(), l.hour(), l.offset().fix())
}

fn day_key(tz: Tz, ts: i64) -> String {
    local(tz, ts).date_naive().to_string()
}

fn month_key(tz: Tz, ts: i64) -> String {
    let d = local(tz, ts).date_naive();
    format!("{}-{:02}", d.year(), d.month())
}

fn rollup(
    store: &ReadingStore,
    res: Resolution,
    key: impl Fn(Tz, i64) -> String,
) -> BTreeMap<(usize, String), (f64, f64, i64)> {
    let mut out = BTreeMap::new();
    for (b, zone) in ZONES.iter().enumerate() {
        let tz: Tz = zone.parse().unwrap();
        for (
            start,
            Agg {
                kwh,
                peak_kwh,
                readings,
                ..
            },
        ) in store
            .rollups()
            .series(&format!("b{b}"), tz, res, TimeRange::ALL)
        {
            out.insert((b, key(tz, start)), (kwh, peak_kwh, readings));
        }
    }
    out
}

fn assert_close(
    got: &BTreeMap<(usize, String), (f64, f64, i64)>,
    want: &BTreeMap<(usize, String), (f64, f64, i64)>,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: buckets differ"
    );
    for (k, w) in want {
        let g = got[k];
        assert!(
            (g.0 - w.0).abs() < 1e-6 * w.0.abs().max(1.0),
            "{what} {k:?}: kwh {} != {}",
            g.0,
            w.0
        );
        assert_eq!((g.1, g.2), (w.1, w.2), "{what} {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_brute_force_recomputation() {
    for seed in [7u64, 1234, 99_991] {
        let dir = tempfile::tempdir().unwrap();
        let catalog = setup(dir.path());
        let mut store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
        let mut rng = Rng(seed);
        let mut truth: BTreeMap<(u32, i64), f64> = BTreeMap::new();
        // Two windows: the autumn Lord Howe / Berlin / New York changes.
        let windows = [ms("2026-10-02T00:00:00Z"), ms("2026-10-23T00:00:00Z")];
        for round in 0..40 {
            let mut batch = Vec::new();
            for _ in 0..rng.below(200) + 1 {
                let sensor = rng.below(8) as u32;
                let base = windows[rng.below(2) as usize];
                // 15-minute grid over four days, some off-grid instants.
                let ts = base
                    + rng.below(4 * 96) as i64 * 900_000
                    + if rng.below(10) == 0 { 7 * 60_000 } else { 0 };
                let value =
                    (rng.below(5000) as f64) / 1000.0 - if rng.below(20) == 0 { 3.0 } else { 0.0 };
                batch.push(Reading {
                    sensor: SensorKey(sensor),
                    ts_ms: ts,
                    value_kwh: value,
                });
                truth.insert((sensor, ts), value);
            }
            store
                .append(ReadingBatch { readings: batch })
                .await
                .unwrap();
            match rng.below(6) {
                0 => tokio::task::block_in_place(|| store.flush().map(|_| ())).unwrap(),
                1 => tokio::task::block_in_place(|| store.compact(rng.below(2) == 0).map(|_| ()))
                    .unwrap(),
                2 => {
                    tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
                }
                3 if round % 10 == 3 => {
                    // Restart, possibly with rollup work pending.
                    drop(store);
                    store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
                }
                _ => {}
            }
        }
        tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
        assert_close(
            &rollup(&store, Resolution::Hour, hour_key),
            &brute(&truth, hour_key),
            "hour",
        );
        assert_close(
            &rollup(&store, Resolution::Day, day_key),
            &brute(&truth, day_key),
            "day",
        );
        assert_close(
            &rollup(&store, Resolution::Month, month_key),
            &brute(&truth, month_key),
            "month",
        );

        // Peak demand of local days and months against their quarters.
        assert_demand(
            &demand(&store, Resolution::Day, day_key),
            &brute_demand(&truth, day_key),
            "day demand",
        );
        assert_demand(
            &demand(&store, Resolution::Month, month_key),
            &brute_demand(&truth, month_key),
            "month demand",
        );

        // Everything survives a restart (building tables reload from files).
        drop(store);
        let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
        assert_demand(
            &demand(&store, Resolution::Day, day_key),
            &brute_demand(&truth, day_key),
            "day demand after restart",
        );
        assert_close(
            &rollup(&store, Resolution::Day, day_key),
            &brute(&truth, day_key),
            "day after restart",
        );
        assert_close(
            &rollup(&store, Resolution::Hour, hour_key),
            &brute(&truth, hour_key),
            "hour after restart",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_outlive_the_raw_readings() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    let t = ms("2026-10-02T10:00:00Z");
    store
        .append(ReadingBatch {
            readings: vec![Reading {
                sensor: SensorKey(0),
                ts_ms: t,
                value_kwh: 2.0,
            }],
        })
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        store.flush().unwrap();
        store.catch_up_rollups().unwrap();
        assert_eq!(store.drop_expired(t + 86_400_000 * 2).unwrap(), 1);
    });
    let tz: Tz = ZONES[0].parse().unwrap();
    let days = store
        .rollups()
        .series("b0", tz, Resolution::Day, TimeRange::ALL);
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].1.kwh, 2.0);
    assert_eq!(
        local_date(tz, days[0].0),
        NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_retention_drops_old_buckets_and_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    let (old, new) = (ms("2026-09-01T10:00:00Z"), ms("2026-10-02T10:00:00Z"));
    let readings = [old, new]
        .iter()
        .map(|&t| Reading {
            sensor: SensorKey(0),
            ts_ms: t,
            value_kwh: 1.5,
        })
        .collect();
    store.append(ReadingBatch { readings }).await.unwrap();
    tokio::task::block_in_place(|| {
        store.flush().unwrap();
        store.catch_up_rollups().unwrap();
    });
    let tz: Tz = ZONES[0].parse().unwrap();
    let count = |res| store.rollups().series("b0", tz, res, TimeRange::ALL).len();
    assert_eq!(
        (
            count(Resolution::Hour),
            count(Resolution::Day),
            count(Resolution::Month)
        ),
        (2, 2, 2)
    );
    let rollups = dir.path().join("chunks/rollups");
    assert!(
        rollups
            .join("building_hourly/day=2026-09-01/part.parquet")
            .exists()
    );
    assert!(
        rollups
            .join("building_daily/month=2026-09/part.parquet")
            .exists()
    );

    tokio::task::block_in_place(|| store.rollups().drop_expired(ms("2026-09-15T00:00:00Z")))
        .unwrap();
    assert_eq!(
        (
            count(Resolution::Hour),
            count(Resolution::Day),
            count(Resolution::Month)
        ),
        (1, 1, 1)
    );
    assert!(!rollups.join("building_hourly/day=2026-09-01").exists());
    assert!(!rollups.join("sensor_hourly/day=2026-09-01").exists());
    assert!(
        !rollups
            .join("building_daily/month=2026-09/part.parquet")
            .exists()
    );
    assert!(
        rollups
            .join("building_daily/month=2026-10/part.parquet")
            .exists()
    );
    // The October rollups are still right after a restart.
    drop(store);
    let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
    let days = store
        .rollups()
        .series("b0", tz, Resolution::Day, TimeRange::ALL);
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].1.kwh, 1.5);
}

/// A late reading on the day after one whose raw readings retention
/// dropped must not wipe that day's rollups (its recompute window reaches
/// back a day).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reading_next_to_dropped_raw_data_keeps_its_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    let reading = |t: &str, v: f64| Reading {
        sensor: SensorKey(0),
        ts_ms: ms(t),
        value_kwh: v,
    };
    store
        .append(ReadingBatch {
            readings: vec![
                reading("2026-10-01T10:00:00Z", 2.0),
                reading("2026-10-02T10:00:00Z", 1.0),
            ],
        })
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        store.flush().unwrap();
        store.catch_up_rollups().unwrap();
        assert_eq!(store.drop_expired(ms("2026-10-02T00:00:00Z")).unwrap(), 1);
    });
    store
        .append(ReadingBatch {
            readings: vec![reading("2026-10-02T11:00:00Z", 5.0)],
        })
        .await
        .unwrap();
    tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
    let tz: Tz = ZONES[0].parse().unwrap();
    let days: Vec<(NaiveDate, f64)> = store
        .rollups()
        .series("b0", tz, Resolution::Day, TimeRange::ALL)
        .into_iter()
        .map(|(t, a)| (local_date(tz, t), a.kwh))
        .collect();
    assert_eq!(
        days,
        vec![
            (NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(), 2.0),
            (NaiveDate::from_ymd_opt(2026, 10, 2).unwrap(), 6.0)
        ]
    );
}

/// A zone change the rollups missed (the daemon stopped between the
/// catalog's commit and the rebuild) is found and rebuilt at the next
/// step; and rebuilds of one building are spaced, later changes coalesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_zone_change_is_rebuilt_and_rebuilds_are_spaced() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let readings = [
        (ms("2026-10-02T20:00:00Z"), 1.0), // Berlin 22:00 on the 2nd
        (ms("2026-10-02T22:30:00Z"), 2.0), // Berlin 00:30 on the 3rd
    ];
    let days = |store: &ReadingStore, zone: &str| -> Vec<(NaiveDate, f64)> {
        let tz: Tz = zone.parse().unwrap();
        store
            .rollups()
            .series("b0", tz, Resolution::Day, TimeRange::ALL)
            .into_iter()
            .map(|(t, a)| (local_date(tz, t), a.kwh))
            .collect()
    };
    let set_zone = |zone: &str| {
        catalog
            .update_building(
                &BuildingId::parse("b0").unwrap(),
                crate::catalog::BuildingPatch {
                    name: None,
                    floor_area_m2: None,
                    timezone: Some(zone.into()),
                },
            )
            .unwrap();
    };
    let d = |day: u32| NaiveDate::from_ymd_opt(2026, 10, day).unwrap();
    {
        let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
        for (ts, v) in readings {
            store
                .append(ReadingBatch {
                    readings: vec![Reading {
                        sensor: SensorKey(0),
                        ts_ms: ts,
                        value_kwh: v,
                    }],
                })
                .await
                .unwrap();
        }
        tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
        assert_eq!(
            days(&store, "Europe/Berlin"),
            vec![(d(2), 1.0), (d(3), 2.0)]
        );
        // The zone changes; the daemon stops before rebuilding.
        set_zone("UTC");
    }
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
    assert_eq!(days(&store, "UTC"), vec![(d(2), 3.0)]);

    // Rebuilt just now: a change within the spacing waits, and the
    // worker does not rebuild either until it is over.
    set_zone("Europe/Berlin");
    let now = tokio::task::block_in_place(|| store.rebuild_building_rollups("b0").unwrap());
    assert!(!now);
    tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
    assert_eq!(days(&store, "UTC"), vec![(d(2), 3.0)]);
    set_zone("Asia/Kolkata");
    set_zone("Europe/Berlin");
    // A backup taken now carries the pending change: opened, its rollups
    // follow the zone of its catalog.
    let copy = dir.path().join("copy");
    tokio::task::block_in_place(|| store.backup(&copy).unwrap());
    {
        let copied_catalog = Arc::new(Catalog::open(&copy).unwrap());
        let restored = ReadingStore::open(&copy, copied_catalog).unwrap().0;
        tokio::task::block_in_place(|| restored.catch_up_rollups().unwrap());
        assert_eq!(
            days(&restored, "Europe/Berlin"),
            vec![(d(2), 1.0), (d(3), 2.0)]
        );
    }
    store
        .rollups()
        .set_rebuild_spacing(std::time::Duration::ZERO);
    tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
    assert_eq!(
        days(&store, "Europe/Berlin"),
        vec![(d(2), 1.0), (d(3), 2.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_minute_windows_survive_a_restart() {
    // They are rebuilt from the raw readings on open; a building seen both
    // in the loaded rollups and in the readings once lost its windows.
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let now = crate::now_ms();
    let q = now - now.rem_euclid(900_000) - 900_000;
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    store
        .append(ReadingBatch {
            readings: vec![Reading {
                sensor: SensorKey(0),
                ts_ms: q,
                value_kwh: 1.5,
            }],
        })
        .await
        .unwrap();
    tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
    let tz: Tz = ZONES[0].parse().unwrap();
    let quarter = |store: &ReadingStore| {
        store
            .rollups()
            .windows()
            .energy("b0", super::WindowSpan::Quarter, tz, q)
            .map(|a| a.kwh)
    };
    assert_eq!(quarter(&store), Some(1.5));
    drop(store);
    let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
    assert_eq!(quarter(&store), Some(1.5));
}

/// A reading of s10, in Asia/Kolkata (+05:30).
fn kolkata(ts: &str, kwh: f64) -> Reading {
    Reading {
        sensor: SensorKey(2),
        ts_ms: ms(ts),
        value_kwh: kwh,
    }
}

/// The hours of s10's building: (start, kWh).
fn kolkata_hours(store: &ReadingStore) -> Vec<(i64, f64)> {
    let tz: Tz = ZONES[1].parse().unwrap();
    store
        .rollups()
        .series("b1", tz, Resolution::Hour, TimeRange::ALL)
        .into_iter()
        .map(|(t, a)| (t, a.kwh))
        .collect()
}

/// A step for a day reaches back into the partition of the day before
/// (here a +05:30 zone's hour that starts before midnight UTC), but only
/// rewrites it when its rows change: a later reading of the day leaves
/// that file as it was, and every hour still adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_leaves_partitions_whose_rows_do_not_change_unwritten() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    let readings = vec![
        kolkata("2026-10-01T12:00:00Z", 1.0),
        kolkata("2026-10-02T00:10:00Z", 2.0),
        kolkata("2026-10-02T10:00:00Z", 3.0),
    ];
    store.append(ReadingBatch { readings }).await.unwrap();
    tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
    let part = |day: &str| {
        super::RollupTable::SensorHourly
            .dir(dir.path())
            .join(format!("day={day}"))
            .join("part.parquet")
    };
    let inode = |day: &str| std::fs::metadata(part(day)).unwrap().ino();
    let (before, today) = (inode("2026-10-01"), inode("2026-10-02"));

    let readings = vec![kolkata("2026-10-02T12:00:00Z", 4.0)];
    store.append(ReadingBatch { readings }).await.unwrap();
    tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
    assert_eq!(inode("2026-10-01"), before, "the day before is unchanged");
    assert_ne!(inode("2026-10-02"), today, "the day itself is rewritten");

    assert_eq!(
        kolkata_hours(&store),
        vec![
            (ms("2026-10-01T11:30:00Z"), 1.0),
            (ms("2026-10-01T23:30:00Z"), 2.0),
            (ms("2026-10-02T09:30:00Z"), 3.0),
            (ms("2026-10-02T11:30:00Z"), 4.0),
        ]
    );
}

/// A step that failed after renaming a partition into place, before its
/// folder was synced, is repeated; the repeat finds the rows unchanged
/// and keeps the file, but still syncs its folder (else the rename could
/// be lost to a power cut after the marks are gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_step_syncs_the_folder_of_a_partition_it_keeps() {
    use crate::faults::{FailPoint, arm};
    use std::io::ErrorKind;
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path());
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    let readings = vec![
        kolkata("2026-10-01T12:00:00Z", 1.0),
        kolkata("2026-10-02T10:00:00Z", 3.0),
    ];
    store.append(ReadingBatch { readings }).await.unwrap();
    tokio::task::block_in_place(|| store.catch_up_rollups().unwrap());
    // In the hour starting 2026-10-01T23:30Z: the day before's partition.
    let readings = vec![kolkata("2026-10-02T00:20:00Z", 2.0)];
    store.append(ReadingBatch { readings }).await.unwrap();
    tokio::task::block_in_place(|| {
        arm(FailPoint::RollupDirSync, ErrorKind::Other);
        assert!(store.catch_up_rollups().is_err());
        arm(FailPoint::RollupKeepSync, ErrorKind::Other);
        let err = store.catch_up_rollups().unwrap_err();
        assert!(err.to_string().contains("day=2026-10-01"), "{err}");
        store.catch_up_rollups().unwrap();
    });
    assert_eq!(
        kolkata_hours(&store),
        vec![
            (ms("2026-10-01T11:30:00Z"), 1.0),
            (ms("2026-10-01T23:30:00Z"), 2.0),
            (ms("2026-10-02T09:30:00Z"), 3.0),
        ]
    );
}
