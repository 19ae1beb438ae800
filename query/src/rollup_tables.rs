//! The rollup tables in SQL, scoped like every table: `building_hourly`,
//! `building_daily` and `building_monthly` from the in-memory rollups,
//! `sensor_hourly` from its Parquet partitions.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use wattline_storage::ReadingStore;
use wattline_storage::rollup::{RollupTable, files::to_batch};

use crate::readings_table::{parquet_scan, restrict_to_tenant, scan_columns};
use crate::scope::Scope;

/// A building-level rollup table with the scope's rows.
pub(crate) fn building_table(
    store: &ReadingStore,
    table: RollupTable,
    scope: &Scope,
) -> DfResult<Arc<MemTable>> {
    let rows = store.rollups().table_rows(table, |t| scope.sees(t));
    let batch = to_batch(table, &rows)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    Ok(Arc::new(MemTable::try_new(
        table.schema(),
        vec![vec![batch]],
    )?))
}

/// `sensor_hourly`, read from its partition files.
#[derive(Debug)]
pub(crate) struct SensorHourlyTable {
    files: Vec<(String, u64)>,
    scope: Scope,
}

/// Index of `tenant_id` in the `sensor_hourly` schema.
const TENANT_COLUMN: usize = 2;

impl SensorHourlyTable {
    pub(crate) fn new(store: &ReadingStore, scope: Scope) -> Self {
        let files = store
            .rollups()
            .sensor_hourly_files()
            .into_iter()
            .filter_map(|p| {
                let size = std::fs::metadata(&p).ok()?.len();
                Some((p.to_string_lossy().to_string(), size))
            })
            .collect();
        Self { files, scope }
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
        let scanned: Arc<dyn ExecutionPlan> = if self.files.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(schema.project(&columns)?)))
        } else {
            parquet_scan(state, &schema, &self.files, &columns, filters, tenant)?
        };
        restrict_to_tenant(state, scanned, tenant, requested.len())
    }
}
