//! `wattline fleet maintain`: table maintenance, run by one operator for
//! the whole fleet (never by every appliance, whose commits would then
//! race each other's checkpoints).
//!
//! Per table:
//! - compaction: in tables published by day, each site's files of a
//!   month closed for [`CLOSED_FOR`] are merged into one (Remove and Add
//!   with `dataChange: false`: readers of changes see none). A commit is
//!   abandoned if the site published into that month meanwhile; an
//!   appliance that later republishes a day of a compacted month replaces
//!   the month's file with its days (see `publisher`);
//! - a checkpoint of the log (readers then skip replaying every commit);
//! - a full vacuum: files no commit refers to any more, older than the
//!   retention period, are deleted. That covers files removed by
//!   republishing, compaction and retention, and uploads a crash left
//!   without a commit.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use deltalake_core::kernel::Action;
use deltalake_core::protocol::DeltaOperation;

use crate::config::FleetConfig;
use crate::datasets::Dataset;
use crate::error::{Error, Result};
use crate::table::FleetTable;

/// How long after its end a month is compacted: late data for it is
/// rare by then, and republishing a day of it rewrites the whole month.
pub const CLOSED_FOR: chrono::Duration = chrono::Duration::days(7);

/// What maintenance did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintained {
    pub table: &'static str,
    pub version: i64,
    /// Site months whose files were merged into one.
    pub compacted: usize,
    pub files_deleted: usize,
}

/// Checkpoints and vacuums every table of the fleet. `retention` keeps
/// unreferenced files that long (a reader may still be reading a removed
/// file; Delta's default is 7 days).
pub async fn maintain(config: &FleetConfig, retention: Duration) -> Result<Vec<Maintained>> {
    config.validate()?;
    maintain_on(&crate::s3::Bucket::s3(config)?, config, retention).await
}

/// [`maintain`] on any bucket (a local folder in tests).
pub async fn maintain_on(
    bucket: &crate::s3::Bucket,
    config: &FleetConfig,
    retention: Duration,
) -> Result<Vec<Maintained>> {
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| Error::Config(format!("retention: {e}")))?;
    let mut out = Vec::new();
    for dataset in Dataset::ALL {
        let mut table = FleetTable::open(bucket, config, dataset).await?;
        let compacted = if dataset.by_day() {
            compact(&mut table, chrono::Utc::now().date_naive()).await?
        } else {
            0
        };
        let version = table.version().unwrap_or(0);
        let delta = table.into_delta();
        deltalake_core::checkpoints::create_checkpoint(&delta, None).await?;
        let (_, metrics) = delta
            .vacuum()
            .with_mode(deltalake_core::operations::vacuum::VacuumMode::Full)
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await?;
        out.push(Maintained {
            table: dataset.name(),
            version,
            compacted,
            files_deleted: metrics.files_deleted.len(),
        });
    }
    Ok(out)
}

/// Merges each site's files of every month closed before `today` into one.
async fn compact(table: &mut FleetTable, today: NaiveDate) -> Result<usize> {
    let months: BTreeSet<(String, String)> = table
        .files(None)?
        .into_iter()
        .filter(|f| closed(&f.month, today))
        .map(|f| (f.site, f.month))
        .collect();
    let mut done = 0;
    for (site, month) in months {
        match compact_month(table, &site, &month).await {
            Ok(true) => done += 1,
            Ok(false) => {}
            // The site published into the month meanwhile: next time.
            Err(Error::Stale { .. }) => {
                tracing::info!(
                    table = table.dataset.name(),
                    site,
                    month,
                    "compaction skipped: the month changed"
                )
            }
            // Another month or table may do better; maintenance goes on.
            Err(e) => {
                tracing::warn!(table = table.dataset.name(), site, month, error = %e, "compaction failed")
            }
        }
    }
    Ok(done)
}

/// Merges `site`'s files of `month`, as the current snapshot has them
/// (an earlier commit of this run may have refreshed it), into one.
async fn compact_month(table: &mut FleetTable, site: &str, month: &str) -> Result<bool> {
    let files: Vec<_> = table
        .files(Some(site))?
        .into_iter()
        .filter(|f| f.month == month)
        .collect();
    if files.len() < 2 {
        return Ok(false);
    }
    // From the same snapshot as `files`, which the commit builds on.
    let guard = table.guard(site, BTreeSet::from([month.to_string()]))?;
    let add = table.merge(site, month, &files).await?;
    let mut actions: Vec<Action> = files
        .iter()
        .map(|f| Action::Remove(table.remove(f, false)))
        .collect();
    // Files without a row merge into none.
    actions.extend(add.map(Action::Add));
    let operation = DeltaOperation::Optimize {
        predicate: Some(format!("site = '{site}' AND month = '{month}'")),
        target_size: 0,
    };
    table.commit(actions, None, operation, Some(&guard)).await
}

