//! Writing and reading one chunk file.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::names::SensorNames;
use super::{ChunkMeta, day_of};
use crate::error::{Error, Result};
use crate::reading::Reading;

/// Rows per row group: small enough that a one-building query skips most
/// groups of a day's file, large enough to compress well.
const ROW_GROUP_ROWS: usize = 256 * 1024;
/// Rows per data page, the granularity of the page index.
const PAGE_ROWS: usize = 16 * 1024;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("building_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value_kwh", DataType::Float64, false),
    ]))
});

/// The columns of the `readings` table, as stored in chunks.
pub fn readings_schema() -> SchemaRef {
    SCHEMA.clone()
}

fn writer_properties() -> WriterProperties {
    let zstd = Compression::ZSTD(ZstdLevel::try_new(6).expect("valid zstd level"));
    WriterProperties::builder()
        .set_compression(zstd)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        // Sorted meter timestamps are near-constant steps: delta coding
        // turns them into almost nothing.
        .set_column_dictionary_enabled(ColumnPath::from("ts"), false)
        .set_column_encoding(ColumnPath::from("ts"), Encoding::DELTA_BINARY_PACKED)
        // Float bytes split into planes compress far better under zstd.
        .set_column_dictionary_enabled(ColumnPath::from("value_kwh"), false)
        .set_column_encoding(ColumnPath::from("value_kwh"), Encoding::BYTE_STREAM_SPLIT)
        .build()
}

/// Builds a `readings` batch from rows; sensors `names` does not know are
/// an error (the catalog never forgets a sensor).
pub fn to_record_batch(rows: &[Reading], names: &SensorNames) -> Result<RecordBatch> {
    let mut sensor = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
    let mut building = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
    let mut tenant = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
    for r in rows {
        let ids = names.ids(r.sensor).ok_or_else(|| {
            Error::InvalidArgument(format!("sensor key {} is not in the catalog", r.sensor.0))
        })?;
        sensor.append_value(&ids.sensor_id);
        building.append_value(&ids.building_id);
        tenant.append_value(&ids.tenant_id);
    }
    let ts = TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts_ms))
        .with_timezone("UTC");
    let value = Float64Array::from_iter_values(rows.iter().map(|r| r.value_kwh));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(sensor.finish()),
        Arc::new(building.finish()),
        Arc::new(tenant.finish()),
        Arc::new(ts),
        Arc::new(value),
    ];
    RecordBatch::try_new(readings_schema(), columns)
        .map_err(|e| Error::InvalidArgument(format!("building a readings batch: {e}")))
}

/// Writes `rows` (one day, sorted by `(rank, ts)`, no duplicates) as chunk
/// `id`: temporary name, fsync, rename, directory fsync. Returns its
/// manifest entry; the caller commits it.
pub fn write_chunk(
    data_dir: &Path,
    id: u64,
    precedence: u64,
    day: i64,
    rows: &[Reading],
    names: &SensorNames,
) -> Result<ChunkMeta> {
    debug_assert!(rows.iter().all(|r| day_of(r.ts_ms) == day));
    let file = ChunkMeta::relative_path(id, day);
    let path = data_dir.join(&file);
    let dir = path.parent().expect("chunk paths have a folder");
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(".tmp-{id:020}.parquet"));
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", tmp.display()), e);

    let batch = to_record_batch(rows, names)?;
    // A retired file's last reader may remove an emptied day folder just
    // after it was created here: create it again once.
    let out = File::create(&tmp)
        .or_else(|e| {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e);
            }
            std::fs::create_dir_all(dir)?;
            File::create(&tmp)
        })
        .map_err(|e| io("creating", e))?;
    let mut writer = ArrowWriter::try_new(out, readings_schema(), Some(writer_properties()))
        .map_err(|e| parquet_error(&tmp, e))?;
    writer.write(&batch).map_err(|e| parquet_error(&tmp, e))?;
    let out = writer.into_inner().map_err(|e| parquet_error(&tmp, e))?;
    // (The rename below cannot lose the folder: it holds the temp file.)
    out.sync_all().map_err(|e| io("fsync of", e))?;
    let bytes = out.metadata().map_err(|e| io("stat of", e))?.len();
    drop(out);
    std::fs::rename(&tmp, &path).map_err(|e| io("renaming", e))?;
    sync_dir(dir)?;
    Ok(ChunkMeta {
        id,
        precedence,
        day,
        file,
        rows: rows.len() as u64,
        bytes,
        min_ts_ms: rows.iter().map(|r| r.ts_ms).min().unwrap_or(0),
        max_ts_ms: rows.iter().map(|r| r.ts_ms).max().unwrap_or(0),
    })
}

/// Reads a whole chunk back as readings, in file order.
pub fn read_chunk(path: &Path, names: &SensorNames) -> Result<Vec<Reading>> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| parquet_error(path, e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::ChunkUnreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::ChunkUnreadable {
                    path: path.to_owned(),
                    reason: format!("no column {name}"),
                })
        };
        let (sensor, ts, value) = (column("sensor_id")?, column("ts")?, column("value_kwh")?);
        let bad = |what: &str| Error::ChunkUnreadable {
            path: path.to_owned(),
            reason: format!("column {what} has an unexpected type"),
        };
        let sensor = sensor
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| bad("sensor_id"))?;
        let ts = ts
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| bad("ts"))?;
        let value = value
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| bad("value_kwh"))?;
        rows.reserve(batch.num_rows());
        for i in 0..batch.num_rows() {
            if sensor.is_null(i) {
                return Err(bad("sensor_id"));
            }
            let key = names
                .key(sensor.value(i))
                .ok_or_else(|| Error::ChunkUnreadable {
                    path: path.to_owned(),
                    reason: format!("sensor {:?} is not in the catalog", sensor.value(i)),
                })?;
            rows.push(Reading {
                sensor: key,
                ts_ms: ts.value(i),
                value_kwh: value.value(i),
            });
        }
    }
    Ok(rows)
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::ChunkUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// fsyncs a directory, making a rename or unlink in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))
}
