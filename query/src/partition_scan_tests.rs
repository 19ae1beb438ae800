//! Scans of `sensor_hourly` and `building_quarterly`, read from their
//! day partitions.
//!
//! A query reads each partition file as it was when the query was
//! planned, even when a rollup step rewrites or removes it before the
//! query reads it. Under steady ingestion the rollups trail by about a
//! second, so this happens all the time; before the files were pinned,
//! such a query failed (or could misread a footer cached for the older
//! file). A time filter opens only the days it reaches and keeps exactly
//! its rows.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use datafusion::physical_plan::{ExecutionPlan, collect};
use wattline_storage::{Catalog, Reading, ReadingBatch, ReadingStore, TenantId};

use crate::test_fixture::{add_sensor, limits};
use crate::{QueryEngine, Scope};

const DAY_MS: i64 = 1_764_979_200_000;
const QUARTER_MS: i64 = 900_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<ReadingStore>,
    engine: QueryEngine,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
    add_sensor(&catalog, "alpha", "ba", "a1");
    let store = Arc::new(ReadingStore::open(dir.path(), catalog).unwrap().0);
    let engine = QueryEngine::new(store.clone(), limits());
    Fixture {
        _dir: dir,
        store,
        engine,
    }
}

/// Appends one reading of `kwh` per quarter of quarters `from..to` of the
/// day and brings the rollups up to date.
async fn add_quarters(store: &ReadingStore, from: i64, to: i64, kwh: f64) {
    let key = store.catalog().view().sensor("a1").unwrap().key;
    let readings = (from..to)
        .map(|q| Reading {
            sensor: key,
            ts_ms: DAY_MS + q * QUARTER_MS,
            value_kwh: kwh,
        })
        .collect();
    store.append(ReadingBatch { readings }).await.unwrap();
    store.catch_up_rollups().unwrap();
}

/// Row count and kWh total a plan of `SELECT count(*), sum(kwh)` returns.
async fn totals(
    plan: Arc<dyn ExecutionPlan>,
    ctx: &datafusion::prelude::SessionContext,
) -> (i64, f64) {
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    let count = batches[0].column(0).as_primitive::<Int64Type>();
    let sum = batches[0].column(1).as_primitive::<Float64Type>();
    assert_eq!(count.len(), 1);
    (count.value(0), sum.value(0))
}

async fn planned(
    f: &Fixture,
    table: &str,
) -> (datafusion::prelude::SessionContext, Arc<dyn ExecutionPlan>) {
    let scope = Scope::tenant(TenantId::parse("alpha").unwrap());
    let (ctx, _share) = f.engine.context(&scope).unwrap();
    let plan = ctx
        .sql(&format!("SELECT count(*), sum(kwh) FROM {table}"))
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    (ctx, plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_rewritten_after_planning_is_read_as_planned() {
    for (table, rows_before, rows_after) in
        [("building_quarterly", 40, 96), ("sensor_hourly", 10, 24)]
    {
        let f = fixture();
        add_quarters(&f.store, 0, 40, 1.0).await;
        // Read once, so the footer of the first file is cached.
        let (ctx, plan) = planned(&f, table).await;
        assert_eq!(totals(plan, &ctx).await, (rows_before, 40.0), "{table}");

        let (ctx, plan) = planned(&f, table).await;
        add_quarters(&f.store, 40, 96, 2.0).await;
        assert_eq!(
            totals(plan, &ctx).await,
            (rows_before, 40.0),
            "{table}: planned before the rewrite"
        );

        let (ctx, plan) = planned(&f, table).await;
        assert_eq!(
            totals(plan, &ctx).await,
            (rows_after, 152.0),
            "{table}: planned after the rewrite"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_removed_after_planning_is_read_as_planned() {
    let f = fixture();
    add_quarters(&f.store, 0, 8, 1.0).await;
    let (ctx, plan) = planned(&f, "building_quarterly").await;
    // Retention drops every partition before the query reads them.
    f.store
        .rollups()
        .drop_expired(DAY_MS + 2 * 86_400_000)
        .unwrap();
    assert_eq!(totals(plan, &ctx).await, (8, 8.0));
    let (ctx, plan) = planned(&f, "building_quarterly").await;
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 0);
}

/// Partitions are opened only for the UTC days a time filter reaches; the
/// rows a filter keeps stay exact at day boundaries, bounds included or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_keep_exactly_their_rows_across_day_partitions() {
    let f = fixture();
    add_quarters(&f.store, 0, 3 * 96, 1.0).await;
    let scope = Scope::tenant(TenantId::parse("alpha").unwrap());
    let ts = |s: &str| format!("TIMESTAMP '2025-12-{s}Z'");
    let cases = [
        (
            "building_quarterly",
            format!(
                "quarter >= {} AND quarter < {}",
                ts("07T00:00:00"),
                ts("07T06:00:00")
            ),
            24,
        ),
        (
            "building_quarterly",
            format!(
                "quarter > {} AND quarter <= {}",
                ts("06T23:45:00"),
                ts("08T00:00:00")
            ),
            97,
        ),
        (
            "building_quarterly",
            format!("quarter < {}", ts("06T00:15:00")),
            1,
        ),
        (
            "building_quarterly",
            format!("quarter >= {}", ts("08T23:45:00")),
            1,
        ),
        (
            "building_quarterly",
            format!("quarter >= {}", ts("09T00:00:00")),
            0,
        ),
        (
            "sensor_hourly",
            format!(
                "hour >= {} AND hour < {}",
                ts("07T00:00:00"),
                ts("07T06:00:00")
            ),
            6,
        ),
        (
            "sensor_hourly",
            format!(
                "hour > {} AND hour <= {}",
                ts("06T23:00:00"),
                ts("08T00:00:00")
            ),
            25,
        ),
        ("sensor_hourly", format!("hour <= {}", ts("06T00:00:00")), 1),
        (
            "sensor_hourly",
            format!(
                "hour BETWEEN {} AND {}",
                ts("08T23:00:00"),
                ts("09T05:00:00")
            ),
            1,
        ),
        ("sensor_hourly", "true".to_owned(), 72),
    ];
    for (table, filter, want) in cases {
        let sql = format!("SELECT count(*) FROM {table} WHERE {filter}");
        let out = f.engine.sql(&sql, &scope).await.unwrap();
        let got = out.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0);
        assert_eq!(got, want, "{sql}");
    }
}
