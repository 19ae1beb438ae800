//! [`Rollups`]: the rollup tables, kept current in small idempotent steps.
//!
//! One step takes one UTC day `D` that has dirty marks (see
//! [`crate::wal::marks`]) and recomputes, for the marked sensors only, the
//! sensor-hour buckets that start on `D-1` and `D` (a reading's local hour
//! may start on the UTC day before), from the merged raw readings of a
//! window around them. Building hours are re-aggregated from the sensor
//! hours of the partitions touched, then the local days and months of the
//! affected buildings from their hours. Every step rewrites whole
//! partition files and ends by deleting exactly the marks it processed;
//! a crash anywhere just repeats the step.
//!
//! Building-level tables (hourly, daily, monthly) are held in memory, so
//! `/energy` answers from a map range; `sensor_hourly` stays on disk.

use crate::sync::Recover;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::{Datelike, NaiveDate};

use super::files::{RollupRow, RollupTable, partitions, read_partition};
use super::pinned::{PartitionVersions, PinnedPartition, PinnedPartitions};
use super::windows::WindowSpan;
use super::zones::ZoneLedger;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::reading::{DAY_MS, TimeRange};
use crate::wal::db::WalDb;
use crate::wal::marks::Marks;

pub(super) const HOUR_MS: i64 = 3_600_000;

/// Energy in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub kwh: f64,
    /// The largest single reading.
    pub peak_kwh: f64,
    pub readings: i64,
    /// Peak demand: the largest 15-minute average power in kW (kWh of
    /// the building's busiest clock quarter times four), as utilities
    /// bill it. Days and months only; `None` when unknown (for a month:
    /// unknown for one of its days).
    pub peak_kw: Option<f64>,
    /// What the energy cost under the building's tariff (days and months;
    /// months include the demand charge); `None` without a tariff (for a
    /// month: for one of its days).
    pub cost: Option<f64>,
    /// Readings not counted as implausible (above the sensor's `max_kw`,
    /// a negative register).
    pub quarantined: i64,
}

impl Agg {
    pub fn one(v: f64) -> Self {
        Self {
            // A reading counts to the milliwatt-hour, as in every sum.
            kwh: crate::kwh::round_kwh(v),
            peak_kwh: v,
            readings: 1,
            peak_kw: None,
            cost: None,
            quarantined: 0,
        }
    }

    /// A quarantined reading: counted as such, never summed.
    pub fn quarantined() -> Self {
        Self {
            kwh: 0.0,
            peak_kwh: 0.0,
            readings: 0,
            peak_kw: None,
            cost: None,
            quarantined: 1,
        }
    }

    pub fn add(&mut self, o: &Agg) {
        self.kwh = crate::kwh::add_kwh(self.kwh, o.kwh);
        // The largest reading of those counted.
        self.peak_kwh = match (self.readings, o.readings) {
            (0, _) => o.peak_kwh,
            (_, 0) => self.peak_kwh,
            _ => self.peak_kwh.max(o.peak_kwh),
        };
        self.readings += o.readings;
        self.quarantined += o.quarantined;
        // Known only when known for every part: a month with a day of
        // unknown cost has an unknown cost, not a partial one.
        self.peak_kw = self.peak_kw.zip(o.peak_kw).map(|(a, b)| a.max(b));
        self.cost = self
            .cost
            .zip(o.cost)
            .map(|(a, b)| crate::kwh::add_kwh(a, b));
    }

    pub(super) fn sum<'a>(it: impl IntoIterator<Item = &'a Agg>) -> Option<Agg> {
        it.into_iter().fold(None, |acc: Option<Agg>, a| {
            Some(match acc {
                Some(mut s) => {
                    s.add(a);
                    s
                }
                None => *a,
            })
        })
    }
}

impl From<&RollupRow> for Agg {
    fn from(r: &RollupRow) -> Self {
        Self {
            kwh: r.kwh,
            peak_kwh: r.peak_kwh,
            readings: r.readings,
            peak_kw: r.peak_kw,
            cost: r.cost,
            quarantined: r.quarantined,
        }
    }
}

