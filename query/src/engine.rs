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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::{
    CacheManager, CacheManagerConfig, FileMetadataCache,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{Expr, SessionConfig, SessionContext, col, lit};
use futures::StreamExt;
use tokio::sync::Semaphore;
use wattline_storage::chunk::SensorNames;
use wattline_storage::{ReadingStore, TimeRange};

use crate::catalog_tables;
use crate::error::{QueryError, Result};
use crate::guard::check_read_only;
use crate::readings_table::ReadingsTable;
use crate::rollup_tables::{SensorHourlyTable, building_table};
use crate::scope::Scope;
use wattline_storage::rollup::RollupTable;

/// Limits from the `query.*` settings.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub memory_limit: usize,
    pub max_rows: usize,
    pub max_concurrent: usize,
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
    store: Arc<ReadingStore>,
    limits: QueryLimits,
    permits: Arc<Semaphore>,
    /// Parquet footers and page indexes, shared by every query's runtime.
    metadata_cache: Arc<FileMetadataCache>,
    /// Sensor names, rebuilt when the catalog's version changes.
    names: Mutex<(u64, Arc<SensorNames>)>,
}

impl QueryEngine {
    pub fn new(store: Arc<ReadingStore>, limits: QueryLimits) -> Self {
        let metadata_cache = CacheManager::try_new(&CacheManagerConfig::default())
            .map(|m| m.get_file_metadata_cache())
            .expect("the default cache configuration is valid");
        Self {
            metadata_cache,
            permits: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            store,
            limits,
            names: Mutex::new((u64::MAX, Arc::new(SensorNames::default()))),
        }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    fn names(&self) -> Arc<SensorNames> {
        let catalog = self.store.catalog();
        let mut cached = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let version = catalog.version();
        if cached.0 != version {
            *cached = (
                version,
                Arc::new(SensorNames::from_catalog(&catalog.view())),
            );
        }
        cached.1.clone()
    }

    /// A session holding the scope's tables.
    fn context(&self, scope: &Scope) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_limit, 1.0)
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(self.metadata_cache.clone())),
            )
            .build_arc()?;
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        catalog_tables::register(&ctx, self.store.catalog(), scope)?;
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
        ctx.register_table(
            "sensor_hourly",
            Arc::new(SensorHourlyTable::new(self.store.clone(), scope.clone())),
        )?;
        for table in [
            RollupTable::BuildingHourly,
            RollupTable::BuildingDaily,
            RollupTable::BuildingMonthly,
        ] {
            ctx.register_table(table.name(), building_table(&self.store, table, scope))?;
        }
        Ok(ctx)
    }

    /// Runs one read-only SQL query within `scope`.
    pub async fn sql(&self, sql: &str, scope: &Scope) -> Result<QueryOutput> {
        let ctx = self.context(scope)?;
        let sql = sql.to_owned();
        let max_rows = self.limits.max_rows;
        self.run(async move {
            let plan = ctx.state().create_logical_plan(&sql).await?;
            check_read_only(&plan)?;
            let stream = ctx
                .execute_logical_plan(plan)
                .await?
                .execute_stream()
                .await?;
            collect_capped(stream, max_rows).await
        })
        .await
    }

    /// The readings of one sensor in `range`, at most `limit`, deduplicated
    /// across memory and chunk files. The caller has checked access.
    pub async fn sensor_readings(
        &self,
        sensor_id: &str,
        range: TimeRange,
        limit: usize,
    ) -> Result<SensorReadings> {
        let ctx = self.context(&Scope::all())?;
        let mut filter = col("sensor_id").eq(lit(sensor_id));
        if range.start_ms != i64::MIN {
            filter = filter.and(col("ts").gt_eq(ts_literal(range.start_ms)));
        }
        if range.end_ms != i64::MAX {
            filter = filter.and(col("ts").lt(ts_literal(range.end_ms)));
        }
        let output = self
            .run(async move {
                let df = ctx
                    .table("readings")
                    .await?
                    .filter(filter)?
                    .select(vec![col("ts"), col("value_kwh")])?
                    .sort(vec![col("ts").sort(true, false)])?
                    .limit(0, Some(limit.saturating_add(1)))?;
                collect_capped(df.execute_stream().await?, limit).await
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

    /// Runs `work` on a runtime of its own under the concurrency limit and
    /// the timeout; a query past the timeout is aborted.
    async fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let started = Instant::now();
        let timeout = self.limits.timeout;
        let permit = tokio::time::timeout(timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| QueryError::Timeout(timeout))?
            .map_err(|_| QueryError::Internal("query limiter closed".into()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("query")
            .enable_time()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting a query runtime: {e}")))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        let left = timeout.saturating_sub(started.elapsed());
        let outcome = tokio::time::timeout(left, rx).await;
        if outcome.is_err() {
            task.abort();
            metrics::counter!("wattline_query_timeouts_total").increment(1);
        }
        // Dropping a runtime waits for its tasks to stop; a runaway stops
        // only when its operators next yield. Wait on a thread of its own,
        // holding the permit until then.
        std::thread::Builder::new()
            .name("query-reaper".into())
            .spawn(move || {
                drop(runtime);
                drop(permit);
            })
            .map_err(|e| QueryError::Internal(format!("starting a query reaper: {e}")))?;
        match outcome {
            Ok(Ok(result)) => {
                metrics::histogram!("wattline_query_seconds")
                    .record(started.elapsed().as_secs_f64());
                result
            }
            Ok(Err(_)) => Err(QueryError::Internal(
                "the query task ended without an answer".into(),
            )),
            Err(_) => Err(QueryError::Timeout(timeout)),
        }
    }
}

fn ts_literal(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

/// Collects at most `max_rows` rows; `truncated` when more were there.
async fn collect_capped(
    mut stream: SendableRecordBatchStream,
    max_rows: usize,
) -> Result<QueryOutput> {
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
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
