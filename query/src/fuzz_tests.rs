//! Property tests standing in for a fuzz target of the SQL gate: random
//! queries, from token soup to well-formed attacks on the tenant wall, run
//! as tenant `alpha` against a store holding `alpha`'s and `bravo`'s rows
//! (in memory and in chunk files). Whatever the query, the engine answers
//! or refuses without panicking, no answer holds a row of `bravo`, and no
//! error names one of its values.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use proptest::prelude::*;
use wattline_storage::{Catalog, Reading, ReadingBatch, ReadingStore, TenantId};

use crate::test_fixture::{add_sensor, limits};
use crate::{QueryEngine, Scope};

/// Values only `bravo`'s rows hold (its tenant id can be in a query's own
/// text, so it may be echoed; these cannot).
const FOREIGN: &[&str] = &["bb", "b1", "777", "777.0"];

struct Fixture {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    engine: QueryEngine,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::open(dir.path()).unwrap());
    for (t, b, s) in [("alpha", "ba", "a1"), ("bravo", "bb", "b1")] {
        add_sensor(&catalog, t, b, s);
    }
    let store = Arc::new(ReadingStore::open(dir.path(), catalog.clone()).unwrap().0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let view = catalog.view();
    let key = |s: &str| view.sensor(s).unwrap().key;
    let rows = |ts0: i64| {
        (0..48)
            .flat_map(|i| {
                [
                    Reading {
                        sensor: key("a1"),
                        ts_ms: ts0 + i * 900_000,
                        value_kwh: 1.0,
                    },
                    Reading {
                        sensor: key("b1"),
                        ts_ms: ts0 + i * 900_000,
                        value_kwh: 777.0,
                    },
                ]
            })
            .collect::<Vec<_>>()
    };
    let day = 1_764_979_200_000;
    runtime
        .block_on(store.append(ReadingBatch {
            readings: rows(day),
        }))
        .unwrap();
    store.flush().unwrap();
    store.catch_up_rollups().unwrap();
    runtime
        .block_on(store.append(ReadingBatch {
            readings: rows(day + 86_400_000),
        }))
        .unwrap();
    drop(view);
    let engine = QueryEngine::new(store, limits());
    Fixture {
        _dir: dir,
        runtime,
        engine,
    }
});

const TABLES: &[&str] = &[
    "readings",
    "sensor_hourly",
    "building_quarterly",
    "building_hourly",
    "building_daily",
    "building_monthly",
    "building_yearly",
    "sensor_gaps",
    "sensors",
    "buildings",
    "tenants",
];

/// Expressions over any table (every one has `tenant_id`), many of which
/// fail or change the answer on `bravo`'s rows.
const EXPRS: &[&str] = &[
    "tenant_id",
    "1/(CASE WHEN tenant_id = 'bravo' THEN 0 ELSE 1 END)",
    "CAST(concat(tenant_id, '|x') AS BIGINT)",
    "length(tenant_id)",
    "upper(tenant_id)",
    "CASE WHEN tenant_id = 'bravo' THEN CAST('x' AS INT) ELSE 1 END",
    "count(*) OVER (PARTITION BY tenant_id)",
    "(SELECT count(*) FROM tenants)",
    "repeat(tenant_id, 3)",
];

const PREDICATES: &[&str] = &[
    "tenant_id = 'bravo'",
    "tenant_id <> 'alpha'",
    "1/(CASE WHEN tenant_id = 'bravo' THEN 0 ELSE 1 END) = 1",
    "CAST(concat(tenant_id, '|', tenant_id) AS BIGINT) = 0",
    "tenant_id IN (SELECT tenant_id FROM tenants)",
    "tenant_id LIKE 'b%'",
    "true",
];

const SOUP: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "(",
    ")",
    ",",
    "*",
    "+",
    "/",
    "=",
    "AND",
    "OR",
    "NOT",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "JOIN",
    "ON",
    "UNION",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "1",
    "0",
    "'bravo'",
    "tenant_id",
    "readings",
    "tenants",
    "sensors",
    "count(*)",
    "EXPLAIN",
    ";",
    "WITH",
    "AS",
    "x",
];

fn query() -> impl Strategy<Value = String> {
    let shaped = (
        prop::sample::select(TABLES),
        prop::sample::select(EXPRS),
        prop::collection::vec(prop::sample::select(PREDICATES), 0..3),
        prop::sample::select(TABLES),
        0..4u8,
    )
        .prop_map(|(t, e, preds, other, shape)| {
            let filter = if preds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", preds.join(" AND "))
            };
            match shape {
                0 => format!("SELECT {e} FROM {t}{filter}"),
                1 => format!(
                    "SELECT x.tenant_id, {e2} FROM {t} x JOIN {other} y ON x.tenant_id = y.tenant_id{filter2}",
                    e2 = e.replace("tenant_id", "x.tenant_id"),
                    filter2 = filter.replace("tenant_id", "y.tenant_id"),
                ),
                2 => format!("WITH c AS (SELECT * FROM {t}{filter}) SELECT tenant_id, {e} FROM c"),
                _ => format!("SELECT tenant_id, {e} FROM {t}{filter} UNION ALL SELECT tenant_id, {e} FROM {other}"),
            }
        });
    let soup = prop::collection::vec(prop::sample::select(SOUP), 1..24).prop_map(|t| t.join(" "));
    prop_oneof![3 => shaped, 1 => soup]
}

/// Every string cell of every column of `batches`.
fn strings(output: &crate::QueryOutput) -> Vec<String> {
    let mut out = Vec::new();
    for b in &output.batches {
        for c in b.columns() {
            let c = arrow::compute::cast(c, &DataType::Utf8).unwrap_or_else(|_| c.clone());
            if let Some(s) = c.as_string_opt::<i32>() {
                out.extend(
                    (0..s.len())
                        .filter(|&i| s.is_valid(i))
                        .map(|i| s.value(i).to_string()),
                );
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn no_query_panics_or_reaches_another_tenant(sql in query()) {
        let f = &*FIXTURE;
        let scope = Scope::tenant(TenantId::parse("alpha").unwrap());
        match f.runtime.block_on(f.engine.sql(&sql, &scope)) {
            Ok(output) => {
                for cell in strings(&output) {
                    prop_assert!(!FOREIGN.contains(&cell.as_str()), "{sql}: {cell}");
                    prop_assert!(!cell.contains("b1") && !cell.contains("bravo|"), "{sql}: {cell}");
                }
            }
            Err(e) => {
                let message = e.to_string();
                for foreign in ["b1", "bb", "777", "bravo|"] {
                    prop_assert!(!message.contains(foreign), "{sql}: {message}");
                }
            }
        }
    }
}
