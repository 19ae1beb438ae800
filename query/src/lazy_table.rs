//! A table whose rows are built only when a query scans it. Every session
//! registers all tables; most queries read one or two, so the others must
//! cost nothing. The builder sees the query's filters, to build only the
//! rows they can keep (DataFusion applies them again).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

type Build = Box<dyn Fn(&[Expr]) -> DfResult<RecordBatch> + Send + Sync>;

pub(crate) struct LazyTable {
    schema: SchemaRef,
    build: Build,
}

impl LazyTable {
    pub(crate) fn new(
        schema: SchemaRef,
        build: impl Fn(&[Expr]) -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            schema,
            build: Box::new(build),
        })
    }
}

impl std::fmt::Debug for LazyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTable")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for LazyTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = (self.build)(filters)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
