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
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::{Column, Literal, in_list};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::UnionExec;
use wattline_storage::{
    ChunkFile, SensorNames, day_of, merge_newest_wins, read_chunk, readings_schema, to_record_batch,
};
use wattline_storage::{
    Reading, ReadingStore, SensorKey, Snapshot, TimeRange, reach_ms, spans_overlap,
};

use crate::derived_readings::{DerivedReadingsExec, Layout, Meters, Out};
use crate::filters::ScanBounds;
use crate::scan_sensors::{Wanted, metered, wanted_sensors};
use crate::scope::Scope;
use crate::scoped_scan::ScopedScanExec;

/// Indexes of the table's columns: the stored ones first, as in
/// [`readings_schema`], then the derived ones.
const SENSOR_COLUMN: usize = 0;
const TENANT_COLUMN: usize = 2;
const TS_COLUMN: usize = 3;
const ENERGY_COLUMN: usize = 4;
const VALUE_COLUMN: usize = 5;
const QUALITY_COLUMN: usize = 6;

/// The columns as stored in chunk files and memory, with the three ids as
/// `Utf8View`, which the Parquet reader fills without copying strings and
/// grouping and filtering compare faster.
fn stored_schema() -> SchemaRef {
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

/// The table's schema: the stored columns, `value_kwh` being the interval
/// energy (null where none is known: a register's last reading, a glitch,
/// a quarantined value), then `value` as sent and `quality`.
fn table_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields: Vec<Field> = stored_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[ENERGY_COLUMN] = fields[ENERGY_COLUMN].clone().with_nullable(true);
        fields.push(Field::new("value", DataType::Float64, false));
        fields.push(Field::new("quality", DataType::Utf8View, false));
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// In-memory rows as a batch of the stored schema.
fn memory_batch(rows: &[Reading], names: &SensorNames) -> DfResult<RecordBatch> {
    let batch = to_record_batch(rows, names).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let schema = stored_schema();
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
        let tenant = self.scope.restricted_to();
        let (requested, columns) = scan_columns(&schema, projection, TENANT_COLUMN, tenant);
        let output = Arc::new(schema.project(&columns)?);
        let (wanted, meters) = {
            let view = self.store.catalog().view();
            let wanted = wanted_sensors(&view, &self.scope, &bounds);
            let derived = columns.contains(&ENERGY_COLUMN) || columns.contains(&QUALITY_COLUMN);
            let meters = match derived {
                true => metered(&view, &self.scope, wanted.as_ref()),
                false => BTreeMap::new(),
            };
            (wanted, meters)
        };

        let scanned: Arc<dyn ExecutionPlan> = if meters.is_empty() {
            let (stored, layout) = layout_for(&columns, &[]);
            let input = self.stored_scan(state, &bounds, &Wanted::from(wanted), &stored)?;
            Arc::new(DerivedReadingsExec::as_sent(input, layout, output)?)
        } else {
            let ids: Vec<String> = meters.keys().cloned().collect();
            let keys: HashSet<SensorKey> = meters.values().map(|(k, _)| *k).collect();
            // Interval meters' rows, as they stream.
            let (stored, layout) = layout_for(&columns, &[SENSOR_COLUMN]);
            let wanted = Wanted::except(wanted, keys.clone());
            let input = self.stored_scan(state, &bounds, &wanted, &stored)?;
            let input = only_sensors(input, &ids, true, layout.sensor)?;
            let as_sent = DerivedReadingsExec::as_sent(input, layout, output.clone())?;
            // The others' rows within their reach of the range, sorted
            // and derived per sensor.
            let reach = meters.values().map(|(_, m)| reach_ms(m)).max();
            let mut around = bounds.clone();
            around.range = widened(bounds.range, reach.unwrap_or(0));
            around.sensors = Some(ids.iter().cloned().collect());
            let (stored, layout) = layout_for(&columns, &[SENSOR_COLUMN, TS_COLUMN, ENERGY_COLUMN]);
            let input = self.stored_scan(state, &around, &Wanted::Only(keys), &stored)?;
            let input = only_sensors(input, &ids, false, layout.sensor)?;
            let input = sorted_by_sensor_and_time(input, &layout)?;
            let meters: Meters = meters.into_iter().map(|(id, (_, m))| (id, m)).collect();
            let derived = DerivedReadingsExec::derive(input, layout, Arc::new(meters), output)?;
            UnionExec::try_new(vec![Arc::new(as_sent), Arc::new(derived)])?
        };
        scoped(
            state,
            "readings",
            scanned,
            &columns,
            TENANT_COLUMN,
            tenant,
            requested.len(),
        )
    }
}

impl ReadingsTable {
    /// The `stored` columns of the rows of the sensors `wanted` accepts
    /// within `bounds`, from chunk files and memory.
    fn stored_scan(
        &self,
        state: &dyn Session,
        bounds: &ScanBounds,
        wanted: &Wanted,
        stored: &[usize],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = stored_schema();
        let plan = ScanPlan::build(&self.snapshot, &self.names, wanted, bounds.range)?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !plan.files.is_empty() {
            let files = plan
                .files
                .iter()
                .map(|f| PartitionedFile::new(f.path.to_string_lossy(), f.meta.bytes))
                .collect();
            let predicate = bounds.predicate("ts", self.scope.restricted_to());
            let reader = chunk_reader(state)?;
            inputs.push(parquet_scan(
                state, &schema, files, reader, stored, predicate,
            )?);
        }
        if !plan.memory.is_empty() {
            let batch = memory_batch(&plan.memory, &self.names)?;
            inputs.push(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema.clone(),
                Some(stored.to_vec()),
            )?);
        }
        Ok(if inputs.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(schema.project(stored)?)))
        } else {
            UnionExec::try_new(inputs)?
        })
    }
}

