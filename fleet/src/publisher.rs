//! The publishing loop: the store's change feed in, Delta commits out.
//!
//! The outbox is the store's change feed (`changed_days`, in the
//! write-ahead, noted in the same transaction as the rollup step that
//! handled the day), numbered by a per-site sequence. For each table the
//! publisher reads the last sequence this site committed (the Delta
//! transaction marker `wattline/site=<site>`), takes the days changed
//! since, and commits, per few days: removal of the site's files of every
//! unit those days touch, the units' current rows as new files, and the
//! marker set to the last sequence included. So:
//!
//! - a crash between upload and commit leaves only unreferenced files
//!   (removed by `wattline fleet maintain`'s vacuum) and the same changes
//!   are published again on restart;
//! - a commit that landed but whose answer was lost is recognised by the
//!   marker and not repeated;
//! - a day changed again while it was being published has a new sequence
//!   and is published again;
//! - one data directory publishes a site: every marked commit also sets
//!   `wattline/site=<site>/feed` to the directory's change-feed id, and a
//!   publisher that finds another id there refuses, at start and before
//!   every commit (its sequences and files would mix with the other's),
//!   unless `fleet.take_over` names that id (a replacement appliance): it
//!   then publishes everything it holds.
//!
//! Units whose local data retention dropped are removed from the table by
//! a sweep at the end of every round (a look at file names and folders,
//! cheap). Nothing here holds a lock ingestion or
//! queries wait on: local rows are read from a snapshot on a blocking
//! thread, one unit at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use deltalake_core::kernel::{Action, Add};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use tokio::sync::watch;
use wattline_storage::{DayChange, ReadingStore};

use crate::config::FleetConfig;
use crate::datasets::{Dataset, Retention, Unit};
use crate::error::{Error, Result};
use crate::s3::Bucket;
use crate::table::{FleetTable, SiteFile};

/// Units per commit: bounds the files uploaded before a commit.
const UNITS_PER_COMMIT: usize = 8;
/// For the crash tests: abort the process after a commit's files are
/// uploaded and before the commit (set to any value). Debug builds only:
/// a release build ignores it.
pub const CRASH_AFTER_UPLOAD_ENV: &str = "WATTLINE_FLEET_CRASH_AFTER_UPLOAD";

/// What one round published.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub commits: usize,
    pub files_added: usize,
    pub files_removed: usize,
    pub rows: u64,
}

pub struct Publisher {
    config: FleetConfig,
    store: Arc<ReadingStore>,
    retention: Retention,
    tables: Vec<FleetTable>,
}

impl Publisher {
    /// Opens (or creates) the fleet's tables. When this site has never
    /// committed to them, or committed sequences this store has not
    /// handed out (a restored or replaced data directory), every day the
    /// store holds is noted as changed, so all of it is published.
    pub async fn open(
        config: FleetConfig,
        store: Arc<ReadingStore>,
        retention: Retention,
    ) -> Result<Self> {
        config.validate()?;
        let bucket = Bucket::s3(&config)?;
        Self::open_on(&bucket, config, store, retention).await
    }

