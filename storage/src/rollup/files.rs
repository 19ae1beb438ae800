//! Rollup tables on disk, for durability and for outside readers:
//!
//! ```text
//! chunks/rollups/sensor_hourly/day=YYYY-MM-DD/part.parquet     (UTC day of `hour`)
//! chunks/rollups/building_hourly/day=YYYY-MM-DD/part.parquet
//! chunks/rollups/building_quarterly/day=YYYY-MM-DD/part.parquet  (UTC day of `quarter`)
//! chunks/rollups/building_daily/month=YYYY-MM/part.parquet     (local month)
//! chunks/rollups/building_monthly/part.parquet
//! ```
//!
//! A partition is rewritten whole (temporary name, fsync, rename over the
//! old file, directory fsync), so a reader sees the old or the new file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::tree::sync_dir;

use super::pinned::PartitionVersions;

/// One rollup row: who, when (UTC ms of the bucket start, or days since
/// the epoch for daily and monthly), and the aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub sensor_id: Option<Arc<str>>,
    pub building_id: Arc<str>,
    pub tenant_id: Arc<str>,
    pub at: i64,
    pub kwh: f64,
    pub peak_kwh: f64,
    pub readings: i64,
    /// Peak demand of days and months; a quarter's average power.
    pub peak_kw: Option<f64>,
    /// Cost of days and months.
    pub cost: Option<f64>,
    /// Readings quarantined (not in the quarterly table; older files: 0).
    pub quarantined: i64,
}

impl RollupRow {
    /// A building-level row (no sensor).
    pub(crate) fn building(
        building: &Arc<str>,
        tenant: &Arc<str>,
        at: i64,
        a: &super::rollups::Agg,
    ) -> Self {
        Self {
            sensor_id: None,
            building_id: building.clone(),
            tenant_id: tenant.clone(),
            at,
            kwh: a.kwh,
            peak_kwh: a.peak_kwh,
            readings: a.readings,
            peak_kw: a.peak_kw,
            cost: a.cost,
            quarantined: a.quarantined,
        }
    }
}

/// The rollup tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupTable {
    SensorHourly,
    BuildingHourly,
    /// 15-minute building totals, for peak demand.
    BuildingQuarterly,
    BuildingDaily,
    BuildingMonthly,
}

impl RollupTable {
    pub fn name(self) -> &'static str {
        match self {
            Self::SensorHourly => "sensor_hourly",
            Self::BuildingHourly => "building_hourly",
            Self::BuildingQuarterly => "building_quarterly",
            Self::BuildingDaily => "building_daily",
            Self::BuildingMonthly => "building_monthly",
        }
    }

    fn time_column(self) -> (&'static str, DataType) {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        match self {
            Self::SensorHourly | Self::BuildingHourly => ("hour", ts),
            Self::BuildingQuarterly => ("quarter", ts),
            Self::BuildingDaily => ("day", DataType::Date32),
            Self::BuildingMonthly => ("month", DataType::Date32),
        }
    }

    /// The table's columns, as in SQL.
    pub fn schema(self) -> SchemaRef {
        let mut fields = Vec::new();
        if self == Self::SensorHourly {
            fields.push(Field::new("sensor_id", DataType::Utf8, false));
        }
        fields.push(Field::new("building_id", DataType::Utf8, false));
        fields.push(Field::new("tenant_id", DataType::Utf8, false));
        let (name, ty) = self.time_column();
        fields.push(Field::new(name, ty, false));
        fields.push(Field::new("kwh", DataType::Float64, false));
        fields.push(Field::new("peak_kwh", DataType::Float64, false));
        fields.push(Field::new("readings", DataType::Int64, false));
        if let Some(name) = self.demand_column() {
            fields.push(Field::new(name, DataType::Float64, true));
        }
        if self.has_cost() {
            fields.push(Field::new("cost", DataType::Float64, true));
        }
        if self.has_quarantined() {
            fields.push(Field::new("quarantined", DataType::Int64, true));
        }
        Arc::new(Schema::new(fields))
    }

    /// The column of [`RollupRow::peak_kw`], if the table has one: peak
    /// demand of days and months, the average power of a quarter (files
    /// written before it was kept have no such column: read as unknown).
    fn demand_column(self) -> Option<&'static str> {
        match self {
            Self::BuildingDaily | Self::BuildingMonthly => Some("peak_kw"),
            Self::BuildingQuarterly => Some("kw"),
            _ => None,
        }
    }

    /// Whether rows count quarantined readings.
    fn has_quarantined(self) -> bool {
        self != Self::BuildingQuarterly
    }

    /// Whether rows carry a cost (older files: unknown).
    fn has_cost(self) -> bool {
        matches!(self, Self::BuildingDaily | Self::BuildingMonthly)
    }

    /// Whether the table is partitioned by UTC day.
    fn by_day(self) -> bool {
        matches!(
            self,
            Self::SensorHourly | Self::BuildingHourly | Self::BuildingQuarterly
        )
    }

    /// The table's folder under the data directory.
    pub fn dir(self, data_dir: &Path) -> PathBuf {
        data_dir.join("chunks").join("rollups").join(self.name())
    }
}