/// The stored columns to read for the table's `columns` (and `also`), and
/// where the derived columns find theirs.
fn layout_for(columns: &[usize], also: &[usize]) -> (Vec<usize>, Layout) {
    let mut stored: Vec<usize> = columns
        .iter()
        .filter_map(|&c| match c {
            VALUE_COLUMN => Some(ENERGY_COLUMN),
            QUALITY_COLUMN => None,
            c => Some(c),
        })
        .chain(also.iter().copied())
        .collect();
    stored.sort_unstable();
    stored.dedup();
    let at = |c: usize| stored.iter().position(|&s| s == c);
    let output = columns
        .iter()
        .map(|&c| match c {
            ENERGY_COLUMN => Out::Energy,
            VALUE_COLUMN => Out::Value,
            QUALITY_COLUMN => Out::Quality,
            c => Out::Input(at(c).expect("every stored column asked for is read")),
        })
        .collect();
    let layout = Layout {
        sensor: at(SENSOR_COLUMN),
        ts: at(TS_COLUMN),
        value: at(ENERGY_COLUMN),
        output,
    };
    (stored, layout)
}

/// `range` with `reach` added on both sides.
fn widened(range: TimeRange, reach: i64) -> TimeRange {
    TimeRange {
        start_ms: range.start_ms.saturating_sub(reach),
        end_ms: range.end_ms.saturating_add(reach),
    }
}

/// The rows of `input` whose sensor (at `at`) is (or, `negated`, is not)
/// one of `ids`.
fn only_sensors(
    input: Arc<dyn ExecutionPlan>,
    ids: &[String],
    negated: bool,
    at: Option<usize>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let at = at.ok_or_else(|| DataFusionError::Internal("sensor_id is not scanned".into()))?;
    let schema = input.schema();
    let sensor = Arc::new(Column::new(schema.field(at).name(), at));
    let list = ids
        .iter()
        .map(|id| Arc::new(Literal::new(ScalarValue::Utf8View(Some(id.clone())))) as _)
        .collect();
    let predicate = in_list(sensor, list, &negated, &schema)?;
    Ok(Arc::new(FilterExec::try_new(predicate, input)?))
}

/// `input` as one partition sorted by sensor and time.
fn sorted_by_sensor_and_time(
    input: Arc<dyn ExecutionPlan>,
    layout: &Layout,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let key = |at: Option<usize>| {
        let at = at.ok_or_else(|| DataFusionError::Internal("sort column not scanned".into()))?;
        let column = Arc::new(Column::new(schema.field(at).name(), at));
        Ok::<_, DataFusionError>(PhysicalSortExpr::new_default(column))
    };
    let ordering = LexOrdering::new([key(layout.sensor)?, key(layout.ts)?])
        .ok_or_else(|| DataFusionError::Internal("empty ordering".into()))?;
    let sorted = SortExec::new(ordering.clone(), input).with_preserve_partitioning(true);
    Ok(Arc::new(SortPreservingMergeExec::new(
        ordering,
        Arc::new(sorted),
    )))
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

/// A Parquet scan of `files`, read through `reader`, pruned and filtered
/// by `predicate`: wattline's own expression (tenant, time and id
/// bounds), never one of the query's.
pub(crate) fn parquet_scan(
    state: &dyn Session,
    schema: &SchemaRef,
    files: Vec<PartitionedFile>,
    reader: Arc<dyn ParquetFileReaderFactory>,
    scan_columns: &[usize],
    predicate: Option<Expr>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut source = ParquetSource::new(schema.clone())
        .with_enable_page_index(true)
        .with_pushdown_filters(true)
        .with_parquet_file_reader_factory(reader);
    if let Some(predicate) = predicate {
        source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
    }
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(file_groups(files, state.config().target_partitions()))
        .with_projection_indices(Some(scan_columns.to_vec()))?
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// Reads chunk files by path, with their parsed footers and page indexes
/// cached across queries (chunk files never change once written).
fn chunk_reader(state: &dyn Session) -> DfResult<Arc<dyn ParquetFileReaderFactory>> {
    let runtime = state.runtime_env();
    let store = runtime.object_store(ObjectStoreUrl::local_filesystem())?;
    let footers = runtime.cache_manager.get_file_metadata_cache();
    Ok(Arc::new(CachedParquetFileReaderFactory::new(
        store, footers,
    )))
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
        wanted: &Wanted,
        range: TimeRange,
    ) -> DfResult<Self> {
        let accept = |k: SensorKey| wanted.accepts(k);
        let mut hot_by_day: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
        if !wanted.is_nothing() {
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
        if wanted.is_nothing() {
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
            names.sort_by_rank(&mut hot);
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

/// Spreads files over `partitions` groups of similar size.
fn file_groups(mut files: Vec<PartitionedFile>, partitions: usize) -> Vec<FileGroup> {
    let n = partitions.clamp(1, files.len().max(1));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    for file in files {
        let g = groups.iter_mut().min_by_key(|(b, _)| *b).expect("n >= 1");
        g.0 += file.object_meta.size;
        g.1.push(file);
    }
    groups
        .into_iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(_, f)| FileGroup::new(f))
        .collect()
}
