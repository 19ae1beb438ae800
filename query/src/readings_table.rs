//! The `readings` table: hot memtables and cold chunk files as one table,
//! deduplicated on `(sensor_id, ts)` with the newest value winning.
//!
//! A scan plans, per UTC day the query touches:
//! - a day with one chunk file and no in-memory reading that could
//!   collide with it is read straight from Parquet, with the query's
//!   filters as a pruning predicate (row groups, pages, rows);
//! - a day with several files (late data or corrections awaiting
//!   compaction), or with in-memory readings inside its file's time span,
//!   is merged in memory, newest first;
//! - in-memory readings of other days are served from memory.
//!
//! The tenant restriction is applied here: memory rows are selected from
//! the tenant's sensors only, and the whole scan sits inside a
//! [`ScopedScanExec`], which keeps the tenant's rows before any expression
//! of the query sees one. The query's filters only tell which days,
//! sensors and buildings to read; the Parquet reader evaluates a predicate
//! rebuilt from their literals, never the filters themselves.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use wattline_storage::{
    CatalogView, Reading, ReadingStore, SensorKey, Snapshot, TimeRange, spans_overlap,
};
use wattline_storage::{
    ChunkFile, SensorNames, day_of, merge_newest_wins, read_chunk, readings_schema, to_record_batch,
};

use crate::filters::ScanBounds;
use crate::scope::Scope;
use crate::scoped_scan::ScopedScanExec;

/// Index of `tenant_id` in [`readings_schema`].
const TENANT_COLUMN: usize = 2;

/// The table's schema: the chunk files' columns, with the three ids as
/// `Utf8View`, which the Parquet reader fills without copying strings and
/// grouping and filtering compare faster.
fn table_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let fields: Vec<Field> = readings_schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
                _ => f.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// In-memory rows as a batch of the table's schema.
fn memory_batch(rows: &[Reading], names: &SensorNames) -> DfResult<RecordBatch> {
    let batch = to_record_batch(rows, names).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let schema = table_schema();
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub(crate) struct ReadingsTable {
    store: Arc<ReadingStore>,
    /// Taken when the query's session is built and held as long as it
    /// lives, so chunk files the query reads are not deleted under it.
    snapshot: Snapshot,
    names: Arc<SensorNames>,
    scope: Scope,
}

impl ReadingsTable {
    /// `names` must be built after `snapshot` was taken, so it knows every
    /// sensor the snapshot holds (sensors are never deleted).
    pub(crate) fn new(
        store: Arc<ReadingStore>,
        snapshot: Snapshot,
        names: Arc<SensorNames>,
        scope: Scope,
    ) -> Self {
        Self {
            snapshot,
            store,
            names,
            scope,
        }
    }
}

impl std::fmt::Debug for ReadingsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadingsTable")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for ReadingsTable {
    fn schema(&self) -> SchemaRef {
        table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Used for pruning only; DataFusion re-applies every filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = table_schema();
        let bounds = ScanBounds::from_filters(filters, "ts");
        let wanted = wanted_sensors(&self.store.catalog().view(), &self.scope, &bounds);
        let plan = ScanPlan::build(&self.snapshot, &self.names, wanted.as_ref(), bounds.range)?;

        let tenant = self.scope.restricted_to();
        let (requested, scan_columns) = scan_columns(&schema, projection, TENANT_COLUMN, tenant);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !plan.files.is_empty() {
            let files: Vec<(String, u64)> = plan
                .files
                .iter()
                .map(|f| (f.path.to_string_lossy().to_string(), f.meta.bytes))
                .collect();
            let predicate = bounds.predicate("ts", tenant);
            inputs.push(parquet_scan(
                state,
                &schema,
                &files,
                &scan_columns,
                predicate,
            )?);
        }
        if !plan.memory.is_empty() {
            let batch = memory_batch(&plan.memory, &self.names)?;
            inputs.push(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema.clone(),
                Some(scan_columns.clone()),
            )?);
        }
        let scanned: Arc<dyn ExecutionPlan> = if inputs.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(schema.project(&scan_columns)?)))
        } else {
            UnionExec::try_new(inputs)?
        };
        scoped(
            state,
            "readings",
            scanned,
            &scan_columns,
            TENANT_COLUMN,
            tenant,
            requested.len(),
        )
    }
}

/// Wraps `scanned` (the `scan_columns` of a table whose `tenant_id` is
/// `tenant_column`) in the tenant wall, returning the first `requested`
/// columns.
pub(crate) fn scoped(
    state: &dyn Session,
    table: &'static str,
    scanned: Arc<dyn ExecutionPlan>,
    scan_columns: &[usize],
    tenant_column: usize,
    tenant: Option<&str>,
    requested: usize,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let tenant = match tenant {
        Some(t) => {
            let at = scan_columns
                .iter()
                .position(|&c| c == tenant_column)
                .ok_or_else(|| DataFusionError::Internal("tenant_id is not scanned".into()))?;
            Some((at, t.to_string()))
        }
        None => None,
    };
    Ok(Arc::new(ScopedScanExec::new(
        table,
        scanned,
        tenant,
        requested,
        state.config().target_partitions(),
    )?))
}

/// The requested columns, and those to read: plus `tenant_column` when the
/// rows must be filtered by tenant.
pub(crate) fn scan_columns(
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    tenant_column: usize,
    tenant: Option<&str>,
) -> (Vec<usize>, Vec<usize>) {
    let requested: Vec<usize> = projection
        .cloned()
        .unwrap_or_else(|| (0..schema.fields().len()).collect());
    let mut scan = requested.clone();
    if tenant.is_some() && !scan.contains(&tenant_column) {
        scan.push(tenant_column);
    }
    (requested, scan)
}

