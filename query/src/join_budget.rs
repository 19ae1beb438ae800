//! A bound on the rows one join may produce (`query.max_join_rows`).
//!
//! The memory pool does not see a join's output while it streams into an
//! aggregate, and a nested-loop or cross join makes billions of rows from
//! a few thousand: one tenant's `SELECT count(*) FROM readings a, readings b`
//! would otherwise hold a query slot and two cores until its timeout, and
//! longer where the join does not yield. The optimizer rule added last to
//! every session wraps each join in [`JoinBudgetExec`], which counts the
//! rows passing through and ends the query with an error past the bound.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use futures::StreamExt;

/// Wraps every join of a plan in a [`JoinBudgetExec`].
#[derive(Debug)]
pub(crate) struct BoundJoinOutput {
    pub(crate) max_rows: usize,
}

fn is_join(plan: &dyn ExecutionPlan) -> bool {
    matches!(
        plan.name(),
        "HashJoinExec"
            | "NestedLoopJoinExec"
            | "CrossJoinExec"
            | "SortMergeJoinExec"
            | "SymmetricHashJoinExec"
            | "PiecewiseMergeJoinExec"
    )
}

impl PhysicalOptimizerRule for BoundJoinOutput {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if is_join(node.as_ref()) {
                let bounded: Arc<dyn ExecutionPlan> =
                    Arc::new(JoinBudgetExec::new(node, self.max_rows));
                Ok(Transformed::yes(bounded))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "bound_join_output"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through, failing once more than `max_rows` rows
/// (over all partitions) have passed.
#[derive(Debug)]
pub(crate) struct JoinBudgetExec {
    input: Arc<dyn ExecutionPlan>,
    max_rows: usize,
    seen: Arc<AtomicUsize>,
}

impl JoinBudgetExec {
    fn new(input: Arc<dyn ExecutionPlan>, max_rows: usize) -> Self {
        Self {
            input,
            max_rows,
            seen: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl DisplayAs for JoinBudgetExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "JoinBudgetExec: max_rows={}", self.max_rows)
    }
}

impl ExecutionPlan for JoinBudgetExec {
    fn name(&self) -> &str {
        "JoinBudgetExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(JoinBudgetExec::new(input, self.max_rows))),
            _ => Err(DataFusionError::Internal(
                "JoinBudgetExec takes one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (seen, max_rows) = (self.seen.clone(), self.max_rows);
        let stream = input.map(move |batch| {
            let batch = batch?;
            let total = seen.fetch_add(batch.num_rows(), Ordering::Relaxed) + batch.num_rows();
            if total > max_rows {
                return Err(DataFusionError::Execution(format!(
                    "a join produced more than {max_rows} rows (query.max_join_rows); \
                     add join conditions or filters"
                )));
            }
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream,
        )))
    }
}
