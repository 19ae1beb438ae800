//! Peak demand and cost through faults: a tariff change the process did
//! not live to re-cost, an unreadable quarter file, and a long metering
//! interval reaching into the next day.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::Resolution;
use crate::catalog::{Catalog, NewBuilding, NewSensor};
use crate::ids::{BuildingId, SensorId, SensorKey, TenantId};
use crate::meter::Meter;
use crate::reading::{Reading, ReadingBatch, TimeRange};
use crate::store::ReadingStore;
use crate::tariff::Tariff;

const DAY: i64 = 86_400_000;
/// 2026-10-01T00:00:00Z.
const T0: i64 = 1_790_812_800_000;

/// Tenant `t`, building `b` in UTC, sensor key 0 reporting every
/// `interval_s` seconds.
fn setup(dir: &Path, interval_s: i64) -> Arc<Catalog> {
    let c = Catalog::open(dir).unwrap();
    let t = TenantId::parse("t").unwrap();
    c.create_tenant(t.clone(), "T".into()).unwrap();
    c.create_building(NewBuilding {
        id: BuildingId::parse("b").unwrap(),
        tenant_id: t,
        name: "B".into(),
        floor_area_m2: None,
        timezone: None,
    })
    .unwrap();
    c.create_sensor(NewSensor {
        id: SensorId::parse("m").unwrap(),
        building_id: BuildingId::parse("b").unwrap(),
        kind: None,
        unit: None,
        is_active: None,
        meter: Meter {
            interval_s,
            ..Meter::default()
        },
    })
    .unwrap();
    Arc::new(c)
}

fn tariff(price: f64) -> Tariff {
    Tariff {
        id: "flat".into(),
        tenant_id: TenantId::parse("t").unwrap(),
        building_id: None,
        currency: "EUR".into(),
        effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        price_per_kwh: price,
        periods: vec![],
        demand_charge_per_kw: None,
    }
}

async fn append(store: &ReadingStore, readings: &[(i64, f64)]) {
    let readings = readings
        .iter()
        .map(|&(ts_ms, value_kwh)| Reading {
            sensor: SensorKey(0),
            ts_ms,
            value_kwh,
        })
        .collect();
    store.append(ReadingBatch { readings }).await.unwrap();
    tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
}

/// (day start, peak kW, cost) of building `b`'s days.
fn days(store: &ReadingStore) -> Vec<(i64, Option<f64>, Option<f64>)> {
    store
        .rollups()
        .series("b", Tz::UTC, Resolution::Day, TimeRange::ALL)
        .into_iter()
        .map(|(t, a)| (t, a.peak_kw, a.cost))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tariff_change_not_yet_costed_is_costed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path(), 900);
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    append(&store, &[(T0, 2.0), (T0 + 900_000, 1.0)]).await;
    assert_eq!(days(&store), vec![(T0, Some(8.0), None)]);
    // The tariff commits; the process dies before a step re-costs.
    catalog.create_tariff(tariff(0.5)).unwrap();
    drop(store);
    drop(catalog);
    let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
    let store = ReadingStore::open(dir.path(), catalog.clone()).unwrap().0;
    tokio::task::block_in_place(|| store.catch_up_rollups()).unwrap();
    assert_eq!(days(&store), vec![(T0, Some(8.0), Some(1.5))]);
    // And the month has it too.
    let month = store
        .rollups()
        .series("b", Tz::UTC, Resolution::Month, TimeRange::ALL);
    assert_eq!(month[0].1.cost, Some(1.5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_quarter_file_is_rebuilt_and_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path(), 900);
    catalog.create_tariff(tariff(1.0)).unwrap();
    let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
    append(&store, &[(T0, 2.0)]).await;
    let file = dir
        .path()
        .join("chunks/rollups/building_quarterly/day=2026-10-01/part.parquet");
    assert!(file.exists());
    std::fs::write(&file, b"not parquet").unwrap();
    // A late reading of that day and one five days later: both roll up,
    // and the day's file is whole again.
    append(&store, &[(T0 + 3_600_000, 3.0), (T0 + 5 * DAY, 1.0)]).await;
    assert_eq!(
        days(&store),
        vec![
            (T0, Some(12.0), Some(5.0)),
            (T0 + 5 * DAY, Some(4.0), Some(1.0))
        ]
    );
    assert!(super::files::read_partition(super::RollupTable::BuildingQuarterly, &file).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_interval_reaching_into_the_next_day_updates_its_peak() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path(), 1800);
    let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
    // The next day first: 1 kWh over its first half hour is 2 kW.
    append(&store, &[(T0 + DAY, 1.0)]).await;
    assert_eq!(days(&store)[0].1, Some(2.0));
    // Then a late 10 kWh over 23:45 to 00:15: 20 kW in the next day's
    // first quarter, which now peaks at 22 kW.
    append(&store, &[(T0 + DAY - 900_000, 10.0)]).await;
    let d = days(&store);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0].1, Some(20.0));
    assert_eq!(d[1].1, Some(22.0));
}

/// A step for a day with hourly meters recomputes the next day's quarters
/// too (an interval reaches across midnight): from all of that day's
/// readings, not only those of its first hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reading_keeps_the_next_day_s_quarters_of_hourly_meters() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = setup(dir.path(), 3600);
    let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
    // 5 kWh over the next day's 10:00 hour: 5 kW.
    append(&store, &[(T0 + DAY + 10 * 3_600_000, 5.0)]).await;
    assert_eq!(days(&store)[0].1, Some(5.0));
    // Then a late 2 kWh hour at noon of the day before.
    append(&store, &[(T0 + 12 * 3_600_000, 2.0)]).await;
    let d = days(&store);
    assert_eq!(
        d.iter().map(|(t, kw, _)| (*t, *kw)).collect::<Vec<_>>(),
        vec![(T0, Some(2.0)), (T0 + DAY, Some(5.0))]
    );
}
