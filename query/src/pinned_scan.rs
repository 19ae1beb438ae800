//! Parquet reads of rollup partitions through the handles opened when the
//! query was planned ([`PinnedPartition`]), never by path: a rollup step
//! may rename a new version over a file between planning and reading.
//! The footer cache checks a file's size and modification time; a
//! partition's version number stands in for the time, so a footer is only
//! ever used with the version it was read from (and a partition's newer
//! version replaces its entry instead of crowding out others).

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::{CachedParquetMetaData, ParquetFileMetrics};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use datafusion::object_store::ObjectMeta;
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use futures::future::{BoxFuture, FutureExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use wattline_storage::PinnedPartition;

/// The file DataFusion scans for `partition`: named by its version, with
/// the open handle attached.
pub(crate) fn pinned_file(partition: PinnedPartition) -> PartitionedFile {
    let mut file = PartitionedFile::new(partition.path.to_string_lossy(), partition.size);
    let version = i64::try_from(partition.version).unwrap_or(i64::MAX);
    file.object_meta.last_modified = DateTime::from_timestamp_nanos(version);
    file.with_extension(partition)
}

/// Readers of [`pinned_file`]s.
#[derive(Debug)]
pub(crate) struct PinnedReaderFactory {
    footers: Arc<FileMetadataCache>,
}

impl PinnedReaderFactory {
    pub(crate) fn new(footers: Arc<FileMetadataCache>) -> Self {
        Self { footers }
    }
}

impl ParquetFileReaderFactory for PinnedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let pinned = file
            .extension::<PinnedPartition>()
            .cloned()
            .ok_or_else(|| {
                DataFusionError::Internal("a rollup partition was scanned without its file".into())
            })?;
        let bytes_scanned =
            ParquetFileMetrics::new(partition_index, file.object_meta.location.as_ref(), metrics)
                .bytes_scanned;
        Ok(Box::new(PinnedReader {
            file: Pinned(pinned.file, pinned.size),
            meta: file.object_meta,
            footers: self.footers.clone(),
            bytes_scanned,
        }))
    }
}

struct PinnedReader {
    file: Pinned,
    meta: ObjectMeta,
    footers: Arc<FileMetadataCache>,
    bytes_scanned: Count,
}

impl AsyncFileReader for PinnedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.bytes_scanned.add((range.end - range.start) as usize);
        let file = self.file.clone();
        blocking(move || file.range(range)).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let key = &self.meta.location;
            if let Some(entry) = self.footers.get(key)
                && entry.is_valid_for(&self.meta)
                && let Some(cached) = entry
                    .file_metadata
                    .as_any()
                    .downcast_ref::<CachedParquetMetaData>()
            {
                return Ok(cached.parquet_metadata().clone());
            }
            let file = self.file.clone();
            let parsed = Arc::new(
                blocking(move || {
                    ParquetMetaDataReader::new()
                        .with_page_index_policy(PageIndexPolicy::Optional)
                        .parse_and_finish(&file)
                })
                .await?,
            );
            self.footers.put(
                key,
                CachedFileMetadataEntry::new(
                    self.meta.clone(),
                    Arc::new(CachedParquetMetaData::new(parsed.clone())),
                ),
            );
            Ok(parsed)
        }
        .boxed()
    }
}

/// Runs file reads off the query's async threads.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> parquet::errors::Result<T> + Send + 'static,
) -> parquet::errors::Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| ParquetError::External(Box::new(e)))?
}

/// An open file of known size, read at offsets (handles are shared).
#[derive(Clone)]
struct Pinned(Arc<File>, u64);

impl Pinned {
    /// Bytes `range` of the file; a range past its end (a damaged
    /// footer's) is an error, not an allocation of its length.
    fn range(&self, range: Range<u64>) -> parquet::errors::Result<Bytes> {
        if range.start > range.end || range.end > self.1 {
            return Err(ParquetError::General(format!(
                "bytes {range:?} asked of a file of {} bytes",
                self.1
            )));
        }
        let mut buf = vec![0; (range.end - range.start) as usize];
        self.0
            .read_exact_at(&mut buf, range.start)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(buf.into())
    }
}

impl Length for Pinned {
    fn len(&self) -> u64 {
        self.1
    }
}

impl ChunkReader for Pinned {
    type T = ReadFrom;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ReadFrom> {
        Ok(ReadFrom {
            file: self.0.clone(),
            at: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.range(start..start.saturating_add(length as u64))
    }
}

/// Reads an open file onward from an offset.
struct ReadFrom {
    file: Arc<File>,
    at: u64,
}

impl Read for ReadFrom {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_past_the_end_are_errors_not_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = Pinned(Arc::new(File::open(&path).unwrap()), 10);
        assert_eq!(&file.range(2..5).unwrap()[..], b"234");
        assert_eq!(&file.get_bytes(8, 2).unwrap()[..], b"89");
        assert!(file.range(0..1 << 50).is_err());
        assert!(file.range(5..11).is_err());
        assert!(file.get_bytes(9, usize::MAX).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 6..5;
        assert!(file.range(backwards).is_err());
        let mut rest = String::new();
        file.get_read(7).unwrap().read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "789");
    }
}
