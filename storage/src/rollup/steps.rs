//! The rollup steps: one UTC day with dirty marks at a time, recomputing
//! exactly the marked sensors' hours the day's readings can change (see
//! `reach`), then the buildings' quarters, hours, local days and months
//! they touch. Each step rewrites whole partition files
//! and ends by deleting exactly the marks it processed; a crash anywhere
//! just repeats the step.

use crate::sync::{Recover, RecoverRw};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use redb::{ReadableDatabase, ReadableTable};

use super::calendar::{HourCursor, day_start, local_date, next_day, next_month};
use super::demand::{Pricing, QuarterFiles};
use super::derived::Meters;
use super::files::{
    RollupRow, RollupTable, keep_partition, merge_sorted, read_partition, write_partition,
};
use super::reach::Reach;
use super::windows::WindowSpan;
use crate::chunk::{DAY_MS, SensorIds, SensorNames, day_name};
use crate::error::Result;
use crate::ids::SensorKey;
use crate::reading::{Reading, TimeRange};
use crate::tiers::Snapshot;
use crate::wal::marks::DIRTY;

use super::rollups::*;

impl Rollups {
    /// Days that have dirty marks, oldest first.
    pub(super) fn dirty_days(&self) -> Result<Vec<i64>> {
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
    /// (see `rollup::zones`).
    pub fn catch_up(&self, snapshot: impl Fn() -> Snapshot) -> Result<usize> {
        let _step = self.step.locked();
        self.zones
            .adopt_new(self.wal.get()?.as_ref(), &self.catalog.view())?;
        let due = self.zones.due(&self.catalog.view(), Instant::now());
        if let Some(building) = due
            && let Err(e) = self.rebuild_locked(&building, &snapshot())
        {
            // Tried again at a later step; the others' rollups go on.
            tracing::error!(building = %building, error = %e, "rebuilding a building's rollups failed");
        }
        if let Err(e) = self.recost_if_tariffs_changed() {
            // Tried again at the next step; energy goes on meanwhile.
            tracing::error!(error = %e, "re-costing after a tariff change failed");
        }
        let mut processed = 0;
        for day in self.dirty_days()? {
            if self.process_day(day, &snapshot)? {
                processed += 1;
            }
        }
        let left = self.dirty_days()?.len();
        metrics::gauge!("wattline_rollup_dirty_days").set(left as f64);
        let mut since = self.pending_since.locked();
        if left == 0 {
            *since = None;
        } else if since.is_none() {
            *since = Some(Instant::now());
        }
        metrics::gauge!("wattline_rollup_lag_seconds")
            .set(since.map_or(0.0, |t| t.elapsed().as_secs_f64()));
        Ok(processed)
    }

    pub(super) fn process_day(&self, day: i64, snapshot: &impl Fn() -> Snapshot) -> Result<bool> {
        let started = Instant::now();
        // (1)-(3): see `marks`.
        // (1) and (2) under one lock: a batch marking this day again either
        // committed before (and is below `applied`) or marks anew after.
        let applied = {
            let mut known = self.marks.known.locked();
            known.retain(|(d, _)| *d != day);
            self.marks.applied()
        };
        let snap = snapshot();
        let taken: Vec<(u32, u64)> = {
            let txn = self.wal.get()?.begin_read()?;
            let table = txn.open_table(DIRTY)?;
            let mut out = Vec::new();
            for entry in table.range((day, 0)..=(day, u32::MAX))? {
                let (k, v) = entry?;
                if v.value() < applied.0 {
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
        // (The handle is taken again: holding it through the recompute
        // would keep the write-ahead from being compacted.)
        let txn = self.wal.get()?.begin_write()?;
        {
            let mut table = txn.open_table(DIRTY)?;
            for (sensor, seq) in &taken {
                let current = table.get((day, *sensor))?.map(|v| v.value());
                if current == Some(*seq) {
                    table.remove((day, *sensor))?;
                }
            }
        }
        super::changes::note(&txn, &[day], 0)?;
        txn.commit()?;
        metrics::histogram!("wattline_rollup_step_seconds").record(started.elapsed().as_secs_f64());
        Ok(true)
    }

    /// Recomputes the rollups of `sensors` for readings on UTC day `day`.
    pub(super) fn recompute(
        &self,
        day: i64,
        sensors: &HashSet<SensorKey>,
        snap: &Snapshot,
    ) -> Result<()> {
        let (names, zones, buildings, building_sensors) = {
            let view = self.catalog.view();
            let names = SensorNames::from_catalog(&view);
            let buildings: HashSet<Arc<str>> = sensors
                .iter()
                .filter_map(|k| names.ids(*k))
                .map(|i| i.building_id.clone())
                .collect();
            // Every sensor of those buildings: their quarters are summed
            // from all of them.
            let building_sensors: HashSet<SensorKey> = buildings
                .iter()
                .flat_map(|b| view.sensors_of(b).map(|s| s.key))
                .chain(sensors.iter().copied())
                .collect();
            let zones: HashMap<SensorKey, Tz> = sensors
                .iter()
                .filter_map(|k| {
                    let s = view.sensor_by_key(*k)?;
                    let b = view.building(s.building_id.as_str())?;
                    Some((*k, b.timezone.tz()))
                })
                .collect();
            (names, zones, buildings, building_sensors)
        };
        let meters = Meters::of(&self.catalog.view(), building_sensors.iter().copied());
        let reach = Reach::of_day(day, &meters);
        let raw = snap.merged_readings(&|k| building_sensors.contains(&k), reach.raw, &names)?;
        let (energy, quarantined) = meters.energy_and_quarantined(raw);
        let fresh = sensor_hours(&energy, &quarantined, &zones, reach.hours);
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
        for p in reach.partitions() {
            let path = self.partition_path(RollupTable::SensorHourly, &day_name(p));
            let mut rows = Vec::new();
            // Rows of the dirty sensors in reach, replaced unless kept.
            let mut replaced = Vec::new();
            let mut kept: HashSet<(Arc<str>, i64)> = HashSet::new();
            // Rows come sorted by sensor: one lookup per sensor, not per row.
            let mut last: Option<(Arc<str>, bool)> = None;
            for r in read_partition(RollupTable::SensorHourly, &path)? {
                let Some(s) = r.sensor_id.clone() else {
                    rows.push(r);
                    continue;
                };
                let dirty = match &last {
                    Some((l, dirty)) if Arc::ptr_eq(l, &s) => *dirty,
                    _ => last.insert((s.clone(), dirty_ids.contains(&*s))).1,
                };
                if !dirty || !reach.hours.contains(r.at) {
                    rows.push(r);
                } else if r.at < floor {
                    kept.insert((s, r.at));
                    rows.push(r);
                } else {
                    replaced.push(r);
                }
            }
            // In file order, (building, sensor, hour): by rank, then hour.
            let mut ranked: Vec<(u32, i64, &SensorIds, &Agg)> = fresh
                .iter()
                .filter(|((q, _, _), _)| *q == p)
                .filter_map(|((_, key, h), agg)| {
                    names.ids(*key).map(|ids| (ids.rank, *h, ids, agg))
                })
                .filter(|(_, h, ids, _)| {
                    !(*h < floor && kept.contains(&(ids.sensor_id.clone(), *h)))
                })
                .collect();
            ranked.sort_unstable_by_key(|&(rank, h, _, _)| (rank, h));
            let recomputed: Vec<RollupRow> = ranked
                .into_iter()
                .map(|(_, h, ids, agg)| RollupRow {
                    sensor_id: Some(ids.sensor_id.clone()),
                    building_id: ids.building_id.clone(),
                    tenant_id: ids.tenant_id.clone(),
                    at: h,
                    kwh: agg.kwh,
                    peak_kwh: agg.peak_kwh,
                    readings: agg.readings,
                    peak_kw: None,
                    cost: None,
                    quarantined: agg.quarantined,
                })
                .collect();
            // Unchanged (a later day's readings reaching back without
            // changing these hours): the file already holds them.
            let unchanged = replaced == recomputed;
            let rows = merge_sorted(rows, recomputed, |a, b| {
                (&a.building_id, &a.sensor_id, a.at).cmp(&(&b.building_id, &b.sensor_id, b.at))
            });
            if unchanged {
                keep_partition(&path)?;
            } else {
                write_partition(&self.versions, RollupTable::SensorHourly, &path, &rows)?;
            }
            self.replace_building_hours(p, sensors, &names, &rows, &mut touched)?;
        }
        // The quarters, before the days' peak demand is taken from them;
        // not those retention may have thinned.
        let building_zones: HashMap<Arc<str>, Tz> = {
            let view = self.catalog.view();
            buildings
                .iter()
                .filter_map(|b| Some((b.clone(), view.building(b)?.timezone.tz())))
                .collect()
        };
        // (The floor is the start of a UTC day.)
        for quarters in reach.quarter_days().filter(|q| q.start_ms >= floor) {
            let replaced =
                self.replace_quarters(quarters, Some(&buildings), &energy, &meters, &names);
            match replaced {
                Ok(()) => {}
                // The day's file cannot be read to keep the other
                // buildings' rows: rebuilt whole from the raw readings.
                Err(e @ crate::error::Error::ChunkUnreadable { .. }) => {
                    tracing::error!(error = %e, "rebuilding a day's quarters");
                    self.recompute_all_quarters(quarters.start_ms.div_euclid(DAY_MS), snap)?;
                }
                Err(e) => return Err(e),
            }
            // The local days those quarters fall in re-derive their peak
            // and cost (a long interval reaches into the next day).
            for (b, tz) in &building_zones {
                let days = touched.entry(b.clone()).or_default();
                days.insert(local_date(*tz, quarters.start_ms));
                days.insert(local_date(*tz, quarters.end_ms - 1));
            }
        }
        self.rederive(&touched)?;
        Ok(())
    }

    /// Replaces the building hours in partition `p` of the buildings of
    /// `sensors` by the sums of `rows`, writes the partition, and records
    /// the local days touched.
    pub(super) fn replace_building_hours(
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
            let agg = Agg::from(r);
            sums.entry(r.building_id.clone())
                .or_default()
                .entry(r.at)
                .and_modify(|a| a.add(&agg))
                .or_insert(agg);
        }
        let range = p * DAY_MS..(p + 1) * DAY_MS;
        let mut buildings = self.buildings.write_locked();
        let view = self.catalog.view();
        for b in &affected {
            let tz = view.building(b).map_or(Tz::UTC, |b| b.timezone.tz());
            let entry = buildings.entry(b.clone()).or_default();
            if let Some(t) = tenants.get(b) {
                entry.tenant = t.clone();
            } else if let Some(bb) = view.building(b) {
                entry.tenant = Arc::from(bb.tenant_id.as_str());
            }
            let old: BTreeMap<i64, Agg> = entry
                .hourly
                .range(range.clone())
                .map(|(h, a)| (*h, *a))
                .collect();
            let new = sums.remove(b).unwrap_or_default();
            if let Some(first) = first_difference(&old, &new) {
                entry.note_change(&self.generation, WindowSpan::Hour, first);
            }
            let days = touched.entry(b.clone()).or_default();
            for h in old.keys() {
                entry.hourly.remove(h);
                days.insert(local_date(tz, *h));
            }
            for (h, agg) in new {
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
            &self.versions,
            RollupTable::BuildingHourly,
            &self.partition_path(RollupTable::BuildingHourly, &day_name(p)),
            &rows,
        )
    }

    /// Recomputes the `touched` local days from hours, their months from
    /// days, and writes the daily and monthly files concerned.
    pub(super) fn rederive(&self, touched: &HashMap<Arc<str>, BTreeSet<NaiveDate>>) -> Result<()> {
        self.rederive_with(touched, true)
    }

    /// As [`Self::rederive`]; with `from_hours` false the days are taken as
    /// they are and only their months are recomputed.
    pub(super) fn rederive_with(
        &self,
        touched: &HashMap<Arc<str>, BTreeSet<NaiveDate>>,
        from_hours: bool,
    ) -> Result<()> {
        // What the days need of the catalog, taken first: no catalog lock
        // is held while files are read.
        let pricing = Pricing::of(&self.catalog.view(), touched.keys());
        let mut quarters = QuarterFiles::new(self);
        let mut buildings = self.buildings.write_locked();
        let mut months_touched: BTreeSet<NaiveDate> = BTreeSet::new();
        for (b, days) in touched {
            let price = pricing.get(b);
            let tz = price.map_or(Tz::UTC, |p| p.tz);
            let Some(entry) = buildings.get_mut(b) else {
                continue;
            };
            let mut months = BTreeSet::new();
            let mut first_changed = None;
            for &d in days {
                if from_hours {
                    let span = day_start(tz, d)..day_start(tz, next_day(d));
                    let old = match Agg::sum(entry.hourly.range(span.clone()).map(|(_, a)| a)) {
                        Some(mut a) => {
                            let tariff = price.and_then(|p| p.tariff(d));
                            (a.peak_kw, a.cost) = quarters.day(b, span, tz, tariff)?;
                            entry.daily.insert(d, a)
                        }
                        None => entry.daily.remove(&d),
                    };
                    if first_changed.is_none() && old != entry.daily.get(&d).copied() {
                        first_changed = Some(day_start(tz, d));
                    }
                }
                months.insert(
                    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("first of month"),
                );
            }
            if let Some(first) = first_changed {
                entry.note_change(&self.generation, WindowSpan::Day, first);
            }
            for m in months {
                let days = entry.daily.range(m..next_month(m));
                match Agg::sum(days.clone().map(|(_, a)| a)) {
                    Some(mut a) => {
                        // The demand charge of the tariff in effect on the
                        // month's last day with energy.
                        let last = days.last().map(|(d, _)| *d);
                        let charge = price
                            .zip(last)
                            .and_then(|(p, d)| p.tariff(d))
                            .and_then(|t| t.demand_charge_per_kw);
                        if let (Some(c), Some(kw), Some(cost)) = (charge, a.peak_kw, a.cost) {
                            a.cost = Some(crate::kwh::add_kwh(cost, c * kw));
                        }
                        entry.monthly.insert(m, a)
                    }
                    None => entry.monthly.remove(&m),
                };
                months_touched.insert(m);
            }
        }
        for m in &months_touched {
            let rows = buildings_rows(&buildings, |b| {
                b.daily
                    .range(*m..next_month(*m))
                    .map(|(d, a)| (days_since_epoch(*d), *a))
                    .collect()
            });
            let key = format!("{:04}-{:02}", m.year(), m.month());
            write_partition(
                &self.versions,
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
                &self.versions,
                RollupTable::BuildingMonthly,
                &self.partition_path(RollupTable::BuildingMonthly, ""),
                &rows,
            )?;
            // Written: now readers of the change feed may look.
            let middles: Vec<i64> = months_touched
                .iter()
                .map(|m| days_since_epoch(*m) + 14)
                .collect();
            let db = self.wal.get()?;
            let txn = db.begin_write()?;
            super::changes::note_buildings(&txn, &middles)?;
            txn.commit()?;
        }
        Ok(())
    }
}

/// The hours of the sensors in `zones` (the dirty ones) summed from their
/// counted and quarantined readings, keyed by (partition, sensor, hour
/// start), for hours starting in `hours`. A sensor's readings
/// come together and in time order: a run in one hour is summed before it
/// is added to the map, and the hour found once per bucket.
fn sensor_hours(
    energy: &[Reading],
    quarantined: &[Reading],
    zones: &HashMap<SensorKey, Tz>,
    hours: TimeRange,
) -> HashMap<(i64, SensorKey, i64), Agg> {
    let mut fresh: HashMap<(i64, SensorKey, i64), Agg> = HashMap::new();
    let mut add = |key: (i64, SensorKey, i64), agg: Agg| {
        if hours.contains(key.2) {
            fresh.entry(key).and_modify(|a| a.add(&agg)).or_insert(agg);
        }
    };
    let counted = energy.iter().map(|r| (r, Agg::one(r.value_kwh)));
    let all = counted.chain(quarantined.iter().map(|r| (r, Agg::quarantined())));
    // The sensor of the run, its hours (None: not dirty), and the hour summed.
    let mut sensor: Option<(SensorKey, Option<HourCursor>)> = None;
    let mut run: Option<((i64, SensorKey, i64), Agg)> = None;
    for (r, agg) in all {
        let cursor = match &mut sensor {
            Some((k, cursor)) if *k == r.sensor => cursor,
            _ => {
                let cursor = zones.get(&r.sensor).map(|tz| HourCursor::new(*tz));
                &mut sensor.insert((r.sensor, cursor)).1
            }
        };
        let Some(cursor) = cursor else { continue };
        let h = cursor.start_of(r.ts_ms);
        let key = (h.div_euclid(DAY_MS), r.sensor, h);
        match &mut run {
            Some((k, sum)) if *k == key => sum.add(&agg),
            _ => {
                if let Some((k, sum)) = run.replace((key, agg)) {
                    add(k, sum);
                }
            }
        }
    }
    if let Some((k, sum)) = run {
        add(k, sum);
    }
    fresh
}
