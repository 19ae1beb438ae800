//! [`Rollups`]: the rollup tables, kept current in small idempotent steps.
//!
//! One step takes one UTC day `D` that has dirty marks (see
//! [`super::marks`]) and recomputes, for the marked sensors only, the
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use redb::{ReadableDatabase, ReadableTable};

use super::calendar::{day_start, hour_start, local_date, next_day, next_month};
use super::files::{RollupRow, RollupTable, partitions, read_partition, write_partition};
use super::marks::{DIRTY, Marks};
use super::zones::ZoneLedger;
use crate::catalog::Catalog;
use crate::chunk::{DAY_MS, SensorNames, day_name};
use crate::error::Result;
use crate::ids::SensorKey;
use crate::reading::TimeRange;
use crate::store::Snapshot;
use crate::wal::db::WalDb;

const HOUR_MS: i64 = 3_600_000;

/// Energy in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub kwh: f64,
    /// The largest single reading.
    pub peak_kwh: f64,
    pub readings: i64,
}

impl Agg {
    fn one(v: f64) -> Self {
        Self {
            kwh: v,
            peak_kwh: v,
            readings: 1,
        }
    }

    fn add(&mut self, o: &Agg) {
        self.kwh += o.kwh;
        self.peak_kwh = self.peak_kwh.max(o.peak_kwh);
        self.readings += o.readings;
    }

    fn sum<'a>(it: impl IntoIterator<Item = &'a Agg>) -> Option<Agg> {
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

/// A building's rollups, in memory.
#[derive(Debug, Default)]
struct BuildingRollups {
    tenant: Arc<str>,
    /// Hour bucket start (UTC ms) -> energy.
    hourly: BTreeMap<i64, Agg>,
    daily: BTreeMap<NaiveDate, Agg>,
    /// First day of the month -> energy.
    monthly: BTreeMap<NaiveDate, Agg>,
}

/// Resolution of an energy series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Hour,
    Day,
    Month,
}

pub struct Rollups {
    data_dir: PathBuf,
    catalog: Arc<Catalog>,
    wal: Arc<WalDb>,
    marks: Arc<Marks>,
    buildings: RwLock<HashMap<Arc<str>, BuildingRollups>>,
    /// One step at a time.
    step: Mutex<()>,
    /// Since when marks have been waiting (for the lag metric).
    pending_since: Mutex<Option<Instant>>,
    zones: ZoneLedger,
}

fn days_since_epoch(d: NaiveDate) -> i64 {
    i64::from(
        d.num_days_from_ce()
            - NaiveDate::from_ymd_opt(1970, 1, 1)
                .expect("epoch")
                .num_days_from_ce(),
    )
}

fn from_days(days: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days)
}

