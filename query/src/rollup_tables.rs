//! The rollup tables in SQL, scoped like every table: `building_hourly`,
//! `building_daily`, `building_monthly` and `building_yearly` from the
//! in-memory rollups (days, months and years also per m2 of floor area),
//! `sensor_hourly` and `building_quarterly` from their Parquet partitions.

use std::sync::{Arc, Mutex};

use std::collections::{BTreeMap, HashMap};

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::Datelike;
use chrono_tz::Tz;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use wattline_storage::{
    Agg, Resolution, RollupTable, bucket_end, day_start, from_days, rollup_batch,
};
use wattline_storage::{PinnedPartitions, ReadingStore, Recover};

use crate::filters::ScanBounds;
use crate::lazy_table::LazyTable;
use crate::pinned_scan::{PinnedReaderFactory, pinned_file};
use crate::readings_table::{parquet_scan, scan_columns, scoped};
use crate::scope::Scope;

/// A building-level rollup table with the scope's rows, built when scanned,
/// with each bucket's data `coverage`; days and months also in kWh per m2
/// of floor area.
pub(crate) fn building_table(
    store: &Arc<ReadingStore>,
    table: RollupTable,
    scope: &Scope,
) -> Arc<LazyTable> {
    let (store, scope) = (store.clone(), scope.clone());
    let (resolution, per_area) = match table {
        RollupTable::BuildingHourly => (Resolution::Hour, false),
        RollupTable::BuildingDaily => (Resolution::Day, true),
        _ => (Resolution::Month, true),
    };
    let time_column = match resolution {
        Resolution::Hour => "hour",
        Resolution::Day => "day",
        Resolution::Month => "month",
    };
    let schema = building_schema(table, per_area);
    // `table_rows` returns each building's buckets in time order, the
    // buildings in id order.
    LazyTable::sorted(
        schema.clone(),
        &["building_id", time_column],
        move |filters| {
            // Only the rows the filters can keep: a building's week of hours
            // costs that week, not the tenant's whole history.
            let bounds = ScanBounds::from_filters(filters, time_column);
            let at = match resolution {
                Resolution::Hour => bounds.range.start_ms..bounds.range.end_ms,
                _ => days_from(bounds.range.start_ms)..days_from(bounds.range.end_ms),
            };
            let rows =
                store
                    .rollups()
                    .table_rows(table, |t| scope.sees(t), bounds.buildings.as_ref(), at);
            let batch = rollup_batch(table, &rows).map_err(external)?;
            let facts = building_facts(
                &store,
                rows.iter().map(|r| (&*r.building_id, &*r.tenant_id)),
            );
            let coverage = rows.iter().map(|r| {
                let f = facts.get(&*r.building_id)?;
                let start = match resolution {
                    Resolution::Hour => r.at,
                    _ => day_start(f.tz, from_days(r.at)),
                };
                let span = bucket_end(f.tz, resolution, start) - start;
                wattline_storage::coverage(r.readings, f.per_hour, span)
            });
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(Float64Array::from_iter(coverage)));
            if per_area {
                let kwh = rows.iter().map(|r| per_m2(r.kwh, &facts, &r.building_id));
                columns.push(Arc::new(Float64Array::from_iter(kwh)));
            }
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        },
    )
}

/// The first day starting at or after `ms` (days since the epoch).
fn days_from(ms: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    ms.div_euclid(DAY_MS) + i64::from(ms.rem_euclid(DAY_MS) != 0)
}

/// A building table's columns: the rollup file's, `coverage`, and
/// `kwh_per_m2` with `per_area`.
fn building_schema(table: RollupTable, per_area: bool) -> SchemaRef {
    let mut fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .map(|f| (**f).clone())
        .collect();
    fields.push(Field::new("coverage", DataType::Float64, true));
    if per_area {
        fields.push(Field::new("kwh_per_m2", DataType::Float64, true));
    }
    Arc::new(Schema::new(fields))
}

