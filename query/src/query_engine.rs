//! [`QueryEngine`]: runs SQL and raw-reading lookups over a tenant's view.
//!
//! Each query gets its own DataFusion `SessionContext` with the scope's
//! table providers and a memory pool of `query.memory_limit` bytes, and
//! runs on a small runtime of its own, apart from the HTTP runtime and from
//! other queries. A query past `query.timeout` is answered 408 and
//! aborted. Some DataFusion operators (a nested-loop join producing rows
//! from little input) do not yield, so an abort can only take effect when
//! they do: such a runaway keeps its runtime, and its concurrency permit,
//! until it ends, on a reaper thread. Other queries keep running on their
//! own runtimes, and at most `query.max_concurrent` queries, runaways
//! included, use CPU at once; the others wait (the wait counts against
//! their timeout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wattline_storage::Recover;

use crate::query_runtimes::QueryRuntimes;

use arrow::array::{Array, Float64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::{
    CacheManager, CacheManagerConfig, FileMetadataCache,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
use futures::StreamExt;
use tokio::sync::Semaphore;
use wattline_storage::SensorNames;
use wattline_storage::{AlertStore, ReadingStore, TenantId, TimeRange};

use crate::alert_tables;
use crate::bounded_functions::{self, CallShare};
use crate::catalog_tables;
use crate::complexity::check_sql_complexity;
use crate::error::{QueryError, Result};
use crate::filters::ts_literal;
use crate::gaps_table::SensorGapsTable;
use crate::guard::check_read_only;
use crate::join_budget::BoundJoinOutput;
use crate::readings_table::ReadingsTable;
use crate::rollup_tables::{PartitionedTable, building_table, yearly_table};
use crate::scope::Scope;

/// Which clients a session serves: the HTTP API, or PostgreSQL's (which
/// also read `information_schema` and call `version()` and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Http,
    Postgres,
}
use wattline_storage::RollupTable;

/// Limits from the `query.*` settings.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub memory_limit: usize,
    pub max_rows: usize,
    pub max_concurrent: usize,
    /// Queries one tenant may run at once (admins count as one tenant);
    /// `None`: half of `max_concurrent`, rounded up.
    pub max_concurrent_per_tenant: Option<usize>,
    /// Rows one join may produce before the query is stopped.
    pub max_join_rows: usize,
}

impl QueryLimits {
    fn tenant_share(&self) -> usize {
        self.max_concurrent_per_tenant
            .unwrap_or(self.max_concurrent.div_ceil(2))
            .clamp(1, self.max_concurrent.max(1))
    }
}

/// A query's answer, cut at `query.max_rows`.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

/// A sensor's readings in time order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SensorReadings {
    /// `(ts_ms, value_kwh)`, strictly increasing in `ts_ms`.
    pub points: Vec<(i64, f64)>,
    pub truncated: bool,
}

pub struct QueryEngine {
    pub(crate) store: Arc<ReadingStore>,
    pub(crate) limits: QueryLimits,
    permits: Arc<Semaphore>,
    /// Each tenant's share of `permits`.
    tenant_permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Runtimes started ahead for the next queries.
    runtimes: QueryRuntimes,
    /// Parquet footers and page indexes, shared by every query's runtime.
    metadata_cache: Arc<FileMetadataCache>,
    /// Sensor names, rebuilt when the catalog's version changes.
    names: Mutex<(u64, Arc<SensorNames>)>,
    /// Rules and events for `alert_rules` and `alert_events`.
    alerts: Option<Arc<AlertStore>>,
}

impl QueryEngine {
    pub fn new(store: Arc<ReadingStore>, limits: QueryLimits) -> Self {
        let metadata_cache = CacheManager::try_new(&CacheManagerConfig::default())
            .map(|m| m.get_file_metadata_cache())
            .expect("the default cache configuration is valid");
        Self {
            metadata_cache,
            permits: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            runtimes: QueryRuntimes::new(),
            tenant_permits: Mutex::new(HashMap::new()),
            store,
            limits,
            names: Mutex::new((u64::MAX, Arc::new(SensorNames::default()))),
            alerts: None,
        }
    }