fn parse_tz(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
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
                    let agg = Agg {
                        kwh: r.kwh,
                        peak_kwh: r.peak_kwh,
                        readings: r.readings,
                    };
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
        })
    }

    fn partition_path(&self, table: RollupTable, key: &str) -> PathBuf {
        let dir = table.dir(&self.data_dir);
        match table {
            RollupTable::SensorHourly | RollupTable::BuildingHourly => {
                dir.join(format!("day={key}")).join("part.parquet")
            }
            RollupTable::BuildingDaily => dir.join(format!("month={key}")).join("part.parquet"),
            RollupTable::BuildingMonthly => dir.join("part.parquet"),
        }
    }

    /// Days that have dirty marks, oldest first.
    fn dirty_days(&self) -> Result<Vec<i64>> {
        let db = self.wal.get()?;
        let txn = db.begin_read()?;
        let table = match txn.open_table(DIRTY) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let mut days = BTreeSet::new();
        for entry in table.iter()? {
            days.insert(entry?.0.value().0);
        }
        Ok(days.into_iter().collect())
    }

    /// Processes every mark whose batch is in memory. `snapshot` gives the
    /// raw readings. Returns how many days were processed. Blocking.
    ///
    /// First, at most one building whose time zone changed is rebuilt
    /// (see [`super::zones`]).
    pub fn catch_up(&self, snapshot: impl Fn() -> Snapshot) -> Result<usize> {
        let _step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        self.zones
            .adopt_new(self.wal.get()?.as_ref(), &self.catalog.view())?;
        let due = self.zones.due(&self.catalog.view(), Instant::now());
        if let Some(building) = due {
            self.rebuild_locked(&building, &snapshot())?;
        }
        let mut processed = 0;
        for day in self.dirty_days()? {
            if self.process_day(day, &snapshot)? {
                processed += 1;
            }
        }
        let left = self.dirty_days()?.len();
        metrics::gauge!("wattline_rollup_dirty_days").set(left as f64);
        let mut since = self.pending_since.lock().unwrap_or_else(|e| e.into_inner());
        if left == 0 {
            *since = None;
        } else if since.is_none() {
            *since = Some(Instant::now());
        }
        metrics::gauge!("wattline_rollup_lag_seconds")
            .set(since.map_or(0.0, |t| t.elapsed().as_secs_f64()));
        Ok(processed)
    }

    fn process_day(&self, day: i64, snapshot: &impl Fn() -> Snapshot) -> Result<bool> {
        let started = Instant::now();
        // (1)-(3): see `marks`.
        // (1) and (2) under one lock: a batch marking this day again either
        // committed before (and is below `applied`) or marks anew after.
        let applied = {
            let mut known = self.marks.known.lock().unwrap_or_else(|e| e.into_inner());
            known.retain(|(d, _)| *d != day);
            self.marks.applied()
        };
        let snap = snapshot();
        let db = self.wal.get()?;
        let taken: Vec<(u32, u64)> = {
            let txn = db.begin_read()?;
            let table = txn.open_table(DIRTY)?;
            let mut out = Vec::new();
            for entry in table.range((day, 0)..=(day, u32::MAX))? {
                let (k, v) = entry?;
                if v.value() < applied {
                    out.push((k.value().1, v.value()));
                }
            }
            out
        };
        if taken.is_empty() {
            return Ok(false);
        }
        let sensors: HashSet<SensorKey> = taken.iter().map(|&(s, _)| SensorKey(s)).collect();
        self.recompute(day, &sensors, &snap)?;

        // (5): delete the marks processed, unless marked again meanwhile.
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(DIRTY)?;
            for (sensor, seq) in &taken {
                let current = table.get((day, *sensor))?.map(|v| v.value());
                if current == Some(*seq) {
                    table.remove((day, *sensor))?;
                }
            }
        }
        txn.commit()?;
        metrics::histogram!("wattline_rollup_step_seconds").record(started.elapsed().as_secs_f64());
        Ok(true)
    }

    /// Recomputes the rollups of `sensors` for readings on UTC day `day`.
    fn recompute(&self, day: i64, sensors: &HashSet<SensorKey>, snap: &Snapshot) -> Result<()> {
        let (names, zones) = {
            let view = self.catalog.view();
            let names = SensorNames::from_catalog(&view);
            let zones: HashMap<SensorKey, Tz> = sensors
                .iter()
                .filter_map(|k| {
                    let s = view.sensor_by_key(*k)?;
                    let b = view.building(s.building_id.as_str())?;
                    Some((*k, parse_tz(&b.timezone)))
                })
                .collect();
            (names, zones)
        };
        // Hours starting on `day - 1` or `day` hold readings from the start
        // of `day - 1` up to at most 90 minutes past the end of `day` (the
        // longest local hour, at a 30-minute DST shift back).
        let window = TimeRange {
            start_ms: (day - 1) * DAY_MS,
            end_ms: (day + 1) * DAY_MS + 2 * HOUR_MS,
        };
        let raw = snap.merged_readings(&|k| sensors.contains(&k), window, &names)?;
        let mut fresh: HashMap<(i64, SensorKey, i64), Agg> = HashMap::new();
        for r in raw {
            let Some(&tz) = zones.get(&r.sensor) else {
                continue;
            };
            let h = hour_start(tz, r.ts_ms);
            let p = h.div_euclid(DAY_MS);
            if p == day - 1 || p == day {
                fresh
                    .entry((p, r.sensor, h))
                    .and_modify(|a| a.add(&Agg::one(r.value_kwh)))
                    .or_insert_with(|| Agg::one(r.value_kwh));
            }
        }
        let dirty_ids: HashSet<&str> = sensors
            .iter()
            .filter_map(|k| names.ids(*k))
            .map(|i| &*i.sensor_id)
            .collect();
        // Hours that start before the raw floor may have lost readings to
        // retention: there an existing sensor hour is kept rather than
        // recomputed from what is left.
        let floor = snap.raw_floor_ms;
        let mut touched: HashMap<Arc<str>, BTreeSet<NaiveDate>> = HashMap::new();
        for p in [day - 1, day] {
            let path = self.partition_path(RollupTable::SensorHourly, &day_name(p));
            let mut rows = Vec::new();
            let mut kept: HashSet<(Arc<str>, i64)> = HashSet::new();
            for r in read_partition(RollupTable::SensorHourly, &path)? {
                match r.sensor_id.clone() {
                    Some(s) if dirty_ids.contains(&*s) => {
                        if r.at < floor {
                            kept.insert((s, r.at));
                            rows.push(r);
                        }
                    }
                    _ => rows.push(r),
                }
            }
            for ((_, key, h), agg) in fresh.iter().filter(|((q, _, _), _)| *q == p) {
                let Some(ids) = names.ids(*key) else { continue };
                if *h < floor && kept.contains(&(ids.sensor_id.clone(), *h)) {
                    continue;
                }
                rows.push(RollupRow {
                    sensor_id: Some(ids.sensor_id.clone()),
                    building_id: ids.building_id.clone(),
                    tenant_id: ids.tenant_id.clone(),
                    at: *h,
                    kwh: agg.kwh,
                    peak_kwh: agg.peak_kwh,
                    readings: agg.readings,
                });
            }
            rows.sort_by(|a, b| {
                (&a.building_id, &a.sensor_id, a.at).cmp(&(&b.building_id, &b.sensor_id, b.at))
            });
            write_partition(RollupTable::SensorHourly, &path, &rows)?;
            self.replace_building_hours(p, sensors, &names, &rows, &mut touched)?;
        }
        self.rederive(&touched)?;
        Ok(())
    }

    /// Replaces the building hours in partition `p` of the buildings of
    /// `sensors` by the sums of `rows`, writes the partition, and records
    /// the local days touched.
    fn replace_building_hours(
        &self,
        p: i64,
        sensors: &HashSet<SensorKey>,
        names: &SensorNames,
        rows: &[RollupRow],
        touched: &mut HashMap<Arc<str>, BTreeSet<NaiveDate>>,
    ) -> Result<()> {
        let affected: HashSet<Arc<str>> = sensors
            .iter()
            .filter_map(|k| names.ids(*k))
            .map(|i| i.building_id.clone())
            .collect();
        let mut sums: HashMap<Arc<str>, BTreeMap<i64, Agg>> = HashMap::new();
        let mut tenants: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        for r in rows.iter().filter(|r| affected.contains(&r.building_id)) {
            tenants.insert(r.building_id.clone(), r.tenant_id.clone());
            let agg = Agg {
                kwh: r.kwh,
                peak_kwh: r.peak_kwh,
                readings: r.readings,
            };
            sums.entry(r.building_id.clone())
                .or_default()
                .entry(r.at)
                .and_modify(|a| a.add(&agg))
                .or_insert(agg);
        }
        let range = p * DAY_MS..(p + 1) * DAY_MS;
        let mut buildings = self.buildings.write().unwrap_or_else(|e| e.into_inner());
        let view = self.catalog.view();
        for b in &affected {
            let tz = view.building(b).map_or(Tz::UTC, |b| parse_tz(&b.timezone));
            let entry = buildings.entry(b.clone()).or_default();
            if let Some(t) = tenants.get(b) {
                entry.tenant = t.clone();
            } else if let Some(bb) = view.building(b) {
                entry.tenant = Arc::from(bb.tenant_id.as_str());
            }
            let old: Vec<i64> = entry.hourly.range(range.clone()).map(|(h, _)| *h).collect();
            let days = touched.entry(b.clone()).or_default();
            for h in old {
                entry.hourly.remove(&h);
                days.insert(local_date(tz, h));
            }
            for (h, agg) in sums.remove(b).unwrap_or_default() {
                days.insert(local_date(tz, h));
                entry.hourly.insert(h, agg);
            }
        }
        drop(view);
        let rows: Vec<RollupRow> = buildings_rows(&buildings, |b| {
            b.hourly
                .range(range.clone())
                .map(|(h, a)| (*h, *a))
                .collect()
        });
        drop(buildings);
        // On failure the step fails and its marks stay: it is repeated.
        write_partition(
            RollupTable::BuildingHourly,
            &self.partition_path(RollupTable::BuildingHourly, &day_name(p)),
            &rows,
        )
    }

    /// Recomputes the `touched` local days from hours, their months from
    /// days, and writes the daily and monthly files concerned.
    fn rederive(&self, touched: &HashMap<Arc<str>, BTreeSet<NaiveDate>>) -> Result<()> {
        self.rederive_with(touched, true)
    }

    /// As [`Self::rederive`]; with `from_hours` false the days are taken as
    /// they are and only their months are recomputed.
    fn rederive_with(
        &self,
        touched: &HashMap<Arc<str>, BTreeSet<NaiveDate>>,
        from_hours: bool,
    ) -> Result<()> {
        let view = self.catalog.view();
        let mut buildings = self.buildings.write().unwrap_or_else(|e| e.into_inner());
        let mut months_touched: BTreeSet<NaiveDate> = BTreeSet::new();
        for (b, days) in touched {
            let tz = view
                .building(b)
                .map_or(Tz::UTC, |bb| parse_tz(&bb.timezone));
            let Some(entry) = buildings.get_mut(b) else {
                continue;
            };
            let mut months = BTreeSet::new();
            for &d in days {
                if from_hours {
                    let span = day_start(tz, d)..day_start(tz, next_day(d));
                    match Agg::sum(entry.hourly.range(span).map(|(_, a)| a)) {
                        Some(a) => entry.daily.insert(d, a),
                        None => entry.daily.remove(&d),
                    };
                }
                months.insert(
                    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("first of month"),
                );
            }
            for m in months {
                match Agg::sum(entry.daily.range(m..next_month(m)).map(|(_, a)| a)) {
                    Some(a) => entry.monthly.insert(m, a),
                    None => entry.monthly.remove(&m),
                };
                months_touched.insert(m);
            }
        }
        drop(view);
        for m in &months_touched {
            let rows = buildings_rows(&buildings, |b| {
                b.daily
                    .range(*m..next_month(*m))
                    .map(|(d, a)| (days_since_epoch(*d), *a))
                    .collect()
            });
            let key = format!("{:04}-{:02}", m.year(), m.month());
            write_partition(
                RollupTable::BuildingDaily,
                &self.partition_path(RollupTable::BuildingDaily, &key),
                &rows,
            )?;
        }
        if !months_touched.is_empty() {
            let rows = buildings_rows(&buildings, |b| {
                b.monthly
                    .iter()
                    .map(|(d, a)| (days_since_epoch(*d), *a))
                    .collect()
            });
            write_partition(
                RollupTable::BuildingMonthly,
                &self.partition_path(RollupTable::BuildingMonthly, ""),
                &rows,
            )?;
        }
        Ok(())
    }

    /// After a building's time zone changed: re-derives its days and months
    /// from its hours now, and marks every day with raw readings of its
    /// sensors, so its hours are recomputed in the new zone. Blocking.
    ///
    /// Returns false, doing nothing, when the building was rebuilt less
    /// than a minute ago: the rollup worker then rebuilds it once that
    /// minute is over, in whatever zone it has by then.
    pub fn rebuild_building(&self, building: &str, snapshot: &Snapshot) -> Result<bool> {
        let _step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        if !self.zones.may_rebuild(building, Instant::now()) {
            return Ok(false);
        }
        self.rebuild_locked(building, snapshot)?;
        Ok(true)
    }

    #[cfg(test)]
    pub(crate) fn set_rebuild_spacing(&self, spacing: std::time::Duration) {
        self.zones.set_spacing(spacing);
    }

    /// [`Rollups::rebuild_building`] with the step lock held.
    fn rebuild_locked(&self, building: &str, snapshot: &Snapshot) -> Result<()> {
        let (sensors, tz, zone): (Vec<u32>, Tz, String) = {
            let view = self.catalog.view();
            let Some(b) = view.building(building) else {
                return Ok(());
            };
            let zone = b.timezone.clone();
            (
                view.sensors_of(building).map(|s| s.key.0).collect(),
                parse_tz(&zone),
                zone,
            )
        };
        let mut days: BTreeSet<i64> = snapshot.chunks.iter().map(|c| c.meta.day).collect();
        let wanted: HashSet<u32> = sensors.iter().copied().collect();
        for r in snapshot.hot_readings(|k| wanted.contains(&k.0), TimeRange::ALL) {
            days.insert(r.ts_ms.div_euclid(DAY_MS));
        }
        let db = self.wal.get()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(DIRTY)?;
            for d in &days {
                for s in &sensors {
                    table.insert((*d, *s), 0)?;
                }
            }
        }
        ZoneLedger::record(&txn, building, &zone)?;
        txn.commit()?;
        self.zones.rebuilt(building, &zone, Instant::now());
        let key: Arc<str> = Arc::from(building);
        let mut touched = HashMap::new();
        {
            let mut buildings = self.buildings.write().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = buildings.get_mut(&key) {
                let dates: BTreeSet<NaiveDate> =
                    entry.hourly.keys().map(|h| local_date(tz, *h)).collect();
                let old_days: Vec<NaiveDate> = entry.daily.keys().copied().collect();
                entry.daily.clear();
                entry.monthly.clear();
                touched.insert(
                    key.clone(),
                    dates.into_iter().chain(old_days).collect::<BTreeSet<_>>(),
                );
            }
        }
        self.rederive(&touched)?;
        self.zones.rederived(&db, building)
    }

    /// The building's buckets whose start lies in `range`, in order.
    pub fn series(
        &self,
        building: &str,
        tz: Tz,
        resolution: Resolution,
        range: TimeRange,
    ) -> Vec<(i64, Agg)> {
        let buildings = self.buildings.read().unwrap_or_else(|e| e.into_inner());
        let Some(b) = buildings.get(building) else {
            return vec![];
        };
        if range.start_ms >= range.end_ms {
            return vec![];
        }
        match resolution {
            Resolution::Hour => b
                .hourly
                .range(range.start_ms..range.end_ms)
                .map(|(h, a)| (*h, *a))
                .collect(),
            Resolution::Day => {
                let from = local_date(tz, range.start_ms.max(-8_000_000_000_000))
                    .pred_opt()
                    .unwrap_or(NaiveDate::MIN);
                let to = local_date(tz, range.end_ms.min(8_000_000_000_000))
                    .succ_opt()
                    .unwrap_or(NaiveDate::MAX);
                b.daily
                    .range(from..=to)
                    .map(|(d, a)| (day_start(tz, *d), *a))
                    .filter(|(t, _)| range.contains(*t))
                    .collect()
            }
            Resolution::Month => b
                .monthly
                .iter()
                .map(|(m, a)| (day_start(tz, *m), *a))
                .filter(|(t, _)| range.contains(*t))
                .collect(),
        }
    }

    /// Rows of a building-level table for the tenants `sees` accepts.
    pub fn table_rows(&self, table: RollupTable, sees: impl Fn(&str) -> bool) -> Vec<RollupRow> {
        let buildings = self.buildings.read().unwrap_or_else(|e| e.into_inner());
        buildings_rows(&buildings, |b| {
            if !sees(&b.tenant) {
                return vec![];
            }
            match table {
                RollupTable::BuildingHourly => b.hourly.iter().map(|(h, a)| (*h, *a)).collect(),
                RollupTable::BuildingDaily => b
                    .daily
                    .iter()
                    .map(|(d, a)| (days_since_epoch(*d), *a))
                    .collect(),
                RollupTable::BuildingMonthly => b
                    .monthly
                    .iter()
                    .map(|(d, a)| (days_since_epoch(*d), *a))
                    .collect(),
                RollupTable::SensorHourly => vec![],
            }
        })
    }

    /// Runs `f` while no rollup step runs, then copies the rollup files
    /// into `dir` (hard links where possible). Used by backup, so the copy
    /// matches the dirty marks `f` copies.
    pub(crate) fn backup_with<T>(
        &self,
        dir: &std::path::Path,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let _step = self.step.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Files of `sensor_hourly`, for SQL.
    pub fn sensor_hourly_files(&self) -> Vec<PathBuf> {
        partitions(RollupTable::SensorHourly, &self.data_dir)
    }

    /// Drops rollups whose buckets start before `cutoff_ms`. Blocking.
    pub fn drop_expired(&self, cutoff_ms: i64) -> Result<()> {
        let _step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        let cutoff_day = cutoff_ms.div_euclid(DAY_MS);
        for table in [RollupTable::SensorHourly, RollupTable::BuildingHourly] {
            for path in partitions(table, &self.data_dir) {
                let dir = path.parent().expect("partition folder");
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let day = name
                    .strip_prefix("day=")
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                if day.is_some_and(|d| days_since_epoch(d) + 1 < cutoff_day) {
                    write_partition(table, &path, &[])?;
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        let mut touched = HashMap::new();
        let view = self.catalog.view();
        let mut buildings = self.buildings.write().unwrap_or_else(|e| e.into_inner());
        for (id, b) in buildings.iter_mut() {
            b.hourly = b.hourly.split_off(&cutoff_ms);
            // Whole local days before the cutoff go; the day holding it stays.
            let tz = view
                .building(id)
                .map_or(Tz::UTC, |bb| parse_tz(&bb.timezone));
            let cutoff_date = local_date(tz, cutoff_ms);
            let old: BTreeSet<NaiveDate> = b.daily.range(..cutoff_date).map(|(d, _)| *d).collect();
            if !old.is_empty() {
                b.daily = b.daily.split_off(&cutoff_date);
                touched.insert(id.clone(), old);
            }
        }
        drop(buildings);
        drop(view);
        // Months of the dropped days are recomputed from the days left, and
        // the daily and monthly files concerned rewritten.
        self.rederive_with(&touched, false)
    }
}

/// Hard-links (or copies) every file below `from` to the same place below
/// `to`, skipping temporary files.
/// Rows of every building from `points`.
fn buildings_rows(
    buildings: &HashMap<Arc<str>, BuildingRollups>,
    points: impl Fn(&BuildingRollups) -> Vec<(i64, Agg)>,
) -> Vec<RollupRow> {
    let mut ids: Vec<&Arc<str>> = buildings.keys().collect();
    ids.sort();
    let mut rows = Vec::new();
    for id in ids {
        let b = &buildings[id];
        rows.extend(points(b).into_iter().map(|(at, a)| RollupRow {
            sensor_id: None,
            building_id: id.clone(),
            tenant_id: b.tenant.clone(),
            at,
            kwh: a.kwh,
            peak_kwh: a.peak_kwh,
            readings: a.readings,
        }));
    }
    rows
}
