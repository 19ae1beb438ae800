//! The rollup tables in SQL, scoped like every table: `building_hourly`,
//! `building_daily` and `building_monthly` from the in-memory rollups,
//! `sensor_hourly` from its Parquet partitions.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use wattline_storage::ReadingStore;
use wattline_storage::{RollupTable, rollup_batch};

use crate::filters::ScanBounds;
use crate::lazy_table::LazyTable;
use crate::readings_table::{parquet_scan, scan_columns, scoped};
use crate::scope::Scope;

/// A building-level rollup table with the scope's rows, built when scanned.
pub(crate) fn building_table(
    store: &Arc<ReadingStore>,
    table: RollupTable,
    scope: &Scope,
) -> Arc<LazyTable> {
    let (store, scope) = (store.clone(), scope.clone());
    LazyTable::new(table.schema(), move || {
        let rows = store.rollups().table_rows(table, |t| scope.sees(t));
        rollup_batch(table, &rows)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    })
}

/// `sensor_hourly`, read from its partition files (listed when scanned).
pub(crate) struct SensorHourlyTable {
    store: Arc<ReadingStore>,
    scope: Scope,
}

impl std::fmt::Debug for SensorHourlyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorHourlyTable")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Index of `tenant_id` in the `sensor_hourly` schema.
const TENANT_COLUMN: usize = 2;

impl SensorHourlyTable {
    pub(crate) fn new(store: Arc<ReadingStore>, scope: Scope) -> Self {
        Self { store, scope }
    }

    fn files(&self) -> Vec<(String, u64)> {
        self.store
            .rollups()
            .sensor_hourly_files()
            .into_iter()
            .filter_map(|p| {
                let size = std::fs::metadata(&p).ok()?.len();
                Some((p.to_string_lossy().to_string(), size))
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for SensorHourlyTable {
    fn schema(&self) -> SchemaRef {
        RollupTable::SensorHourly.schema()
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
        let (requested, columns) = scan_columns(&schema, projection, TENANT_COLUMN, tenant);
        let files = self.files();
        let scanned: Arc<dyn ExecutionPlan> = if files.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(schema.project(&columns)?)))
        } else {
            let predicate = ScanBounds::from_filters(filters, "hour").predicate("hour", tenant);
            parquet_scan(state, &schema, &files, &columns, predicate)?
        };
        scoped(
            state,
            "sensor_hourly",
            scanned,
            &columns,
            TENANT_COLUMN,
            tenant,
            requested.len(),
        )
    }
}