    /// Serves `alert_rules` and `alert_events` from `alerts`.
    pub fn with_alerts(mut self, alerts: Arc<AlertStore>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    fn names(&self) -> Arc<SensorNames> {
        let catalog = self.store.catalog();
        let mut cached = self.names.locked();
        let version = catalog.version();
        if cached.0 != version {
            *cached = (
                version,
                Arc::new(SensorNames::from_catalog(&catalog.view())),
            );
        }
        cached.1.clone()
    }

    /// A session holding the scope's tables, and the share of its bounded
    /// string functions (see [`bounded_functions`]).
    pub(crate) fn context(&self, scope: &Scope) -> Result<(SessionContext, CallShare)> {
        self.context_for(scope, Dialect::Http)
    }

    /// [`Self::context`] as `dialect`'s clients expect it.
    pub(crate) fn context_for(
        &self,
        scope: &Scope,
        dialect: Dialect,
    ) -> Result<(SessionContext, CallShare)> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_limit, 1.0)
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(self.metadata_cache.clone())),
            )
            .build_arc()?;
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(dialect == Dialect::Postgres)
            // What PostgreSQL clients see as the database (HTTP answers
            // keep DataFusion's name, as they always had).
            .with_default_catalog_and_schema(
                if dialect == Dialect::Postgres {
                    crate::postgres::DATABASE
                } else {
                    "datafusion"
                },
                "public",
            )
            .set_bool("datafusion.execution.enable_recursive_ctes", false)
            // A join's build side up to this size is collected once and
            // probed by every partition, so the big side (readings) streams
            // without being repartitioned; the catalog of 50,000 sensors is
            // a few MiB. The memory counts against the query's limit.
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                64 << 20,
            )
            // Column references keep their place in the query, so an
            // unknown column's error says where it is.
            .set_bool("datafusion.sql_parser.collect_spans", true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(BoundJoinOutput {
                max_rows: self.limits.max_join_rows,
            }))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let share = CallShare::new(self.limits.memory_limit / 4);
        bounded_functions::register(&ctx, &share);
        if dialect == Dialect::Postgres {
            crate::postgres::register_functions(&ctx, scope);
            crate::pg_catalog::register(&ctx)?;
        }
        catalog_tables::register(&ctx, self.store.catalog(), scope)?;
        if let Some(alerts) = &self.alerts {
            alert_tables::register(&ctx, alerts, scope)?;
        }
        let snapshot = self.store.snapshot();
        ctx.register_table(
            "readings",
            Arc::new(ReadingsTable::new(
                self.store.clone(),
                snapshot,
                self.names(),
                scope.clone(),
            )),
        )?;
        for table in [RollupTable::SensorHourly, RollupTable::BuildingQuarterly] {
            ctx.register_table(
                table.name(),
                Arc::new(PartitionedTable::new(
                    self.store.clone(),
                    scope.clone(),
                    table,
                )),
            )?;
        }
        for table in [
            RollupTable::BuildingHourly,
            RollupTable::BuildingDaily,
            RollupTable::BuildingMonthly,
        ] {
            ctx.register_table(table.name(), building_table(&self.store, table, scope))?;
        }
        ctx.register_table("building_yearly", yearly_table(&self.store, scope))?;
        ctx.register_table("sensor_gaps", Arc::new(SensorGapsTable))?;
        Ok((ctx, share))
    }

    /// Runs one read-only SQL query within `scope`.
    pub async fn sql(&self, sql: &str, scope: &Scope) -> Result<QueryOutput> {
        self.run_sql(sql, scope, Dialect::Http, None).await
    }

    /// Plans `sql` in a fresh session (so it reads the newest data), checks
    /// it is one read-only query, binds `params` if given, and runs it.
    pub(crate) async fn run_sql(
        &self,
        sql: &str,
        scope: &Scope,
        dialect: Dialect,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput> {
        let (ctx, share, plan) = self.planner(sql, scope, dialect)?;
        let max_rows = self.limits.max_rows;
        let max_bytes = self.answer_bytes();
        self.run(scope, async move {
            let mut plan = plan.await?;
            if let Some(params) = params {
                plan = plan.with_param_values(params)?;
            }
            share.fit_to(&plan)?;
            let stream = ctx
                .execute_logical_plan(plan)
                .await?
                .execute_stream()
                .await?;
            collect_capped(stream, max_rows, max_bytes).await
        })
        .await
    }

    /// Only plans `sql` (for a client that asks what a statement takes and
    /// returns before running it).
    pub(crate) async fn plan_sql(
        &self,
        sql: &str,
        scope: &Scope,
        dialect: Dialect,
    ) -> Result<LogicalPlan> {
        let (_ctx, _share, plan) = self.planner(sql, scope, dialect)?;
        self.run(scope, plan).await
    }

    /// The session for `sql` and the future that plans it there, checked
    /// read-only; the caller awaits it within [`Self::run`].
    #[allow(clippy::type_complexity)]
    fn planner(
        &self,
        sql: &str,
        scope: &Scope,
        dialect: Dialect,
    ) -> Result<(
        SessionContext,
        CallShare,
        impl std::future::Future<Output = Result<LogicalPlan>> + Send + 'static,
    )> {
        check_sql_complexity(sql)?;
        let (ctx, share) = self.context_for(scope, dialect)?;
        let end = end_position(sql);
        let sql = sql.to_owned();
        let state = ctx.state();
        let plan = async move {
            let parser_dialect = state.config().options().sql_parser.dialect;
            let mut statement = state
                .sql_to_statement(&sql, &parser_dialect)
                .map_err(|e| at_end_if_unplaced(e.into(), &end))?;
            if dialect == Dialect::Postgres {
                crate::pg_rewrite::rewrite(&mut statement)?;
            }
            let plan = state
                .statement_to_plan(statement)
                .await
                .map_err(|e| at_end_if_unplaced(e.into(), &end))?;
            check_read_only(&plan, dialect == Dialect::Postgres)?;
            Ok(plan)
        };
        Ok((ctx, share, plan))
    }

    /// The readings of one sensor of `tenant` in `range`, at most `limit`,
    /// deduplicated across memory and chunk files. The caller has checked
    /// access; the query runs in the tenant's scope and takes its slots.
    pub async fn sensor_readings(
        &self,
        sensor_id: &str,
        tenant: &TenantId,
        range: TimeRange,
        limit: usize,
    ) -> Result<SensorReadings> {
        let scope = Scope::tenant(tenant.clone());
        let (ctx, _) = self.context(&scope)?;
        let mut filter = col("sensor_id").eq(lit(sensor_id));
        if range.start_ms != i64::MIN {
            filter = filter.and(col("ts").gt_eq(ts_literal(range.start_ms)));
        }
        if range.end_ms != i64::MAX {
            filter = filter.and(col("ts").lt(ts_literal(range.end_ms)));
        }
        let max_bytes = self.answer_bytes();
        let output = self
            .run(&scope, async move {
                let df = ctx
                    .table("readings")
                    .await?
                    .filter(filter)?
                    // As sent: a register's totals, a power meter's kW.
                    .select(vec![col("ts"), col("value")])?
                    .sort(vec![col("ts").sort(true, false)])?
                    .limit(0, Some(limit.saturating_add(1)))?;
                collect_capped(df.execute_stream().await?, limit, max_bytes).await
            })
            .await?;
        let mut points = Vec::new();
        for b in &output.batches {
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>();
            let v = b.column(1).as_any().downcast_ref::<Float64Array>();
            let (Some(ts), Some(v)) = (ts, v) else {
                return Err(QueryError::Internal(
                    "readings have an unexpected schema".into(),
                ));
            };
            points.extend((0..b.num_rows()).map(|i| (ts.value(i), v.value(i))));
        }
        Ok(SensorReadings {
            points,
            truncated: output.truncated,
        })
    }

    /// Runs `work` on a runtime of its own under the concurrency limits
    /// (the tenant's share, then the appliance's) and the timeout; a query
    /// past the timeout is aborted. When the caller stops waiting (the
    /// client went away), the [`crate::query_runtimes::QueryRun`] guard
    /// aborts the work and keeps both slots until the runtime has stopped;
    /// a query that answered hands its runtime back
    /// ([`crate::query_runtimes`]).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        scope: &Scope,
        work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let started = Instant::now();
        let timeout = self.limits.timeout;
        let tenant_permits = self.tenant_permits(scope);
        let slots = async {
            let tenant = tenant_permits.acquire_owned().await;
            let global = self.permits.clone().acquire_owned().await;
            tenant.and_then(|t| global.map(|g| (t, g)))
        };
        let permits = tokio::time::timeout(timeout, slots)
            .await
            .map_err(|_| QueryError::Timeout(timeout))?
            .map_err(|_| QueryError::Internal("query limiter closed".into()))?;
        let runtime = self.runtimes.take()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        let mut run = self.runtimes.run(runtime, permits, task.abort_handle());
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx).await {
            Ok(Ok(result)) => {
                run.answered();
                metrics::histogram!("wattline_query_seconds")
                    .record(started.elapsed().as_secs_f64());
                result
            }
            Ok(Err(_)) => Err(QueryError::Internal(
                "the query task ended without an answer".into(),
            )),
            Err(_) => {
                metrics::counter!("wattline_query_timeouts_total").increment(1);
                Err(QueryError::Timeout(timeout))
            }
        }
    }

    /// The most memory an answer may take before it is encoded.
    pub(crate) fn answer_bytes(&self) -> usize {
        self.limits.memory_limit / 4
    }

    /// The semaphore of the scope's tenant (admins share one).
    fn tenant_permits(&self, scope: &Scope) -> Arc<Semaphore> {
        let owner = scope.restricted_to().unwrap_or("").to_string();
        let mut map = self.tenant_permits.locked();
        map.entry(owner)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.tenant_share())))
            .clone()
    }
}