/// Whether month `YYYY-MM` ended at least [`CLOSED_FOR`] before `today`.
fn closed(month: &str, today: NaiveDate) -> bool {
    let Ok(first) = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d") else {
        return false;
    };
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.is_some_and(|end| end + CLOSED_FOR <= today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::Unit;
    use crate::s3::Bucket;
    use arrow::array::{
        Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use deltalake_core::protocol::SaveMode;
    use std::sync::Arc;

    fn config(site: &str) -> FleetConfig {
        FleetConfig::local_test(site, None)
    }

    /// One sensor hour of January 2020 (a closed month), day `day`, with
    /// `kwh`; without the `quarantined` column when `old`.
    fn hour(day: u32, kwh: f64, old: bool) -> RecordBatch {
        let schema = Dataset::SensorHourly.file_schema();
        let at = chrono::NaiveDate::from_ymd_opt(2020, 1, day)
            .unwrap()
            .and_hms_opt(3, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let mut columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(StringArray::from(vec!["s"])),
            Arc::new(StringArray::from(vec!["b"])),
            Arc::new(StringArray::from(vec!["t"])),
            Arc::new(TimestampMicrosecondArray::from(vec![at]).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![kwh])),
            Arc::new(Float64Array::from(vec![kwh])),
            Arc::new(Int64Array::from(vec![4])),
        ];
        let mut fields: Vec<_> = schema.fields().iter().take(7).cloned().collect();
        if !old {
            columns.push(Arc::new(Int64Array::from(vec![0])));
            fields.push(schema.field(7).clone().into());
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn unit(day: u32) -> Unit {
        Unit {
            key: format!("2020-01-{day:02}"),
            month: "2020-01".into(),
        }
    }

    /// Publishes `rows` as the site's file of their day, replacing the
    /// day's earlier files, as an appliance does.
    async fn publish(table: &mut FleetTable, day: u32, batch: &RecordBatch, seq: u64) {
        let old = table.site_files().unwrap();
        let mut actions: Vec<Action> = old
            .get(&unit(day).key)
            .into_iter()
            .flatten()
            .map(|f| Action::Remove(table.remove(f, true)))
            .collect();
        actions.push(Action::Add(
            table.upload(&unit(day), seq, batch).await.unwrap(),
        ));
        let op = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate: None,
        };
        table.commit(actions, Some(seq), op, None).await.unwrap();
    }

    async fn rows(table: &FleetTable, site: &str) -> Vec<(i64, f64, Option<i64>)> {
        let mut out = Vec::new();
        for f in table.files(Some(site)).unwrap() {
            let b = table.read(&f).await.unwrap();
            let at = b.column_by_name("hour").unwrap();
            let at = at
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let kwh = b.column_by_name("kwh").unwrap();
            let kwh = kwh.as_any().downcast_ref::<Float64Array>().unwrap();
            let q = b.column_by_name("quarantined").unwrap();
            let q = q.as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                out.push((at.value(i), kwh.value(i), q.is_valid(i).then(|| q.value(i))));
            }
        }
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    #[tokio::test]
    async fn compaction_merges_files_without_a_newer_nullable_column() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::local(dir.path()).unwrap();
        let mut a = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly)
            .await
            .unwrap();
        publish(&mut a, 5, &hour(5, 1.0, true), 1).await;
        publish(&mut a, 6, &hour(6, 2.0, false), 2).await;
        let today = NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
        let mut m = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly)
            .await
            .unwrap();
        assert_eq!(compact(&mut m, today).await.unwrap(), 1);
        let files = m.files(Some("a")).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].key, "2020-01");
        let got = rows(&m, "a").await;
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].1, got[0].2), (1.0, None), "the older file's row");
        assert_eq!((got[1].1, got[1].2), (2.0, Some(0)));
    }

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// What a newer version does to the table: adds a nullable column
    /// this version does not know.
    async fn add_future_column(table: &mut FleetTable) -> TestResult {
        use deltalake_core::kernel::{DataType, MetadataExt, StructField, StructType};
        let state = table.delta().snapshot()?;
        let column = StructField::new("future_kw", DataType::DOUBLE, true);
        let fields: Vec<StructField> = state
            .schema()
            .fields()
            .cloned()
            .chain([column.clone()])
            .collect();
        let metadata = state
            .metadata()
            .clone()
            .with_schema(&StructType::try_new(fields)?)?;
        let operation = DeltaOperation::AddColumn {
            fields: vec![column],
        };
        table
            .commit(vec![Action::Metadata(metadata)], None, operation, None)
            .await?;
        Ok(())
    }

    /// [`hour`] with the newer version's column.
    fn future_hour(
        day: u32,
        kwh: f64,
        future_kw: f64,
    ) -> std::result::Result<RecordBatch, Box<dyn std::error::Error>> {
        let hour = hour(day, kwh, false);
        let mut fields: Vec<_> = hour.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            "future_kw",
            arrow::datatypes::DataType::Float64,
            true,
        )));
        let mut columns = hour.columns().to_vec();
        columns.push(Arc::new(Float64Array::from(vec![future_kw])));
        Ok(RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
        )?)
    }

    #[tokio::test]
    async fn compaction_by_an_older_version_keeps_a_newer_versions_column() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bucket = Bucket::local(dir.path())?;
        let mut newer = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly).await?;
        add_future_column(&mut newer).await?;
        publish(&mut newer, 5, &future_hour(5, 1.0, 10.0)?, 1).await;
        publish(&mut newer, 6, &future_hour(6, 2.0, 20.0)?, 2).await;
        // This version runs maintenance.
        let mut m = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly).await?;
        let today = NaiveDate::from_ymd_opt(2020, 3, 1).ok_or("date")?;
        assert_eq!(compact(&mut m, today).await?, 1);
        let files = m.files(Some("a"))?;
        assert_eq!(files.len(), 1, "{files:?}");
        let merged = m.read(&files[0]).await?;
        let future = merged
            .column_by_name("future_kw")
            .ok_or("future_kw dropped")?;
        let future = future
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("type")?;
        let mut values: Vec<f64> = future.iter().flatten().collect();
        values.sort_by(f64::total_cmp);
        assert_eq!(values, [10.0, 20.0]);
        Ok(())
    }

    #[tokio::test]
    async fn a_month_of_files_without_rows_compacts_into_none() -> TestResult {
        let dir = tempfile::tempdir()?;
        let bucket = Bucket::local(dir.path())?;
        let mut a = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly).await?;
        publish(&mut a, 5, &hour(5, 1.0, false).slice(0, 0), 1).await;
        publish(&mut a, 6, &hour(6, 2.0, false).slice(0, 0), 2).await;
        let mut m = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly).await?;
        let today = NaiveDate::from_ymd_opt(2020, 3, 1).ok_or("date")?;
        assert_eq!(compact(&mut m, today).await?, 1);
        assert_eq!(m.files(Some("a"))?, []);
        Ok(())
    }

    #[tokio::test]
    async fn compaction_merges_what_the_site_published_after_maintenance_began() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::local(dir.path()).unwrap();
        let mut sites = Vec::new();
        for site in ["a", "b"] {
            let mut t = FleetTable::open(&bucket, &config(site), Dataset::SensorHourly)
                .await
                .unwrap();
            publish(&mut t, 5, &hour(5, 1.0, false), 1).await;
            publish(&mut t, 6, &hour(6, 2.0, false), 2).await;
            sites.push(t);
        }
        // Maintenance has read the table; then site b corrects day 6.
        let mut m = FleetTable::open(&bucket, &config("a"), Dataset::SensorHourly)
            .await
            .unwrap();
        publish(&mut sites[1], 6, &hour(6, 7.0, false), 3).await;
        let today = NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
        assert_eq!(compact(&mut m, today).await.unwrap(), 2);
        m.refresh().await.unwrap();
        let kwh: Vec<f64> = rows(&m, "b").await.iter().map(|r| r.1).collect();
        assert_eq!(kwh, [1.0, 7.0], "each hour once, the correction in");
        assert_eq!(m.files(Some("b")).unwrap().len(), 1);
    }

    #[test]
    fn a_month_is_compacted_a_week_after_it_ends() {
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(!closed("2026-11", day("2026-12-07")));
        assert!(closed("2026-11", day("2026-12-08")));
        assert!(closed("2026-12", day("2027-01-08")));
        assert!(!closed("2026-12", day("2026-12-31")));
        assert!(!closed("not-a-month", day("2030-01-01")));
    }
}