/// A building's rollups, in memory.
#[derive(Debug, Default)]
pub(crate) struct BuildingRollups {
    pub(super) tenant: Arc<str>,
    /// Hour bucket start (UTC ms) -> energy.
    pub(super) hourly: BTreeMap<i64, Agg>,
    pub(super) daily: BTreeMap<NaiveDate, Agg>,
    /// First day of the month -> energy.
    pub(super) monthly: BTreeMap<NaiveDate, Agg>,
    /// 15-minute interval start (UTC ms) -> energy, recent days only (see
    /// `quarters`).
    pub(super) quarters: BTreeMap<i64, Agg>,
    /// Recent changes: ([`Rollups::generation`] after the change, the
    /// table, earliest bucket start it touched), oldest first, so alert
    /// evaluation re-reads only the windows that changed.
    pub(super) changes: std::collections::VecDeque<(u64, WindowSpan, i64)>,
    /// The generation of the newest change no longer in `changes`.
    pub(super) forgotten: u64,
}

/// The first key at which `old` and `new` differ (in presence or value).
pub(super) fn first_difference<K: Ord + Copy>(
    old: &BTreeMap<K, Agg>,
    new: &BTreeMap<K, Agg>,
) -> Option<K> {
    old.keys()
        .chain(new.keys())
        .filter(|k| old.get(k) != new.get(k))
        .min()
        .copied()
}

/// Changes remembered per building; an evaluator further behind re-reads
/// everything.
const KEPT_CHANGES: usize = 64;

impl BuildingRollups {
    /// Records that buckets of `table` from `from_ms` on changed.
    pub(super) fn note_change(&mut self, generation: &AtomicU64, table: WindowSpan, from_ms: i64) {
        let g = generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.changes.len() == KEPT_CHANGES
            && let Some((old, ..)) = self.changes.pop_front()
        {
            self.forgotten = old;
        }
        self.changes.push_back((g, table, from_ms));
    }

    /// The earliest bucket start of `table` changed after generation
    /// `seen` (`i64::MIN` when `seen` is older than what is remembered),
    /// or `None` when nothing changed since.
    pub(super) fn changed_since(&self, table: WindowSpan, seen: u64) -> Option<i64> {
        if seen < self.forgotten {
            return Some(i64::MIN);
        }
        // Newest first, stopping at what was seen: a pass with nothing new
        // looks at one entry.
        self.changes
            .iter()
            .rev()
            .take_while(|(g, ..)| *g > seen)
            .filter(|(_, t, _)| *t == table)
            .map(|(.., from)| *from)
            .min()
    }
}

/// Resolution of an energy series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Hour,
    Day,
    Month,
}

pub struct Rollups {
    pub(super) data_dir: PathBuf,
    pub(super) catalog: Arc<Catalog>,
    pub(super) wal: Arc<WalDb>,
    pub(super) marks: Arc<Marks>,
    pub(super) buildings: RwLock<HashMap<Arc<str>, BuildingRollups>>,
    /// One step at a time.
    pub(super) step: Mutex<()>,
    /// Since when marks have been waiting (for the lag metric).
    pub(super) pending_since: Mutex<Option<Instant>>,
    pub(super) zones: ZoneLedger,
    /// Bumped whenever a building's buckets change.
    pub(super) generation: AtomicU64,
    /// The catalog's tariff version the costs follow.
    pub(super) tariffs_seen: AtomicU64,
    /// The partition files' versions, which readers open one of.
    pub(super) versions: PartitionVersions,
}

pub(super) fn days_since_epoch(d: NaiveDate) -> i64 {
    i64::from(
        d.num_days_from_ce()
            - NaiveDate::from_ymd_opt(1970, 1, 1)
                .expect("epoch")
                .num_days_from_ce(),
    )
}

/// The date `days` after 1970-01-01 (how daily and monthly rows store
/// their day).
pub fn from_days(days: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days)
}