/// Builds the table's batch from rows.
pub fn to_batch(table: RollupTable, rows: &[RollupRow]) -> Result<RecordBatch> {
    let strings = |f: &dyn Fn(&RollupRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let mut columns: Vec<ArrayRef> = Vec::new();
    if table == RollupTable::SensorHourly {
        columns.push(strings(&|r| r.sensor_id.as_deref().unwrap_or("")));
    }
    columns.push(strings(&|r| &r.building_id));
    columns.push(strings(&|r| &r.tenant_id));
    columns.push(match table {
        t if t.by_day() => Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.at))
                .with_timezone("UTC"),
        ),
        _ => Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| r.at as i32),
        )),
    });
    columns.push(Arc::new(Float64Array::from_iter_values(
        rows.iter().map(|r| r.kwh),
    )));
    columns.push(Arc::new(Float64Array::from_iter_values(
        rows.iter().map(|r| r.peak_kwh),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.readings),
    )));
    if table.demand_column().is_some() {
        columns.push(Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.peak_kw),
        )));
    }
    if table.has_cost() {
        columns.push(Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.cost),
        )));
    }
    if table.has_quarantined() {
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.quarantined),
        )));
    }
    RecordBatch::try_new(table.schema(), columns)
        .map_err(|e| Error::InvalidArgument(format!("building a {} batch: {e}", table.name())))
}

/// Replaces the partition file `path` with `rows` (or deletes it when
/// there are none), in `versions`' order with readers.
pub(crate) fn write_partition(
    versions: &PartitionVersions,
    table: RollupTable,
    path: &Path,
    rows: &[RollupRow],
) -> Result<()> {
    let dir = path.parent().expect("partition files live in a folder");
    if rows.is_empty() {
        match versions.remove(path) {
            Ok(()) => sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(".tmp-part.parquet");
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", tmp.display()), e);
    let batch = to_batch(table, rows)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .build();
    let out = File::create(&tmp).map_err(|e| io("creating", e))?;
    crate::faults::inject(crate::faults::FailPoint::RollupWrite).map_err(|e| io("writing", e))?;
    let bad = |e: parquet::errors::ParquetError| Error::parquet_write(&tmp, e);
    let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(props)).map_err(bad)?;
    writer.write(&batch).map_err(bad)?;
    let out = writer.into_inner().map_err(bad)?;
    out.sync_all().map_err(|e| io("fsync of", e))?;
    drop(out);
    versions
        .replace(&tmp, path)
        .map_err(|e| io("renaming", e))?;
    crate::faults::inject(crate::faults::FailPoint::RollupDirSync)
        .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))?;
    sync_dir(dir)
}

/// Leaves the partition file `path` as it is, since its rows did not
/// change, but fsyncs its folder: an earlier attempt of the same step may
/// have renamed the file into place and failed before the folder was
/// synced, and the step's marks are deleted once it succeeds.
pub(crate) fn keep_partition(path: &Path) -> Result<()> {
    let dir = path.parent().expect("partition files live in a folder");
    if !dir.exists() {
        return Ok(());
    }
    crate::faults::inject(crate::faults::FailPoint::RollupKeepSync)
        .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))?;
    sync_dir(dir)
}