    /// [`Self::open`] on any bucket (a local folder in benchmarks).
    pub async fn open_on(
        bucket: &Bucket,
        config: FleetConfig,
        store: Arc<ReadingStore>,
        retention: Retention,
    ) -> Result<Self> {
        crate::s3::check_create_only(bucket, &config).await?;
        let store2 = store.clone();
        let feed = blocking(move || Ok(store2.rollups().feed_id()?)).await?;
        let mut tables = Vec::new();
        for dataset in Dataset::ALL {
            let mut table = FleetTable::open(bucket, &config, dataset).await?;
            table.publish_as(feed);
            table.check_owner().await?;
            tables.push(table);
        }
        let mut published = Vec::new();
        let mut taking_over = false;
        for t in &mut tables {
            published.push(t.published_seq().await?);
            taking_over |= t.taking_over().await?;
        }
        if taking_over {
            tracing::warn!(site = %config.site, "fleet: taking the site over from the data directory fleet.take_over names");
        }
        let ahead = published.iter().flatten().copied().max().unwrap_or(0);
        // A site taken over: the other directory's sequences say nothing
        // of this one's, so everything is published.
        let never = taking_over || published.iter().any(Option::is_none);
        let store2 = store.clone();
        let renoted = blocking(move || {
            let (_, last) = store2.rollups().changes_since(u64::MAX)?;
            if !never && ahead <= last {
                return Ok(None);
            }
            let days = local_days(&store2)?;
            store2.rollups().renote(&days, ahead.max(last))?;
            Ok(Some(days.len()))
        })
        .await?;
        if let Some(days) = renoted {
            tracing::info!(days, "fleet: publishing every day held");
        }
        Ok(Publisher {
            config,
            store,
            retention,
            tables,
        })
    }

