//! The tenant wall of the tables that read shared storage (`readings` and
//! `sensor_hourly`, whose chunk files hold every tenant's rows).
//!
//! [`ScopedScanExec`] is a leaf of the physical plan. It owns the scan it
//! wraps (Parquet files, memory rows) instead of exposing it as a child, so
//! no optimizer rule can push a user's filter, a dynamic join or TopK
//! filter, or a projection below it, and `EXPLAIN` shows neither file
//! paths nor how many day files exist. The scan inside evaluates only
//! wattline's own expressions (the tenant, time and id bounds built from
//! literals); the caller's rows are selected here, with arrow kernels, and
//! only then does any expression of the query see a row. Statistics are
//! reported as unknown, so no aggregate is answered from other tenants'
//! row counts, and the node has the session's number of partitions
//! whatever the scan inside has (which would tell how many files of all
//! tenants a range holds).

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Scalar, StringArray, StringViewArray};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::eq;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PhysicalExpr,
    PlanProperties,
};
use futures::StreamExt;

/// A scan of shared storage narrowed to one tenant (or, for admins, all),
/// returning only the requested columns.
#[derive(Debug)]
pub(crate) struct ScopedScanExec {
    table: &'static str,
    inner: Arc<dyn ExecutionPlan>,
    /// Index of `tenant_id` in `inner`'s output, with the tenant to keep.
    tenant: Option<(usize, String)>,
    /// Columns of `inner`'s output to return.
    output: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl ScopedScanExec {
    /// Wraps `inner`, whose output has `tenant_id` at `tenant_column`
    /// (when a tenant is given) and the requested columns first, as
    /// `partitions` partitions.
    pub(crate) fn new(
        table: &'static str,
        inner: Arc<dyn ExecutionPlan>,
        tenant: Option<(usize, String)>,
        requested: usize,
        partitions: usize,
    ) -> DfResult<Self> {
        let output: Vec<usize> = (0..requested).collect();
        let schema: SchemaRef = Arc::new(inner.schema().project(&output)?);
        let partitions = partitions.max(1);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            table,
            inner,
            tenant,
            output,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for ScopedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "ScopedScanExec: table={}", self.table)
            }
            DisplayFormatType::TreeRender => write!(f, "table={}", self.table),
        }
    }
}

impl ExecutionPlan for ScopedScanExec {
    fn name(&self) -> &str {
        "ScopedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    /// None: the wrapped scan is not part of the plan tree.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ScopedScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        // Inner partitions p, p + n, p + 2n, ... one after the other.
        let n = self.properties.output_partitioning().partition_count();
        let inner_partitions = self.inner.output_partitioning().partition_count();
        let inputs = (partition..inner_partitions)
            .step_by(n)
            .map(|p| self.inner.execute(p, context.clone()))
            .collect::<DfResult<Vec<_>>>()?;
        let input = futures::stream::iter(inputs).flatten();
        let tenant = self.tenant.clone();
        let output = self.output.clone();
        let schema = self.schema();
        let stream = input.map(move |batch| {
            let batch = batch?;
            let kept = match &tenant {
                Some((column, id)) => {
                    let mask = tenant_mask(batch.column(*column).as_ref(), id)?;
                    filter_record_batch(&batch, &mask)?
                }
                None => batch,
            };
            Ok(kept.project(&output)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// True where `ids` equals `tenant`; nulls never match.
fn tenant_mask(ids: &dyn Array, tenant: &str) -> DfResult<BooleanArray> {
    let mask = match ids.data_type() {
        DataType::Utf8View => eq(&ids, &Scalar::new(StringViewArray::from(vec![tenant])))?,
        DataType::Utf8 => eq(&ids, &Scalar::new(StringArray::from(vec![tenant])))?,
        other => {
            return Err(DataFusionError::Internal(format!(
                "tenant_id has type {other}, expected a string"
            )));
        }
    };
    // A null id compares as null; `filter` drops nulls as false.
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use futures::TryStreamExt;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Float64, false),
            Field::new("tenant_id", DataType::Utf8View, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
                Arc::new(StringViewArray::from(vec![
                    Some("a"),
                    Some("b"),
                    None,
                    Some("a"),
                ])),
            ],
        )
        .unwrap()
    }

    async fn run(tenant: Option<&str>) -> Vec<f64> {
        let b = batch();
        let inner = MemorySourceConfig::try_new_exec(&[vec![b.clone()]], b.schema(), None).unwrap();
        let exec =
            ScopedScanExec::new("t", inner, tenant.map(|t| (1, t.to_string())), 1, 1).unwrap();
        assert_eq!(exec.schema().fields().len(), 1);
        let batches: Vec<RecordBatch> = exec
            .execute(0, Arc::new(TaskContext::default()))
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let v = b.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
                v.values().to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn keeps_only_the_tenants_rows_and_drops_the_added_column() {
        assert_eq!(run(Some("a")).await, vec![1.0, 4.0]);
        assert_eq!(run(Some("zzz")).await, Vec::<f64>::new());
        assert_eq!(run(None).await, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn hides_the_wrapped_scan_from_the_plan_tree() {
        let b = batch();
        let inner = MemorySourceConfig::try_new_exec(&[vec![b.clone()]], b.schema(), None).unwrap();
        let exec = ScopedScanExec::new("readings", inner, Some((1, "a".into())), 2, 2).unwrap();
        assert!(exec.children().is_empty());
        let shown = datafusion::physical_plan::displayable(&exec)
            .indent(true)
            .to_string();
        assert_eq!(shown.trim(), "ScopedScanExec: table=readings");
    }
}