/// `building_yearly`: each building's local calendar years, summed from
/// its months (a year in the building's zone is twelve local months).
pub(crate) fn yearly_table(store: &Arc<ReadingStore>, scope: &Scope) -> Arc<LazyTable> {
    let (store, scope) = (store.clone(), scope.clone());
    LazyTable::new(yearly_schema(), move |filters| {
        let bounds = ScanBounds::from_filters(filters, "year");
        let months = store.rollups().table_rows(
            RollupTable::BuildingMonthly,
            |t| scope.sees(t),
            bounds.buildings.as_ref(),
            i64::MIN..i64::MAX,
        );
        // (building, local year) -> (tenant, the year so far), summed as
        // the rollups sum: peak and cost known only when every month's is.
        let mut years: BTreeMap<(Arc<str>, i32), (Arc<str>, Agg)> = BTreeMap::new();
        for m in &months {
            let key = (m.building_id.clone(), from_days(m.at).year());
            match years.get_mut(&key) {
                Some((_, y)) => y.add(&Agg::from(m)),
                None => {
                    years.insert(key, (m.tenant_id.clone(), Agg::from(m)));
                }
            }
        }
        let facts = building_facts(&store, years.iter().map(|((b, _), (t, _))| (&**b, &**t)));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                years.keys().map(|(b, _)| b.as_ref()),
            )),
            Arc::new(StringArray::from_iter_values(
                years.values().map(|(t, _)| t.as_ref()),
            )),
            Arc::new(Int32Array::from_iter_values(years.keys().map(|(_, y)| *y))),
            Arc::new(Float64Array::from_iter_values(
                years.values().map(|(_, y)| y.kwh),
            )),
            Arc::new(Float64Array::from_iter_values(
                years.values().map(|(_, y)| y.peak_kwh),
            )),
            Arc::new(Int64Array::from_iter_values(
                years.values().map(|(_, y)| y.readings),
            )),
            Arc::new(Float64Array::from_iter(
                years.values().map(|(_, y)| y.peak_kw),
            )),
            Arc::new(Float64Array::from_iter(years.values().map(|(_, y)| y.cost))),
            Arc::new(Float64Array::from_iter(
                years
                    .iter()
                    .map(|((b, _), (_, y))| per_m2(y.kwh, &facts, b)),
            )),
        ];
        RecordBatch::try_new(yearly_schema(), columns).map_err(|e| e.into())
    })
}

fn yearly_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("building_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("year", DataType::Int32, false),
        Field::new("kwh", DataType::Float64, false),
        Field::new("peak_kwh", DataType::Float64, false),
        Field::new("readings", DataType::Int64, false),
        Field::new("peak_kw", DataType::Float64, true),
        Field::new("cost", DataType::Float64, true),
        Field::new("kwh_per_m2", DataType::Float64, true),
    ]))
}

/// What the tables need of a building from the in-memory catalog: its
/// zone, the readings per hour its active sensors should send, and its
/// floor area if it has one.
struct Facts {
    tz: Tz,
    per_hour: f64,
    area: Option<f64>,
}

/// The facts of the rows' buildings, only of the rows' own tenants.
fn building_facts<'a>(
    store: &ReadingStore,
    rows: impl Iterator<Item = (&'a str, &'a str)>,
) -> HashMap<String, Facts> {
    let view = store.catalog().view();
    let mut facts = HashMap::new();
    for (building, tenant) in rows {
        if facts.contains_key(building) {
            continue;
        }
        if let Some(b) = view
            .building(building)
            .filter(|b| b.tenant_id.as_str() == tenant)
        {
            facts.insert(
                building.to_owned(),
                Facts {
                    tz: b.timezone.tz(),
                    per_hour: view.expected_per_hour(building),
                    area: b.floor_area_m2.filter(|a| *a > 0.0),
                },
            );
        }
    }
    facts
}

/// kWh per m2, or null for a building without a floor area.
fn per_m2(kwh: f64, facts: &HashMap<String, Facts>, building: &str) -> Option<f64> {
    facts.get(building).and_then(|f| f.area).map(|a| kwh / a)
}

fn external(e: wattline_storage::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// `sensor_hourly` or `building_quarterly`, read from their partition
/// files (opened when scanned; see `pinned_scan`).
pub(crate) struct PartitionedTable {
    store: Arc<ReadingStore>,
    scope: Scope,
    table: RollupTable,
    /// The files this query's scans of the table read.
    pinned: Mutex<PinnedPartitions>,
}

impl std::fmt::Debug for PartitionedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedTable")
            .field("table", &self.table.name())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl PartitionedTable {
    pub(crate) fn new(store: Arc<ReadingStore>, scope: Scope, table: RollupTable) -> Self {
        Self {
            store,
            scope,
            table,
            pinned: Mutex::default(),
        }
    }

    /// Index of `tenant_id`, and the time column's name.
    fn columns(&self) -> (usize, &'static str) {
        match self.table {
            RollupTable::SensorHourly => (2, "hour"),
            _ => (1, "quarter"),
        }
    }
}

#[async_trait]
impl TableProvider for PartitionedTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let tenant = self.scope.restricted_to();
        let (tenant_column, time) = self.columns();
        let (requested, columns) = scan_columns(&schema, projection, tenant_column, tenant);
        let bounds = ScanBounds::from_filters(filters, time);
        let files = self
            .store
            .rollups()
            .open_partitions(self.table, bounds.range, &mut self.pinned.locked())
            .map_err(external)?;
        let scanned: Arc<dyn ExecutionPlan> = if files.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(schema.project(&columns)?)))
        } else {
            let predicate = bounds.predicate(time, tenant);
            let files = files.into_iter().map(pinned_file).collect();
            let footers = state.runtime_env().cache_manager.get_file_metadata_cache();
            let reader = Arc::new(PinnedReaderFactory::new(footers));
            parquet_scan(state, &schema, files, reader, &columns, predicate)?
        };
        scoped(
            state,
            self.table.name(),
            scanned,
            &columns,
            tenant_column,
            tenant,
            requested.len(),
        )
    }
}
