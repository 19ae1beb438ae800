//! One Delta table of the fleet, as this site sees and changes it.
//!
//! Commits go through delta-rs's commit builder with its own retries off:
//! when another site committed first (the create-only write of the next
//! log entry lost), the table state is brought up to date and the same
//! change committed again after a jittered pause. Other sites never touch
//! this site's files, so the change itself stays valid. The site's
//! transaction markers, followed through the entries each refresh reads
//! (see `markers`), tell whether an earlier attempt landed after all (its
//! answer lost) and whether another data directory committed for the site.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use bytes::Bytes;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake_core::kernel::{
    Action, Add, MetadataExt, Remove, StructField, StructType, Transaction,
};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::config::FleetConfig;
use crate::datasets::{Dataset, Unit};
use crate::error::{Error, Result};
use crate::markers::{MarkerIds, Markers};
use crate::s3::Bucket;
pub use crate::site_file::SiteFile;

/// Attempts of one commit before giving up until the next round: enough
/// for a herd of sites committing at the same moment (measured with 100
/// in `benches/fleet.rs`).
pub const COMMIT_ATTEMPTS: u32 = 40;

/// What a commit was computed from: the live files of `site` in `months`.
/// If they changed by the time the commit is retried (another writer of
/// this site's partitions, such as compaction, came first), the commit is
/// abandoned with [`Error::Stale`] and computed again.
#[derive(Debug, Clone)]
pub struct Guard {
    pub site: String,
    pub months: BTreeSet<String>,
    pub files: BTreeSet<String>,
}

pub struct FleetTable {
    pub dataset: Dataset,
    site: String,
    /// The site's transaction markers' ids and, once read, their values.
    ids: MarkerIds,
    markers: Option<Markers>,
    /// This data directory's feed id, once it publishes ([`Self::publish_as`]),
    /// and the other directory's it may take the site over from.
    feed: Option<u64>,
    take_over: Option<u64>,
    table: DeltaTable,
    files: Arc<dyn ObjectStore>,
}