/// A Parquet scan of `files` (path, size), pruned and filtered by
/// `predicate`: wattline's own expression (tenant, time and id bounds),
/// never one of the query's.
pub(crate) fn parquet_scan(
    state: &dyn Session,
    schema: &SchemaRef,
    files: &[(String, u64)],
    scan_columns: &[usize],
    predicate: Option<Expr>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    // Parsed footers and page indexes are cached across queries (chunk
    // files never change once written; a rewritten rollup partition has a
    // new size and time, which the cache checks).
    let runtime = state.runtime_env();
    let store = runtime.object_store(ObjectStoreUrl::local_filesystem())?;
    let metadata = runtime.cache_manager.get_file_metadata_cache();
    let mut source = ParquetSource::new(schema.clone())
        .with_enable_page_index(true)
        .with_pushdown_filters(true)
        .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
            store, metadata,
        )));
    if let Some(predicate) = predicate {
        source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
    }
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(file_groups(files, state.config().target_partitions()))
        .with_projection_indices(Some(scan_columns.to_vec()))?
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// The sensors a scan may return: the scope's tenant and the filters'
/// sensors and buildings. `None`: all sensors.
fn wanted_sensors(
    view: &CatalogView<'_>,
    scope: &Scope,
    b: &ScanBounds,
) -> Option<HashSet<SensorKey>> {
    if scope.restricted_to().is_none() && b.sensors.is_none() && b.buildings.is_none() {
        return None;
    }
    let ok = |s: &wattline_storage::Sensor| {
        scope.sees(s.tenant_id.as_str())
            && b.buildings
                .as_ref()
                .is_none_or(|set| set.contains(s.building_id.as_str()))
    };
    let keys = match (&b.sensors, &b.buildings, scope.restricted_to()) {
        (Some(ids), _, _) => ids
            .iter()
            .filter_map(|id| view.sensor(id))
            .filter(|s| ok(s))
            .map(|s| s.key)
            .collect(),
        (None, Some(buildings), _) => buildings
            .iter()
            .flat_map(|b| view.sensors_of(b))
            .filter(|s| ok(s))
            .map(|s| s.key)
            .collect(),
        (None, None, Some(t)) => view
            .buildings_of(t)
            .flat_map(|b| view.sensors_of(b.id.as_str()))
            .map(|s| s.key)
            .collect(),
        (None, None, None) => return None,
    };
    Some(keys)
}

/// What a scan reads: files straight from Parquet, and rows from memory.
struct ScanPlan {
    files: Vec<Arc<ChunkFile>>,
    /// In-memory readings and merged days, in no particular order.
    memory: Vec<Reading>,
}

impl ScanPlan {
    fn build(
        snapshot: &Snapshot,
        names: &SensorNames,
        wanted: Option<&HashSet<SensorKey>>,
        range: TimeRange,
    ) -> DfResult<Self> {
        let accept = |k: SensorKey| wanted.is_none_or(|w| w.contains(&k));
        let mut hot_by_day: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
        if wanted.is_none_or(|w| !w.is_empty()) {
            for r in snapshot.hot_readings(accept, range) {
                hot_by_day.entry(day_of(r.ts_ms)).or_default().push(r);
            }
        }
        let mut files_by_day: BTreeMap<i64, Vec<Arc<ChunkFile>>> = BTreeMap::new();
        for c in snapshot.chunks.iter().cloned() {
            if c.meta.overlaps(range) {
                files_by_day.entry(c.meta.day).or_default().push(c);
            }
        }
        let mut plan = ScanPlan {
            files: Vec::new(),
            memory: Vec::new(),
        };
        if wanted.is_some_and(|w| w.is_empty()) {
            return Ok(plan);
        }
        for (day, files) in files_by_day {
            let hot = hot_by_day.remove(&day).unwrap_or_default();
            if is_clean(&files, &hot) {
                plan.files.extend(files);
                plan.memory.extend(hot);
                continue;
            }
            // Oldest file first (snapshot order), memory last: newest wins.
            let mut sources = Vec::with_capacity(files.len() + 1);
            for f in &files {
                let rows = read_chunk(&f.path, names)
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                sources.push(
                    rows.into_iter()
                        .filter(|r| accept(r.sensor) && range.contains(r.ts_ms))
                        .collect(),
                );
            }
            let mut hot = hot;
            hot.sort_unstable_by_key(|r| (names.rank(r.sensor), r.ts_ms));
            sources.push(hot);
            plan.memory.extend(merge_newest_wins(sources, names));
        }
        plan.memory.extend(hot_by_day.into_values().flatten());
        Ok(plan)
    }
}

/// True when no reading can appear twice among a day's files and its
/// in-memory readings: the files' time spans are disjoint (data that
/// arrived in time order) and no in-memory reading falls inside one.
fn is_clean(files: &[Arc<ChunkFile>], hot: &[Reading]) -> bool {
    !spans_overlap(files)
        && !hot
            .iter()
            .any(|r| files.iter().any(|f| f.meta.spans(r.ts_ms)))
}

/// Spreads files (path, size) over `partitions` groups of similar size.
fn file_groups(files: &[(String, u64)], partitions: usize) -> Vec<FileGroup> {
    let n = partitions.clamp(1, files.len().max(1));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    let mut sorted: Vec<_> = files.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.1));
    for (path, bytes) in sorted {
        let g = groups.iter_mut().min_by_key(|(b, _)| *b).expect("n >= 1");
        g.0 += bytes;
        g.1.push(PartitionedFile::new(path.clone(), *bytes));
    }
    groups
        .into_iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(_, f)| FileGroup::new(f))
        .collect()
}
