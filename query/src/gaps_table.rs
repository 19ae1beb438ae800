//! `sensor_gaps`: the hours each sensor has no reading in, between two
//! hours that have one, from `sensor_hourly` (so tenant-scoped as it is).
//! Planned as a view when a query scans it: filters on `sensor_id` or
//! `building_id` reach the scan below the window function, so asking about
//! one sensor or building reads only its rows. A sensor silent up to now
//! has no closing hour yet: its newest hour is in `sensors` listings and
//! offline alert rules, not here.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

const GAPS: &str = "SELECT sensor_id, building_id, tenant_id, \
     prev_hour + INTERVAL '1 hour' AS gap_start, hour AS gap_end, \
     CAST((date_part('epoch', hour) - date_part('epoch', prev_hour)) / 3600 AS BIGINT) - 1 \
       AS missing_hours \
     FROM (SELECT sensor_id, building_id, tenant_id, hour, \
             lag(hour) OVER (PARTITION BY sensor_id ORDER BY hour) AS prev_hour \
           FROM sensor_hourly) \
     WHERE hour > prev_hour + INTERVAL '1 hour'";

#[derive(Debug)]
pub(crate) struct SensorGapsTable;

#[async_trait]
impl TableProvider for SensorGapsTable {
    fn schema(&self) -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("building_id", DataType::Utf8, false),
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("gap_start", ts.clone(), true),
            Field::new("gap_end", ts, false),
            Field::new("missing_hours", DataType::Int64, true),
        ]))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let session = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("sensor_gaps needs a session".into()))?;
        let plan = session.create_logical_plan(GAPS).await?;
        ViewTable::new(plan, None)
            .scan(state, projection, filters, limit)
            .await
    }
}