impl FleetTable {
    /// Opens the table, creating it (protocol reader 1 / writer 2, no
    /// table features) when no site has yet.
    pub async fn open(bucket: &Bucket, config: &FleetConfig, dataset: Dataset) -> Result<Self> {
        let (files, url) = bucket.table(&config.table_path(dataset.name()))?;
        let log_store: LogStoreRef = default_logstore(
            files.clone(),
            bucket.store.clone(),
            &url,
            &StorageConfig::default(),
        );
        let mut table = DeltaTable::new(log_store.clone());
        match table.load().await {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) => {
                let created = CreateBuilder::new()
                    .with_log_store(log_store.clone())
                    .with_table_name(dataset.name())
                    .with_columns(dataset.delta_columns())
                    .with_partition_columns(Dataset::partition_columns())
                    .with_save_mode(SaveMode::Ignore)
                    .with_commit_properties(CommitProperties::default().with_max_retries(0))
                    .await;
                table = match created {
                    Ok(t) => t,
                    // Another site created it first: use theirs.
                    Err(e) => {
                        let mut t = DeltaTable::new(log_store);
                        if t.load().await.is_err() {
                            return Err(e.into());
                        }
                        t
                    }
                };
            }
            Err(e) => return Err(e.into()),
        }
        let mut opened = FleetTable {
            dataset,
            site: config.site.clone(),
            ids: MarkerIds::of_site(&config.site),
            markers: None,
            feed: None,
            take_over: config.take_over,
            table,
            files,
        };
        opened.add_new_columns().await?;
        Ok(opened)
    }

    /// Adds the columns this version writes and the table lacks (created
    /// by an older version): only ever new nullable columns, which
    /// readers see as null in older files. Older appliances go on
    /// writing files without them.
    async fn add_new_columns(&mut self) -> Result<()> {
        let state = self.table.snapshot()?;
        let schema = state.schema();
        let missing: Vec<StructField> = self
            .dataset
            .delta_columns()
            .into_iter()
            .filter(|c| schema.field(c.name()).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if let Some(c) = missing.iter().find(|c| !c.is_nullable()) {
            return Err(Error::Config(format!(
                "table {} lacks column {}, which cannot be added as it is not nullable",
                self.dataset.name(),
                c.name()
            )));
        }
        let fields: Vec<StructField> = schema.fields().chain(&missing).cloned().collect();
        let schema = StructType::try_new(fields).map_err(DeltaTableError::from)?;
        let metadata = state
            .metadata()
            .clone()
            .with_schema(&schema)
            .map_err(DeltaTableError::from)?;
        tracing::info!(
            table = self.dataset.name(),
            columns = ?missing.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "fleet: adding new columns"
        );
        let operation = DeltaOperation::AddColumn { fields: missing };
        self.commit(vec![Action::Metadata(metadata)], None, operation, None)
            .await?;
        Ok(())
    }

    /// Reads the log entries committed since the last look.
    pub async fn refresh(&mut self) -> Result<()> {
        self.table.update_state().await?;
        self.markers = Markers::follow(self.markers, &self.table, &self.ids).await?;
        Ok(())
    }

    /// The markers as of the last refresh (read from the log the first
    /// time).
    async fn markers(&mut self) -> Result<Option<Markers>> {
        if self.markers.is_none() {
            self.markers = Markers::follow(None, &self.table, &self.ids).await?;
        }
        Ok(self.markers)
    }

    /// The last change sequence this site committed to the table.
    pub async fn published_seq(&mut self) -> Result<Option<u64>> {
        Ok(self.markers().await?.and_then(|m| m.sequence))
    }

    /// Marks this table's commits as made from the data directory whose
    /// change feed is `feed`.
    pub fn publish_as(&mut self, feed: u64) {
        self.feed = Some(feed);
    }

    /// The feed id of the data directory that last published this site.
    async fn owner(&mut self) -> Result<Option<u64>> {
        Ok(self.markers().await?.and_then(|m| m.feed))
    }

    /// Whether another data directory than this one (and than the one
    /// `fleet.take_over` names) published the site last: this one must
    /// not publish (its sequences and files would mix with the other's).
    pub async fn check_owner(&mut self) -> Result<()> {
        let Some(mine) = self.feed else {
            return Ok(());
        };
        match self.owner().await? {
            Some(owner) if owner != mine && Some(owner) != self.take_over => {
                Err(Error::SiteTaken {
                    site: self.site.clone(),
                    owner,
                    mine,
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether the site is being taken over from the directory
    /// `fleet.take_over` names (it published last).
    pub async fn taking_over(&mut self) -> Result<bool> {
        let owner = self.owner().await?;
        Ok(owner.is_some() && owner == self.take_over && owner != self.feed)
    }

    /// Every site's data files (`site = None`) or one site's.
    pub fn files(&self, site: Option<&str>) -> Result<Vec<SiteFile>> {
        let state = self.table.snapshot()?;
        let mut out = Vec::new();
        for file in state.log_data().iter() {
            let parts = file.partition_values_map();
            let of = |k: &str| parts.get(k).cloned().flatten().unwrap_or_default();
            let file_site = of("site");
            if site.is_some_and(|s| s != file_site) {
                continue;
            }
            let path = file.path().to_string();
            let Some(key) = Unit::key_of_file(&path) else {
                continue;
            };
            out.push(SiteFile {
                site: file_site,
                month: of("month"),
                key: key.to_string(),
                size: file.size(),
                path,
            });
        }
        out.sort();
        Ok(out)
    }

    /// This site's files, by the unit (or compacted month) they hold.
    pub fn site_files(&self) -> Result<BTreeMap<String, Vec<SiteFile>>> {
        let mut out: BTreeMap<String, Vec<SiteFile>> = BTreeMap::new();
        for f in self.files(Some(&self.site))? {
            out.entry(f.key.clone()).or_default().push(f);
        }
        Ok(out)
    }

    /// The guard of a commit that changes `months` of this site.
    pub fn guard(&self, site: &str, months: BTreeSet<String>) -> Result<Guard> {
        let files = self
            .files(Some(site))?
            .into_iter()
            .filter(|f| months.contains(&f.month))
            .map(|f| f.path)
            .collect();
        Ok(Guard {
            site: site.to_string(),
            months,
            files,
        })
    }

    /// Writes `batch` as a new file of `unit` (zstd Parquet) and returns
    /// the action that adds it; nothing refers to the file until a commit
    /// carries that action.
    pub async fn upload(&self, unit: &Unit, seq: u64, batch: &RecordBatch) -> Result<Add> {
        self.upload_as(&self.site, unit, &format!("{seq:020}"), batch, true)
            .await
    }

    /// Writes `batch` as a new file of `site`'s `unit`, `tag` in its name.
    pub async fn upload_as(
        &self,
        site: &str,
        unit: &Unit,
        tag: &str,
        batch: &RecordBatch,
        data_change: bool,
    ) -> Result<Add> {
        let owned = batch.clone();
        let bytes = tokio::task::spawn_blocking(move || encode(&owned))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let now = chrono::Utc::now();
        let name = format!(
            "site={site}/month={}/{}--{tag}-{:x}.zstd.parquet",
            unit.month,
            unit.key,
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let size = bytes.len() as i64;
        self.files
            .put(&Path::from(name.as_str()), bytes.into())
            .await?;
        Ok(Add {
            path: name,
            partition_values: HashMap::from([
                ("site".to_string(), Some(site.to_string())),
                ("month".to_string(), Some(unit.month.clone())),
            ]),
            size,
            modification_time: now.timestamp_millis(),
            data_change,
            stats: Some(serde_json::json!({ "numRecords": batch.num_rows() }).to_string()),
            ..Default::default()
        })
    }

    /// Merges `files` (of one site and month) into one new file named as
    /// the month's (from the first day any of them holds, so that a trim
    /// is not done again), streamed a batch at a time (a month of a large
    /// site does not fit in memory), and returns the action adding it,
    /// marked as no change of data; `None` if the files hold no row.
    pub async fn merge(&self, site: &str, month: &str, files: &[SiteFile]) -> Result<Option<Add>> {
        let month_start = crate::datasets::parse_day(&format!("{month}-01"))?;
        let mut first = i64::MAX;
        for f in files {
            first = first.min(f.first_day()?);
        }
        let tag = match first {
            day if day <= month_start || day == i64::MAX => "compacted".to_string(),
            day => format!("from-{}", crate::datasets::day_key(day)),
        };
        self.rewrite(site, month, files, &tag, None).await
    }

    /// Rewrites a compacted month's `files` into one without the rows of
    /// the UTC days before `from_day` (retention dropped them), its name
    /// saying where it starts ([`SiteFile::first_day`]); `None` when no
    /// row is left.
    pub async fn trim(
        &self,
        site: &str,
        month: &str,
        files: &[SiteFile],
        from_day: i64,
    ) -> Result<Option<Add>> {
        let tag = format!("from-{}", crate::datasets::day_key(from_day));
        self.rewrite(site, month, files, &tag, Some(from_day)).await
    }

    /// [`Self::merge`] and [`Self::trim`]: the file is only created once
    /// a row is kept (appliances cannot delete an empty one).
    async fn rewrite(
        &self,
        site: &str,
        month: &str,
        files: &[SiteFile],
        tag: &str,
        from_day: Option<i64>,
    ) -> Result<Option<Add>> {
        let now = chrono::Utc::now();
        let name = format!(
            "site={site}/month={month}/{month}--{tag}-{:x}.zstd.parquet",
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let path = Path::from(name.as_str());
        let schema = self.data_schema()?;
        let mut writer = None;
        let mut rows = 0usize;
        for file in files {
            for batch in self.batches(file).await? {
                let mut batch = batch?;
                if let Some(day) = from_day {
                    let from_ms = day * wattline_storage::DAY_MS;
                    batch = self.dataset.rows_between(&batch, from_ms, i64::MAX)?;
                }
                if batch.num_rows() == 0 {
                    continue;
                }
                let writer = match &mut writer {
                    Some(w) => w,
                    None => {
                        let upload = object_store::buffered::BufWriter::new(
                            self.files.clone(),
                            path.clone(),
                        );
                        writer.insert(AsyncArrowWriter::try_new(
                            upload,
                            schema.clone(),
                            Some(properties()?),
                        )?)
                    }
                };
                rows += batch.num_rows();
                writer.write(&batch).await?;
            }
        }
        let Some(writer) = writer else {
            return Ok(None);
        };
        writer.close().await?;
        let size = self.files.head(&path).await?.size as i64;
        Ok(Some(Add {
            path: name,
            partition_values: HashMap::from([
                ("site".to_string(), Some(site.to_string())),
                ("month".to_string(), Some(month.to_string())),
            ]),
            size,
            modification_time: now.timestamp_millis(),
            // Compaction changes no row; a trim removes some.
            data_change: from_day.is_some(),
            stats: Some(serde_json::json!({ "numRecords": rows }).to_string()),
            ..Default::default()
        }))
    }

    /// The columns of the table's data files as rewritten here: this
    /// version's, then those the table has and this version does not know
    /// (a newer appliance added them), so that rewriting files (compaction,
    /// republishing a compacted month) keeps what newer versions wrote.
    pub fn data_schema(&self) -> Result<SchemaRef> {
        let ours = self.dataset.file_schema();
        let mut fields: Vec<FieldRef> = ours.fields().iter().cloned().collect();
        for column in self.table.snapshot()?.schema().fields() {
            let name = column.name().as_str();
            if ours.field_with_name(name).is_ok() || Dataset::partition_columns().contains(&name) {
                continue;
            }
            let field: Field = column.try_into_arrow()?;
            fields.push(Arc::new(field.with_nullable(true)));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Reads one data file of the table, in [`Self::data_schema`].
    pub async fn read(&self, file: &SiteFile) -> Result<RecordBatch> {
        let batches = self.batches(file).await?.collect::<Result<Vec<_>>>()?;
        Ok(arrow::compute::concat_batches(
            &self.data_schema()?,
            &batches,
        )?)
    }

    /// One data file of the table, downloaded whole (compressed) and
    /// decoded a batch at a time, in [`Self::data_schema`].
    async fn batches(
        &self,
        file: &SiteFile,
    ) -> Result<impl Iterator<Item = Result<RecordBatch>> + Send + use<>> {
        let bytes = self
            .files
            .get(&Path::from(file.path.as_str()))
            .await?
            .bytes()
            .await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        let schema = self.data_schema()?;
        Ok(reader.map(move |b| crate::datasets::to_file_schema(&b?, &schema)))
    }

    /// The action removing a data file.
    pub fn remove(&self, file: &SiteFile, data_change: bool) -> Remove {
        Remove {
            path: file.path.clone(),
            data_change,
            deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
            extended_file_metadata: Some(true),
            partition_values: Some(HashMap::from([
                ("site".to_string(), Some(file.site.clone())),
                ("month".to_string(), Some(file.month.clone())),
            ])),
            size: Some(file.size),
            ..Default::default()
        }
    }

    /// Commits `actions` with the transaction marker `seq` (if any),
    /// retrying with jitter while other sites win the race for the next
    /// log entry. Returns `false` if an earlier attempt had already landed.
    pub async fn commit(
        &mut self,
        actions: Vec<Action>,
        seq: Option<u64>,
        operation: DeltaOperation,
        guard: Option<&Guard>,
    ) -> Result<bool> {
        let mut last = String::new();
        for attempt in 0..COMMIT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(jitter(attempt)).await;
                // The entries since the last attempt tell whether it landed
                // after all (its answer lost) and who committed meanwhile.
                self.refresh().await?;
                if let Some(seq) = seq
                    && self.published_seq().await?.is_some_and(|v| v >= seq)
                {
                    return Ok(false);
                }
                if let Some(guard) = guard {
                    let now = self.guard(&guard.site, guard.months.clone())?;
                    if now.files != guard.files {
                        return Err(Error::Stale {
                            table: self.dataset.name(),
                            site: guard.site.clone(),
                        });
                    }
                }
            }
            if seq.is_some() {
                self.check_owner().await?;
            }
            let mut props = CommitProperties::default()
                .with_max_retries(0)
                .with_create_checkpoint(false)
                .with_cleanup_expired_logs(Some(false));
            if let Some(seq) = seq {
                props = props
                    .with_application_transaction(Transaction::new(&self.ids.sequence, seq as i64));
                if let Some(feed) = self.feed {
                    props = props.with_application_transaction(Transaction::new(
                        &self.ids.feed,
                        feed as i64,
                    ));
                }
            }
            let state = self.table.snapshot()?.clone();
            let reference: &dyn TableReference = &state;
            let done = CommitBuilder::from(props)
                .with_actions(actions.clone())
                .build(Some(reference), self.table.log_store(), operation.clone())
                .await;
            match done {
                Ok(_) => {
                    self.refresh().await?;
                    return Ok(true);
                }
                Err(e) => {
                    metrics::counter!("wattline_fleet_commit_retries_total").increment(1);
                    tracing::debug!(table = self.dataset.name(), attempt, error = %e, "commit lost; retrying");
                    last = e.to_string();
                }
            }
        }
        Err(Error::CommitContended {
            table: self.dataset.name(),
            attempts: COMMIT_ATTEMPTS,
            last,
        })
    }

    pub fn log_store(&self) -> LogStoreRef {
        self.table.log_store()
    }

    pub fn version(&self) -> Option<i64> {
        self.table.version().map(|v| v as i64)
    }

    /// The delta-rs table, for maintenance.
    pub(crate) fn into_delta(self) -> DeltaTable {
        self.table
    }

    #[cfg(test)]
    pub(crate) fn delta(&self) -> &DeltaTable {
        &self.table
    }
}

/// A pause anywhere up to a bound that doubles with the attempt (to 2 s):
/// sites that lost together spread out instead of retrying together.
fn jitter(attempt: u32) -> Duration {
    let bound = (50u64 << attempt.min(6)).min(2_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let spread = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    Duration::from_millis(10 + spread % bound)
}

fn properties() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build())
}

/// One zstd Parquet file of `batch`.
fn encode(batch: &RecordBatch) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties()?))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};

    fn config(site: &str) -> FleetConfig {
        FleetConfig::local_test(site, None)
    }

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn one_reading() -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            Dataset::Readings.file_schema(),
            vec![
                Arc::new(StringArray::from(vec!["s"])),
                Arc::new(StringArray::from(vec!["b"])),
                Arc::new(StringArray::from(vec!["t"])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_577_836_800_000_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![1.0])),
            ],
        )?)
    }

    async fn append(table: &mut FleetTable, seq: u64) -> Result<bool> {
        let unit = Unit {
            key: format!("2020-01-{seq:02}"),
            month: "2020-01".into(),
        };
        let add = table.upload(&unit, seq, &one_reading()?).await?;
        let op = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        };
        table
            .commit(vec![Action::Add(add)], Some(seq), op, None)
            .await
    }

    /// A site whose view of the log is behind loses the race for the next
    /// entry, catches up and commits; each site's marker is its own.
    #[tokio::test]
    async fn a_commit_that_lost_a_race_is_made_again_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bucket = Bucket::local(dir.path())?;
        let mut a = FleetTable::open(&bucket, &config("a"), Dataset::Readings).await?;
        let mut b = FleetTable::open(&bucket, &config("b"), Dataset::Readings).await?;
        assert!(append(&mut a, 1).await?);
        // b has not seen a's entry: its first attempt loses.
        assert!(append(&mut b, 1).await?);
        assert!(append(&mut b, 2).await?);
        a.refresh().await?;
        assert_eq!(a.published_seq().await?, Some(1));
        assert_eq!(b.published_seq().await?, Some(2));
        assert_eq!(a.files(Some("b"))?.len(), 2);
        assert_eq!(a.files(None)?.len(), 3);
        Ok(())
    }
}
