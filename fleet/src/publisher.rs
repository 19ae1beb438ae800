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
//!   and is published again.
//!
//! Units whose local data retention dropped are removed from the table by
//! a sweep at the end of every round (a look at file names and folders,
//! cheap). Nothing here holds a lock ingestion or
//! queries wait on: local rows are read from a snapshot on a blocking
//! thread, one unit at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use deltalake_core::kernel::Action;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use object_store::ObjectStore;
use tokio::sync::watch;
use wattline_storage::{DayChange, ReadingStore};

use crate::config::FleetConfig;
use crate::datasets::{Dataset, Unit};
use crate::error::{Error, Result};
use crate::table::FleetTable;

/// Changed days per commit: bounds the rows held and uploaded at once.
const DAYS_PER_COMMIT: usize = 4;
/// For the crash tests: abort the process after a commit's files are
/// uploaded and before the commit (set to any value).
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
    tables: Vec<FleetTable>,
}

impl Publisher {
    /// Opens (or creates) the fleet's tables. When this site has never
    /// committed to them, or committed sequences this store has not
    /// handed out (a restored or replaced data directory), every day the
    /// store holds is noted as changed, so all of it is published.
    pub async fn open(config: FleetConfig, store: Arc<ReadingStore>) -> Result<Self> {
        config.validate()?;
        let bucket: Arc<dyn ObjectStore> = crate::s3::bucket_store(&config)?;
        let mut tables = Vec::new();
        for dataset in Dataset::ALL {
            tables.push(FleetTable::open(&bucket, &config, dataset).await?);
        }
        let mut published = Vec::new();
        for t in &tables {
            published.push(t.published_seq().await?);
        }
        let (_, last) = store.rollups().changes_since(u64::MAX)?;
        let ahead = published.iter().flatten().copied().max().unwrap_or(0);
        if published.iter().any(Option::is_none) || ahead > last {
            let store2 = store.clone();
            let days = blocking(move || local_days(&store2)).await?;
            tracing::info!(days = days.len(), "fleet: publishing every day held");
            store.rollups().renote(&days, ahead.max(last))?;
        }
        Ok(Publisher {
            config,
            store,
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
    /// retention sweep.
    pub async fn round(&mut self) -> Result<Round> {
        let mut round = Round::default();
        let mut oldest_pending: Option<i64> = None;
        let mut depth = 0usize;
        for i in 0..self.tables.len() {
            self.tables[i].refresh().await?;
            let after = self.tables[i].published_seq().await?.unwrap_or(0);
            let (changes, _) = self.store.rollups().changes_since(after)?;
            for batch in changes.chunks(DAYS_PER_COMMIT) {
                self.publish(i, batch, &mut round).await?;
            }
            let (left, _) = self
                .store
                .rollups()
                .changes_since(self.tables[i].published_seq().await?.unwrap_or(0))?;
            depth = depth.max(left.len());
            if let Some(first) = left.iter().map(|c| c.noted_ms).min() {
                oldest_pending = Some(oldest_pending.map_or(first, |o| o.min(first)));
            }
        }
        metrics::gauge!("wattline_fleet_outbox_depth").set(depth as f64);
        let lag = oldest_pending.map_or(0.0, |t| {
            (wattline_storage::now_ms() - t).max(0) as f64 / 1e3
        });
        metrics::gauge!("wattline_fleet_lag_seconds").set(lag);
        for i in 0..self.tables.len() {
            self.sweep(i, &mut round).await?;
        }
        Ok(round)
    }

    /// Publishes the units `changes` touch in one commit of table `i`.
    async fn publish(&mut self, i: usize, changes: &[DayChange], round: &mut Round) -> Result<()> {
        let table = &self.tables[i];
        let dataset = table.dataset;
        let Some(seq) = changes.iter().map(|c| c.seq).max() else {
            return Ok(());
        };
        let mut units: BTreeSet<Unit> = changes
            .iter()
            .flat_map(|c| dataset.units_of_day(c.day))
            .collect();
        let published = table.site_files()?;
        // A day of a month that compaction merged into one file: that file
        // goes, and every day of the month is published anew.
        if dataset.by_day() {
            let compacted: BTreeSet<String> = units
                .iter()
                .filter(|u| published.contains_key(&u.month))
                .map(|u| u.month.clone())
                .collect();
            for month in compacted {
                units.extend(Unit::days_of_month(&month)?);
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
            let batch = blocking(move || dataset.local_rows(&store, &u)).await?;
            if let Some(batch) = batch.filter(|b| b.num_rows() > 0) {
                actions.push(Action::Add(table.upload(unit, seq, &batch).await?));
                added += 1;
                rows += batch.num_rows() as u64;
            }
        }
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

    /// Removes the site's files of units the store no longer holds.
    async fn sweep(&mut self, i: usize, round: &mut Round) -> Result<()> {
        let table = &self.tables[i];
        let dataset = table.dataset;
        let published = table.site_files()?;
        let keys: Vec<String> = published.keys().cloned().collect();
        let store = self.store.clone();
        let gone = blocking(move || dataset.gone_units(&store, &keys)).await?;
        let files: Vec<_> = gone
            .iter()
            .flat_map(|k| published.get(k).into_iter().flatten())
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        let months = files.iter().map(|f| f.month.clone()).collect();
        let guard = table.guard(&self.config.site, months)?;
        let actions: Vec<Action> = files
            .iter()
            .map(|f| Action::Remove(table.remove(f, true)))
            .collect();
        let removed = actions.len();
        let operation = DeltaOperation::Delete {
            predicate: Some(format!("site = '{}'", self.config.site)),
        };
        // No marker: the sweep follows from local state, not the feed.
        if self.tables[i]
            .commit(actions, None, operation, Some(&guard))
            .await?
        {
            round.commits += 1;
            round.files_removed += removed;
            tracing::info!(
                table = dataset.name(),
                units = gone.len(),
                "fleet: retention removed"
            );
        }
        Ok(())
    }
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