impl Rollups {
    /// Loads the building tables from their files.
    pub(crate) fn open(
        data_dir: &std::path::Path,
        catalog: Arc<Catalog>,
        wal: Arc<WalDb>,
        marks: Arc<Marks>,
    ) -> Result<Self> {
        let mut buildings: HashMap<Arc<str>, BuildingRollups> = HashMap::new();
        for (table, _) in [
            (RollupTable::BuildingHourly, ()),
            (RollupTable::BuildingDaily, ()),
            (RollupTable::BuildingMonthly, ()),
        ] {
            for path in partitions(table, data_dir) {
                for r in read_partition(table, &path)? {
                    let b = buildings.entry(r.building_id.clone()).or_default();
                    b.tenant = r.tenant_id.clone();
                    let agg = Agg::from(&r);
                    match table {
                        RollupTable::BuildingHourly => b.hourly.insert(r.at, agg),
                        RollupTable::BuildingDaily => b.daily.insert(from_days(r.at), agg),
                        _ => b.monthly.insert(from_days(r.at), agg),
                    };
                }
            }
        }
        let zones = ZoneLedger::load(wal.get()?.as_ref(), &catalog.view())?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            catalog,
            wal,
            marks,
            buildings: RwLock::new(buildings),
            step: Mutex::new(()),
            pending_since: Mutex::new(None),
            zones,
            generation: AtomicU64::new(1),
            // Checked against the record of what costs follow at the
            // first step.
            tariffs_seen: AtomicU64::new(u64::MAX),
            versions: PartitionVersions::new(),
        })
    }

    pub(super) fn partition_path(&self, table: RollupTable, key: &str) -> PathBuf {
        let dir = table.dir(&self.data_dir);
        match table {
            RollupTable::SensorHourly
            | RollupTable::BuildingHourly
            | RollupTable::BuildingQuarterly => dir.join(format!("day={key}")).join("part.parquet"),
            RollupTable::BuildingDaily => dir.join(format!("month={key}")).join("part.parquet"),
            RollupTable::BuildingMonthly => dir.join("part.parquet"),
        }
    }

    /// Runs `f` while no rollup step runs, then copies the rollup files
    /// into `dir` (hard links where possible). Used by backup, so the copy
    /// matches the dirty marks `f` copies.
    pub(crate) fn backup_with<T>(
        &self,
        dir: &std::path::Path,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let _step = self.step.locked();
        let out = f()?;
        let from = self.data_dir.join("chunks").join("rollups");
        crate::tree::copy_tree(
            &from,
            &dir.join("chunks").join("rollups"),
            crate::tree::Transfer::LinkOrCopy,
            &|_| false,
        )?;
        Ok(out)
    }

    /// Rows of one partition file (`key` as in its folder's name: a UTC
    /// day `YYYY-MM-DD` or a local month `YYYY-MM`; unused for the monthly
    /// table), or `None` when there is no such file (never written, or
    /// dropped by retention). For readers outside the store.
    pub fn partition_rows(&self, table: RollupTable, key: &str) -> Result<Option<Vec<RollupRow>>> {
        let path = self.partition_path(table, key);
        match std::fs::metadata(&path) {
            Ok(_) => Ok(Some(read_partition(table, &path)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::Error::io(
                format!("reading {}", path.display()),
                e,
            )),
        }
    }

    /// Whether the partition's file exists (see [`Self::partition_rows`]).
    pub fn has_partition(&self, table: RollupTable, key: &str) -> bool {
        self.partition_path(table, key).exists()
    }

    /// The UTC days (days since the epoch) of a by-day table's partitions.
    pub fn partition_days(&self, table: RollupTable) -> Vec<i64> {
        partitions(table, &self.data_dir)
            .iter()
            .filter_map(|p| partition_day(p))
            .collect()
    }

    /// Files of a table kept on disk only (`sensor_hourly`,
    /// `building_quarterly`), for SQL: open, so a query reads each as it
    /// is now even when a step rewrites it meanwhile, and kept in
    /// `pinned` for the query's other scans. Only the partitions of UTC
    /// days that `range` overlaps are opened.
    pub fn open_partitions(
        &self,
        table: RollupTable,
        range: TimeRange,
        pinned: &mut PinnedPartitions,
    ) -> Result<Vec<PinnedPartition>> {
        let wanted = |path: &PathBuf| {
            partition_day(path).is_none_or(|day| {
                day * DAY_MS < range.end_ms && range.start_ms < (day + 1) * DAY_MS
            })
        };
        let list = || {
            partitions(table, &self.data_dir)
                .into_iter()
                .filter(wanted)
                .collect()
        };
        self.versions.open(list, pinned)
    }
}

/// The UTC day (days since the epoch) of a by-day table's partition file.
fn partition_day(path: &std::path::Path) -> Option<i64> {
    let folder = path.parent()?.file_name()?.to_str()?.strip_prefix("day=")?;
    let date = NaiveDate::parse_from_str(folder, "%Y-%m-%d").ok()?;
    Some(days_since_epoch(date))
}

/// Rows of every building from `points`.
pub(super) fn buildings_rows(
    buildings: &HashMap<Arc<str>, BuildingRollups>,
    points: impl Fn(&BuildingRollups) -> Vec<(i64, Agg)>,
) -> Vec<RollupRow> {
    let mut ids: Vec<&Arc<str>> = buildings.keys().collect();
    ids.sort();
    let mut rows = Vec::new();
    for id in ids {
        let b = &buildings[id];
        rows.extend(
            points(b)
                .into_iter()
                .map(|(at, a)| RollupRow::building(id, &b.tenant, at, &a)),
        );
    }
    rows
}