    /// Publishes every `config.interval` until `stop`. Failures are
    /// logged and counted, and the round is tried again.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let started = Instant::now();
            match self.round().await {
                Ok(r) if r.commits > 0 => tracing::info!(
                    commits = r.commits,
                    files_added = r.files_added,
                    files_removed = r.files_removed,
                    rows = r.rows,
                    ms = started.elapsed().as_millis() as u64,
                    "fleet: published"
                ),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("wattline_fleet_failures_total").increment(1);
                    tracing::warn!(error = %e, "fleet: publishing failed; trying again next round");
                }
            }
        }
    }

    /// One round: every table brought up to the change feed, then the
    /// retention sweep. A table that fails does not hold up the others;
    /// the first error is returned once all were tried.
    pub async fn round(&mut self) -> Result<Round> {
        let mut round = Round::default();
        let mut oldest_pending: Option<i64> = None;
        let mut depth = 0usize;
        let mut failed = None;
        for i in 0..self.tables.len() {
            let done = self.catch_up(i, &mut round).await;
            let left = match done.and(self.pending(i).await) {
                Ok(left) => left,
                Err(e) => {
                    tracing::warn!(table = self.tables[i].dataset.name(), error = %e, "fleet: table not published");
                    failed.get_or_insert(e);
                    continue;
                }
            };
            depth = depth.max(left.len());
            if let Some(first) = left.iter().map(|c| c.noted_ms).min() {
                oldest_pending = Some(oldest_pending.map_or(first, |o| o.min(first)));
            }
            if let Err(e) = self.sweep(i, &mut round).await {
                failed.get_or_insert(e);
            }
        }
        metrics::gauge!("wattline_fleet_outbox_depth").set(depth as f64);
        let lag = oldest_pending.map_or(0.0, |t| {
            (wattline_storage::now_ms() - t).max(0) as f64 / 1e3
        });
        metrics::gauge!("wattline_fleet_lag_seconds").set(lag);
        match failed {
            Some(e) => Err(e),
            None => Ok(round),
        }
    }

    /// Publishes table `i`'s changes, a few units per commit.
    async fn catch_up(&mut self, i: usize, round: &mut Round) -> Result<()> {
        self.tables[i].refresh().await?;
        // Another data directory took the site over: stop publishing.
        self.tables[i].check_owner().await?;
        let dataset = self.tables[i].dataset;
        let mut batch: Vec<DayChange> = Vec::new();
        let mut units: BTreeSet<Unit> = BTreeSet::new();
        for change in self.pending(i).await? {
            units.extend(dataset.units_of(&change));
            batch.push(change);
            if units.len() >= UNITS_PER_COMMIT {
                self.publish(i, &batch, &units, round).await?;
                (batch, units) = (Vec::new(), BTreeSet::new());
            }
        }
        if !batch.is_empty() {
            self.publish(i, &batch, &units, round).await?;
        }
        Ok(())
    }

    /// Changes of the feed table `i` has not published yet.
    async fn pending(&mut self, i: usize) -> Result<Vec<DayChange>> {
        let after = self.tables[i].published_seq().await?.unwrap_or(0);
        let store = self.store.clone();
        blocking(move || Ok(store.rollups().changes_since(after)?.0)).await
    }

    /// Publishes `units` (what `changes` touch) in one commit of table
    /// `i`, its marker the last of `changes`.
    async fn publish(
        &mut self,
        i: usize,
        changes: &[DayChange],
        units: &BTreeSet<Unit>,
        round: &mut Round,
    ) -> Result<()> {
        let table = &self.tables[i];
        let dataset = table.dataset;
        let Some(seq) = changes.iter().map(|c| c.seq).max() else {
            return Ok(());
        };
        let mut units = units.clone();
        let published = table.site_files()?;
        // A day of a month that compaction merged into one file: that file
        // goes, and every day of the month is published anew: from the
        // store where it holds the day, else (a day it never held, or
        // retention dropped: the sweep decides) as the month file had it.
        let mut from_month: Vec<RecordBatch> = Vec::new();
        if dataset.by_day() {
            let compacted: BTreeSet<String> = units
                .iter()
                .filter(|u| published.contains_key(&u.month))
                .map(|u| u.month.clone())
                .collect();
            for month in compacted {
                units.extend(Unit::days_of_month(&month)?);
                for file in published.get(&month).into_iter().flatten() {
                    from_month.push(table.read(file).await?);
                }
            }
        }
        let months: BTreeSet<String> = units.iter().map(|u| u.month.clone()).collect();
        let guard = table.guard(&self.config.site, months.clone())?;
        let mut actions = Vec::new();
        let (mut added, mut removed, mut rows) = (0, 0, 0u64);
        let mut gone: BTreeSet<&str> = BTreeSet::new();
        for unit in &units {
            let keys = [unit.key.as_str(), unit.month.as_str()];
            for file in keys.iter().filter_map(|k| published.get(*k)).flatten() {
                if gone.insert(&file.path) {
                    actions.push(Action::Remove(table.remove(file, true)));
                    removed += 1;
                }
            }
            let (store, u) = (self.store.clone(), unit.clone());
            let mut batch = blocking(move || dataset.local_rows(&store, &u)).await?;
            if batch.as_ref().is_none_or(|b| b.num_rows() == 0) && !from_month.is_empty() {
                let parts = from_month
                    .iter()
                    .map(|b| dataset.rows_of_day(b, unit))
                    .collect::<Result<Vec<_>>>()?;
                batch = Some(arrow::compute::concat_batches(&parts[0].schema(), &parts)?);
            }
            if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
                actions.push(Action::Add(table.upload(unit, seq, &batch).await?));
                added += 1;
                rows += batch.num_rows() as u64;
            }
        }
        #[cfg(debug_assertions)]
        if std::env::var_os(CRASH_AFTER_UPLOAD_ENV).is_some() && added > 0 {
            tracing::error!(
                "fleet: stopping after upload, before commit ({CRASH_AFTER_UPLOAD_ENV})"
            );
            std::process::abort();
        }
        let site = &self.config.site;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(Dataset::partition_columns().map(String::from).to_vec()),
            predicate: Some(format!(
                "site = '{site}' AND month IN ({})",
                months
                    .iter()
                    .map(|m| format!("'{m}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        if self.tables[i]
            .commit(actions, Some(seq), operation, Some(&guard))
            .await?
        {
            round.commits += 1;
            round.files_added += added;
            round.files_removed += removed;
            round.rows += rows;
            metrics::counter!("wattline_fleet_commits_total", "table" => dataset.name())
                .increment(1);
            metrics::counter!("wattline_fleet_published_rows_total", "table" => dataset.name())
                .increment(rows);
        }
        Ok(())
    }

    /// Removes the site's files of units the store no longer holds, and
    /// rewrites compacted months whose first days it no longer holds
    /// without those days.
    async fn sweep(&mut self, i: usize, round: &mut Round) -> Result<()> {
        let table = &self.tables[i];
        let dataset = table.dataset;
        let site = &self.config.site;
        let published = table.site_files()?;
        let keys: Vec<String> = published.keys().cloned().collect();
        let (store, retention) = (self.store.clone(), self.retention);
        let gone = blocking(move || dataset.gone_units(&store, &keys, retention)).await?;
        let mut files: Vec<&SiteFile> = gone
            .units
            .iter()
            .flat_map(|k| published.get(k).into_iter().flatten())
            .collect();
        let mut actions = Vec::new();
        let mut trimmed = 0;
        for (month, from_day) in &gone.trims {
            let month_files = published.get(month).map(Vec::as_slice).unwrap_or_default();
            // One month failing (a damaged file) holds up no other.
            match trim(table, site, month, month_files, *from_day).await {
                Ok((stale, add)) => {
                    trimmed += usize::from(!stale.is_empty());
                    files.extend(stale);
                    actions.extend(add.map(Action::Add));
                }
                Err(e) => {
                    tracing::warn!(table = dataset.name(), month, error = %e, "fleet: retention could not trim the month; trying again next round")
                }
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        let months = files.iter().map(|f| f.month.clone()).collect();
        let guard = table.guard(site, months)?;
        let removed = files.len();
        actions.extend(files.iter().map(|f| Action::Remove(table.remove(f, true))));
        let added = actions.len() - removed;
        let operation = DeltaOperation::Delete {
            predicate: Some(format!("site = '{site}'")),
        };
        // No marker: the sweep follows from local state, not the feed.
        if self.tables[i]
            .commit(actions, None, operation, Some(&guard))
            .await?
        {
            round.commits += 1;
            round.files_added += added;
            round.files_removed += removed;
            tracing::info!(
                table = dataset.name(),
                units = gone.units.len(),
                months_trimmed = trimmed,
                "fleet: retention removed"
            );
        }
        Ok(())
    }
}

/// The files of a compacted month that hold days before `from_day`, and
/// the file replacing them without those days (none if no row is left).
async fn trim<'a>(
    table: &FleetTable,
    site: &str,
    month: &str,
    files: &'a [SiteFile],
    from_day: i64,
) -> Result<(Vec<&'a SiteFile>, Option<Add>)> {
    let mut stale = Vec::new();
    for file in files {
        if file.first_day()? < from_day {
            stale.push(file);
        }
    }
    if stale.is_empty() {
        return Ok((stale, None));
    }
    let owned: Vec<SiteFile> = stale.iter().map(|f| (*f).clone()).collect();
    let add = table.trim(site, month, &owned, from_day).await?;
    Ok((stale, add))
}

/// Every UTC day the store holds readings or sensor hours of.
fn local_days(store: &ReadingStore) -> Result<Vec<i64>> {
    let mut days: BTreeSet<i64> = store.snapshot().chunks.iter().map(|c| c.meta.day).collect();
    // Days only in memory still have dirty marks: their rollup step notes them.
    days.extend(
        store
            .rollups()
            .partition_days(wattline_storage::RollupTable::SensorHourly),
    );
    Ok(days.into_iter().collect())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wattline_storage::{
        BuildingId, Catalog, NewBuilding, NewSensor, Reading, ReadingBatch, SensorId, SensorKey,
        TenantId,
    };

    fn config(take_over: Option<u64>) -> FleetConfig {
        FleetConfig::local_test("site-1", take_over)
    }

    const RETENTION: Retention = Retention {
        raw: Duration::from_secs(400 * 86_400),
        rollups: Duration::from_secs(4000 * 86_400),
    };

    const DAY: i64 = 86_400_000;

    type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// A data directory with one sensor and a reading of yesterday
    /// (`kwh`), its rollups done.
    async fn appliance(dir: &std::path::Path, kwh: f64) -> TestResult<Arc<ReadingStore>> {
        std::fs::create_dir_all(dir)?;
        let catalog = Catalog::open(dir)?;
        let t = TenantId::parse("t")?;
        catalog.create_tenant(t.clone(), "T".into())?;
        let b = BuildingId::parse("b")?;
        catalog.create_building(NewBuilding {
            id: b.clone(),
            tenant_id: t,
            name: "B".into(),
            floor_area_m2: None,
            timezone: None,
        })?;
        catalog.create_sensors(vec![NewSensor {
            id: SensorId::parse("s")?,
            building_id: b,
            kind: None,
            unit: None,
            is_active: None,
            meter: Default::default(),
        }])?;
        let store = Arc::new(ReadingStore::open(dir, Arc::new(catalog))?.0);
        let ts_ms = wattline_storage::now_ms() - 86_400_000;
        store
            .append(ReadingBatch {
                readings: vec![Reading {
                    sensor: SensorKey(0),
                    ts_ms: ts_ms - ts_ms % 900_000,
                    value_kwh: kwh,
                }],
            })
            .await?;
        store.catch_up_rollups()?;
        Ok(store)
    }

    /// A local folder standing in for the bucket, under `root`.
    fn local_bucket(root: &std::path::Path) -> TestResult<Bucket> {
        std::fs::create_dir_all(root.join("bucket"))?;
        Ok(Bucket::local(&root.join("bucket"))?)
    }

    /// The month (`YYYY-MM`) `days` ago, and its first day.
    fn month_back(days: i64) -> TestResult<(String, i64)> {
        let today = wattline_storage::now_ms().div_euclid(DAY);
        let month = crate::datasets::day_key(today - days)[..7].to_string();
        let first = crate::datasets::parse_day(&format!("{month}-01"))?;
        Ok((month, first))
    }

    /// Appends a reading of `kwh` at noon of UTC `day` to sensor 0.
    async fn noon_reading(store: &ReadingStore, day: i64, kwh: f64) -> TestResult {
        let reading = Reading {
            sensor: SensorKey(0),
            ts_ms: day * DAY + 12 * 3_600_000,
            value_kwh: kwh,
        };
        store
            .append(ReadingBatch {
                readings: vec![reading],
            })
            .await?;
        Ok(())
    }

    /// The site's raw readings in the fleet table.
    async fn fleet_values(bucket: &Bucket) -> TestResult<Vec<f64>> {
        let mut table = FleetTable::open(bucket, &config(None), Dataset::Readings).await?;
        table.refresh().await?;
        let mut out = Vec::new();
        for f in table.files(Some("site-1"))? {
            let b = table.read(&f).await?;
            let v = b
                .column_by_name("value_kwh")
                .and_then(|v| v.as_any().downcast_ref::<arrow::array::Float64Array>())
                .ok_or("value_kwh: no float column")?;
            out.extend(v.values().iter().copied());
        }
        Ok(out)
    }

    /// Two data directories under one site id: the second is refused
    /// unless told which directory it takes the site over from; then it
    /// publishes all it holds (even with sequences past the other's) and
    /// the first stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_site_is_published_from_one_data_directory() -> TestResult {
        let root = tempfile::tempdir()?;
        let bucket = local_bucket(root.path())?;
        let first = appliance(&root.path().join("a"), 1.5).await?;
        let first_feed = first.rollups().feed_id()?;
        let mut a = Publisher::open_on(&bucket, config(None), first, RETENTION).await?;
        assert!(a.round().await?.commits > 0);
        assert_eq!(fleet_values(&bucket).await?, [1.5]);

        let second = appliance(&root.path().join("b"), 2.5).await?;
        // Its feed far past the first's marker, its day's change not:
        // only a full republication gets the day out.
        let long_ago = wattline_storage::now_ms().div_euclid(86_400_000) - 300;
        second.rollups().renote(&[long_ago], 1_000_000)?;
        for take_over in [None, Some(first_feed ^ 1)] {
            let refused =
                Publisher::open_on(&bucket, config(take_over), second.clone(), RETENTION).await;
            assert!(
                matches!(refused, Err(Error::SiteTaken { .. })),
                "{:?}",
                refused.err()
            );
        }
        let mut b =
            Publisher::open_on(&bucket, config(Some(first_feed)), second, RETENTION).await?;
        assert!(b.round().await?.commits > 0);
        assert_eq!(fleet_values(&bucket).await?, [2.5]);
        let stopped = a.round().await;
        assert!(
            matches!(stopped, Err(Error::SiteTaken { .. })),
            "{stopped:?}"
        );
        b.round().await?;
        assert_eq!(fleet_values(&bucket).await?, [2.5]);
        Ok(())
    }

    /// Retention dropping the first days of a compacted month: the
    /// month's file is rewritten without them, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_trims_a_compacted_month_it_straddles() -> TestResult {
        let root = tempfile::tempdir()?;
        let bucket = local_bucket(root.path())?;
        let store = appliance(&root.path().join("a"), 9.0).await?;
        // Days 1-3 of the month three months back: closed, so compacted.
        let (month, first) = month_back(95)?;
        for (day, kwh) in [(0, 1.0), (1, 2.0), (2, 3.0)] {
            noon_reading(&store, first + day, kwh).await?;
        }
        tokio::task::block_in_place(|| store.flush())?;
        store.catch_up_rollups()?;
        let mut publisher =
            Publisher::open_on(&bucket, config(None), store.clone(), RETENTION).await?;
        publisher.round().await?;
        crate::maintain::maintain_on(&bucket, &config(None), Duration::from_secs(3600)).await?;
        let months = |t: &FleetTable| -> TestResult<Vec<String>> {
            Ok(t.files(Some("site-1"))?
                .into_iter()
                .map(|f| f.key)
                .filter(|k| k.len() == 7)
                .collect())
        };
        let mut table = FleetTable::open(&bucket, &config(None), Dataset::Readings).await?;
        assert_eq!(months(&table)?, std::slice::from_ref(&month), "compacted");

        // Retention drops the month's first day.
        tokio::task::block_in_place(|| store.drop_expired((first + 1) * DAY))?;
        publisher.round().await?;
        let mut values = fleet_values(&bucket).await?;
        values.sort_by(f64::total_cmp);
        assert_eq!(values, [2.0, 3.0, 9.0]);
        table.refresh().await?;
        assert_eq!(months(&table)?, [month], "still one file for the month");
        // Done once: the rewritten file starts where the store does.
        assert_eq!(publisher.round().await?.commits, 0);
        Ok(())
    }

    /// A compacted `sensor_hourly` month past the rollup retention with a
    /// day the store has no hours of: a gap, not retention; the month's
    /// held hours stay in the fleet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gap_in_a_compacted_month_is_not_retention() -> TestResult {
        let root = tempfile::tempdir()?;
        let bucket = local_bucket(root.path())?;
        let store = appliance(&root.path().join("a"), 9.0).await?;
        let (month, first) = month_back(130)?;
        for day in [0, 1, 3] {
            noon_reading(&store, first + day, 1.0).await?;
        }
        store.catch_up_rollups()?;
        // The month lies wholly before what the rollups keep.
        let retention = Retention {
            rollups: Duration::from_secs(100 * 86_400),
            ..RETENTION
        };
        let mut publisher = Publisher::open_on(&bucket, config(None), store, retention).await?;
        publisher.round().await?;
        crate::maintain::maintain_on(&bucket, &config(None), Duration::from_secs(3600)).await?;
        publisher.round().await?;
        let mut table = FleetTable::open(&bucket, &config(None), Dataset::SensorHourly).await?;
        table.refresh().await?;
        let files = table.files(Some("site-1"))?;
        let month_files: Vec<_> = files.iter().filter(|f| f.key == month).collect();
        assert_eq!(month_files.len(), 1, "{files:?}");
        assert_eq!(table.read(month_files[0]).await?.num_rows(), 3);
        Ok(())
    }
}