/// `Line: L, Column: C` of the end of `sql` (1-based, columns in
/// characters), as the parser names positions.
fn end_position(sql: &str) -> String {
    let line = sql.matches('\n').count() + 1;
    let last = sql.rsplit('\n').next().unwrap_or("");
    format!("Line: {line}, Column: {}", last.chars().count() + 1)
}

/// A syntax error found at the end of the input carries no position from
/// the parser; it gets the end's, like every other syntax error has its own.
fn at_end_if_unplaced(err: QueryError, end: &str) -> QueryError {
    match err {
        QueryError::InvalidSql(m) if m.contains("EOF") && !m.contains("Line:") => {
            QueryError::InvalidSql(format!("{m} at {end}"))
        }
        other => other,
    }
}

/// Collects at most `max_rows` rows; `truncated` when more were there.
/// The answer may take at most `max_bytes` in memory: converting and
/// encoding it for the client takes about three times as much again.
pub(crate) async fn collect_capped(
    mut stream: SendableRecordBatchStream,
    max_rows: usize,
    max_bytes: usize,
) -> Result<QueryOutput> {
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        // Only the rows kept count (a slice shares its parent's buffers).
        let kept = batch.slice(0, batch.num_rows().min(max_rows - rows));
        bytes = bytes.saturating_add(
            kept.columns()
                .iter()
                .map(|c| c.to_data().get_slice_memory_size().unwrap_or(usize::MAX))
                .fold(0usize, usize::saturating_add),
        );
        if bytes > max_bytes {
            return Err(QueryError::MemoryLimit(format!(
                "the answer takes more than {max_bytes} bytes (a quarter of query.memory_limit, \
                 leaving room to encode it); select fewer rows or columns"
            )));
        }
        if rows == max_rows {
            truncated = true;
            break;
        }
        let take = batch.num_rows().min(max_rows - rows);
        rows += take;
        if take < batch.num_rows() {
            batches.push(batch.slice(0, take));
            truncated = true;
            break;
        }
        batches.push(batch);
    }
    Ok(QueryOutput {
        schema,
        batches,
        truncated,
    })
}