/// Reads a partition file back (missing file: no rows).
pub(crate) fn read_partition(table: RollupTable, path: &Path) -> Result<Vec<RollupRow>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let bad = |reason: String| Error::ChunkUnreadable {
        path: path.to_owned(),
        reason,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| bad(e.to_string()))?;
    let mut rows = Vec::new();
    let offset = usize::from(table == RollupTable::SensorHourly);
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let col = |i: usize| batch.column(i).clone();
        let s = |i: usize| -> Result<StringArray> {
            col(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| bad(format!("column {i} is not text")))
        };
        let f = |i: usize| -> Result<Float64Array> {
            col(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .ok_or_else(|| bad(format!("column {i} is not a double")))
        };
        let sensors = if offset == 1 { Some(s(0)?) } else { None };
        let (buildings, tenants) = (s(offset)?, s(offset + 1)?);
        let at: Vec<i64> = match table {
            t if t.by_day() => col(offset + 2)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(|| bad("hour is not a timestamp".into()))?
                .values()
                .to_vec(),
            _ => col(offset + 2)
                .as_any()
                .downcast_ref::<Date32Array>()
                .ok_or_else(|| bad("day is not a date".into()))?
                .values()
                .iter()
                .map(|&d| i64::from(d))
                .collect(),
        };
        let (kwh, peak) = (f(offset + 3)?, f(offset + 4)?);
        let readings = col(offset + 5)
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| bad("readings is not an integer".into()))?;
        let optional = |name: Option<&str>| -> Result<Option<Float64Array>> {
            match name.map(|c| batch.schema().index_of(c)) {
                Some(Ok(i)) => Ok(Some(f(i)?)),
                _ => Ok(None),
            }
        };
        let demand = optional(table.demand_column())?;
        let cost = optional(table.has_cost().then_some("cost"))?;
        let quarantined = match batch.schema().index_of("quarantined") {
            Ok(i) if table.has_quarantined() => {
                col(i).as_any().downcast_ref::<Int64Array>().cloned()
            }
            _ => None,
        };
        let value = |a: &Option<Float64Array>, i: usize| {
            a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i))
        };
        let (mut sensor, mut building, mut tenant) = (None, None, None);
        for (i, &at) in at.iter().enumerate() {
            rows.push(RollupRow {
                sensor_id: sensors.as_ref().map(|s| shared(&mut sensor, s.value(i))),
                building_id: shared(&mut building, buildings.value(i)),
                tenant_id: shared(&mut tenant, tenants.value(i)),
                at,
                kwh: kwh.value(i),
                peak_kwh: peak.value(i),
                readings: readings.value(i),
                peak_kw: value(&demand, i),
                cost: value(&cost, i),
                quarantined: quarantined
                    .as_ref()
                    .filter(|q| q.is_valid(i))
                    .map_or(0, |q| q.value(i)),
            });
        }
    }
    Ok(rows)
}

/// `text` as an `Arc`, the same one as `last` when the text repeats (rows
/// are sorted by id, so one allocation per id rather than per row).
fn shared(last: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match last {
        Some(a) if **a == *text => a.clone(),
        _ => last.insert(Arc::from(text)).clone(),
    }
}

/// Merges two lists each sorted by `order` into one sorted list: rows
/// kept from a partition file (written sorted) and the few recomputed.
/// Kept rows out of order (a file from elsewhere) are sorted first.
pub(crate) fn merge_sorted(
    mut kept: Vec<RollupRow>,
    mut fresh: Vec<RollupRow>,
    order: impl Fn(&RollupRow, &RollupRow) -> std::cmp::Ordering,
) -> Vec<RollupRow> {
    if !kept.is_sorted_by(|a, b| order(a, b).is_le()) {
        kept.sort_by(&order);
    }
    fresh.sort_by(&order);
    let mut out = Vec::with_capacity(kept.len() + fresh.len());
    let mut fresh = fresh.into_iter().peekable();
    for row in kept {
        while let Some(f) = fresh.next_if(|f| order(f, &row).is_lt()) {
            out.push(f);
        }
        out.push(row);
    }
    out.extend(fresh);
    out
}

/// Every partition file of a table, with its partition folder name.
pub(crate) fn partitions(table: RollupTable, data_dir: &Path) -> Vec<PathBuf> {
    let root = table.dir(data_dir);
    if table == RollupTable::BuildingMonthly {
        let p = root.join("part.parquet");
        return if p.exists() { vec![p] } else { vec![] };
    }
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dirs
        .flatten()
        .map(|d| d.path().join("part.parquet"))
        .filter(|p| p.exists())
        .collect();
    out.sort();
    out
}
