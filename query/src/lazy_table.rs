//! A table whose rows are built only when a query scans it. Every session
//! registers all tables; most queries read one or two, so the others must
//! cost nothing. The builder sees the query's filters, to build only the
//! rows they can keep (DataFusion applies them again). A builder whose
//! rows come sorted says so, and a query ordered that way skips its sort.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;

type Build = Box<dyn Fn(&[Expr]) -> DfResult<RecordBatch> + Send + Sync>;

pub(crate) struct LazyTable {
    schema: SchemaRef,
    build: Build,
    /// The columns the built rows are sorted by, ascending, if any.
    sorted_by: Vec<&'static str>,
}

impl LazyTable {
    pub(crate) fn new(
        schema: SchemaRef,
        build: impl Fn(&[Expr]) -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::sorted(schema, &[], build)
    }

    /// A table whose `build` returns rows sorted ascending by the columns
    /// `sorted_by` (nulls last), which DataFusion then relies on.
    pub(crate) fn sorted(
        schema: SchemaRef,
        sorted_by: &[&'static str],
        build: impl Fn(&[Expr]) -> DfResult<RecordBatch> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            schema,
            build: Box::new(build),
            sorted_by: sorted_by.to_vec(),
        })
    }

    fn ordering(&self) -> DfResult<Option<LexOrdering>> {
        let keys = self
            .sorted_by
            .iter()
            .map(|name| {
                let column = Column::new_with_schema(name, &self.schema)?;
                let ascending = SortOptions {
                    descending: false,
                    nulls_first: false,
                };
                Ok(PhysicalSortExpr::new(Arc::new(column), ascending))
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(LexOrdering::new(keys))
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
        let mut source =
            MemorySourceConfig::try_new(&[vec![batch]], self.schema.clone(), projection.cloned())?;
        if let Some(ordering) = self.ordering()? {
            source = source.try_with_sort_information(vec![ordering])?;
        }
        Ok(DataSourceExec::from_data_source(source))
    }
}
