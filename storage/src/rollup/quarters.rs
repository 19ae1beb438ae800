//! Building energy per 15-minute clock interval: the `building_quarterly`
//! table on disk (for peak demand, see `demand`) and the recent ones in
//! memory for alert windows.
//!
//! A rollup step recomputes the quarters its readings can change (see
//! `reach`) of the buildings it touches from the raw readings of *all*
//! their sensors (a quarter's sum cannot be patched from one sensor's
//! change alone) and rewrites the partitions of their UTC days. Only the
//! recent past ([`QUARTER_DAYS`] UTC days) is also held in memory: alert
//! rules with a `15m` window look back that far at most. On open those days are rebuilt from the raw readings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::chunk::{DAY_MS, SensorNames, day_name};
use crate::error::Result;
use crate::ids::SensorKey;
use crate::reading::{Reading, TimeRange};
use crate::sync::{Recover, RecoverRw};
use crate::tiers::Snapshot;

use super::derived::Meters;
use super::files::{
    RollupRow, RollupTable, keep_partition, merge_sorted, read_partition, write_partition,
};
use super::rollups::*;
use super::windows::WindowSpan;

/// UTC days of quarters kept in memory: today and the two before.
pub const QUARTER_DAYS: i64 = 3;
pub(super) const QUARTER_MS: i64 = 900_000;

/// The UTC range of day `day`.
pub(super) fn day_range(day: i64) -> TimeRange {
    TimeRange {
        start_ms: day * DAY_MS,
        end_ms: (day + 1) * DAY_MS,
    }
}

impl Rollups {
    /// First UTC day whose quarters are kept in memory, at `now_ms`.
    fn first_quarter_day(now_ms: i64) -> i64 {
        now_ms.div_euclid(DAY_MS) - (QUARTER_DAYS - 1)
    }

    /// Recomputes the quarters of UTC day `day` for every building from
    /// the raw readings in `snap` (on open). Blocking. Returns the newest
    /// reading time of each sensor on that day.
    pub(super) fn recompute_all_quarters(
        &self,
        day: i64,
        snap: &Snapshot,
    ) -> Result<HashMap<SensorKey, i64>> {
        let (names, meters) = {
            let view = self.catalog.view();
            let meters = Meters::of(&view, view.sensors().map(|s| s.key));
            (SensorNames::from_catalog(&view), meters)
        };
        let range = day_range(day);
        let reach = meters.reach_ms();
        let window = TimeRange {
            start_ms: range.start_ms - reach - meters.span_ms(),
            end_ms: range.end_ms + reach,
        };
        let raw = snap.merged_readings(&|_| true, window, &names)?;
        let mut newest: HashMap<SensorKey, i64> = HashMap::new();
        for r in raw.iter().filter(|r| range.contains(r.ts_ms)) {
            let t = newest.entry(r.sensor).or_insert(r.ts_ms);
            *t = (*t).max(r.ts_ms);
        }
        let energy = meters.interval_energy(raw);
        self.replace_quarters(range, None, &energy, &meters, &names)?;
        Ok(newest)
    }

    /// Replaces the quarters in `range` (quarter-aligned, within one UTC
    /// day) of `buildings` (all of them with `None`) by the sums of
    /// `energy` (interval energy of every sensor of those buildings, from
    /// `meters.span_ms()` before the range to its end), on disk and, for a
    /// recent day, in memory.
    pub(super) fn replace_quarters(
        &self,
        range: TimeRange,
        buildings: Option<&HashSet<Arc<str>>>,
        energy: &[Reading],
        meters: &Meters,
        names: &SensorNames,
    ) -> Result<()> {
        let day = range.start_ms.div_euclid(DAY_MS);
        // The range's quarters per building, found once per sensor: the
        // work per reading is one map lookup and two array slots.
        struct Slot {
            building: Arc<str>,
            tenant: Arc<str>,
            sums: Vec<Option<Agg>>,
            // Energy spread over each reading's interval, for demand.
            spread: Vec<Option<f64>>,
        }
        let quarters_in_range = ((range.end_ms - range.start_ms) / QUARTER_MS) as usize;
        let mut slots: Vec<Slot> = Vec::new();
        let mut slot_of_building: HashMap<Arc<str>, usize> = HashMap::new();
        let mut slot_of: HashMap<SensorKey, Option<usize>> = HashMap::new();
        let from = range.start_ms - meters.span_ms();
        for r in energy {
            if r.ts_ms < from || r.ts_ms >= range.end_ms {
                continue;
            }
            let slot = *slot_of.entry(r.sensor).or_insert_with(|| {
                let ids = names.ids(r.sensor)?;
                if buildings.is_some_and(|b| !b.contains(&ids.building_id)) {
                    return None;
                }
                Some(
                    *slot_of_building
                        .entry(ids.building_id.clone())
                        .or_insert_with(|| {
                            slots.push(Slot {
                                building: ids.building_id.clone(),
                                tenant: ids.tenant_id.clone(),
                                sums: vec![None; quarters_in_range],
                                spread: vec![None; quarters_in_range],
                            });
                            slots.len() - 1
                        }),
                )
            });
            let Some(slot) = slot.map(|i| &mut slots[i]) else {
                continue;
            };
            let q = r.ts_ms.div_euclid(QUARTER_MS) - range.start_ms / QUARTER_MS;
            let n = meters.quarters(r.sensor);
            let share = r.value_kwh / n as f64;
            // Only the quarters of the interval that lie in the range.
            for k in q.max(0)..(q + n).min(quarters_in_range as i64) {
                *slot.spread[k as usize].get_or_insert(0.0) += share;
            }
            if q >= 0 {
                let one = Agg::one(r.value_kwh);
                match &mut slot.sums[q as usize] {
                    Some(a) => a.add(&one),
                    none => *none = Some(one),
                }
            }
        }
        let at = |i: usize| range.start_ms + i as i64 * QUARTER_MS;
        let mut sums: HashMap<Arc<str>, BTreeMap<i64, Agg>> = HashMap::new();
        let mut spread: HashMap<Arc<str>, BTreeMap<i64, f64>> = HashMap::new();
        let mut tenants: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        for s in slots {
            let quarters: BTreeMap<i64, Agg> = (s.sums.iter().enumerate())
                .filter_map(|(i, a)| Some((at(i), (*a)?)))
                .collect();
            if !quarters.is_empty() {
                sums.insert(s.building.clone(), quarters);
            }
            spread.insert(
                s.building.clone(),
                (s.spread.iter().enumerate())
                    .filter_map(|(i, k)| Some((at(i), (*k)?)))
                    .collect(),
            );
            tenants.insert(s.building, s.tenant);
        }
        self.write_quarters(range, buildings, &sums, &spread, &tenants)?;
        if day < Self::first_quarter_day(crate::now_ms()) {
            return Ok(());
        }
        let floor = Self::first_quarter_day(crate::now_ms()) * DAY_MS;
        let mut map = self.buildings.write_locked();
        // Each building once: a second turn would find no fresh sums and
        // clear the day.
        let affected: HashSet<Arc<str>> = match buildings {
            Some(b) => b.clone(),
            None => map.keys().chain(sums.keys()).cloned().collect(),
        };
        for b in affected {
            let fresh = sums.remove(&b).unwrap_or_default();
            if fresh.is_empty() && !map.contains_key(&b) {
                continue;
            }
            let entry = map.entry(b.clone()).or_default();
            if let Some(t) = tenants.get(&b) {
                entry.tenant = t.clone();
            }
            let mut kept = entry.quarters.split_off(&range.start_ms);
            let later = kept.split_off(&range.end_ms);
            let changed = first_difference(&kept, &fresh);
            entry.quarters.retain(|q, _| *q >= floor);
            entry.quarters.extend(fresh);
            entry.quarters.extend(later);
            if let Some(first) = changed {
                entry.note_change(&self.generation, WindowSpan::Quarter, first);
            }
        }
        Ok(())
    }

    /// Rewrites the `building_quarterly` partition of the UTC day of
    /// `range` with `sums` and the average power of `spread` in place of
    /// the rows of `buildings` (all with `None`) in `range`.
    fn write_quarters(
        &self,
        range: TimeRange,
        buildings: Option<&HashSet<Arc<str>>>,
        sums: &HashMap<Arc<str>, BTreeMap<i64, Agg>>,
        spread: &HashMap<Arc<str>, BTreeMap<i64, f64>>,
        tenants: &HashMap<Arc<str>, Arc<str>>,
    ) -> Result<()> {
        let day = range.start_ms.div_euclid(DAY_MS);
        let path = self.partition_path(RollupTable::BuildingQuarterly, &day_name(day));
        // The file's rows replaced, and the others (other buildings, other
        // quarters); nothing is kept when all of a whole day is replaced.
        let whole = buildings.is_none() && range == day_range(day);
        let (kept, replaced): (Vec<RollupRow>, Option<Vec<RollupRow>>) = if whole {
            (Vec::new(), None)
        } else {
            let (replaced, kept) = read_partition(RollupTable::BuildingQuarterly, &path)?
                .into_iter()
                .partition(|r| {
                    buildings.is_none_or(|b| b.contains(&r.building_id)) && range.contains(r.at)
                });
            (kept, Some(replaced))
        };
        let none = Agg {
            kwh: 0.0,
            peak_kwh: 0.0,
            readings: 0,
            peak_kw: None,
            cost: None,
            quarantined: 0,
        };
        let mut rows = Vec::new();
        for (b, quarters) in spread {
            let Some(tenant) = tenants.get(b) else {
                continue;
            };
            let energy = sums.get(b);
            rows.extend(quarters.iter().map(|(q, kwh)| {
                let a = energy.and_then(|e| e.get(q)).unwrap_or(&none);
                RollupRow {
                    sensor_id: None,
                    building_id: b.clone(),
                    tenant_id: tenant.clone(),
                    at: *q,
                    kwh: a.kwh,
                    peak_kwh: a.peak_kwh,
                    readings: a.readings,
                    // kWh in a quarter hour is a quarter of the average kW.
                    peak_kw: Some(crate::kwh::round_kwh(kwh * 4.0)),
                    cost: None,
                    quarantined: 0,
                }
            }));
        }
        let order =
            |a: &RollupRow, b: &RollupRow| (&a.building_id, a.at).cmp(&(&b.building_id, b.at));
        rows.sort_by(order);
        if replaced.as_ref() == Some(&rows) {
            // The file holds these rows already (a step for a later day
            // whose readings reach back without changing this one).
            return keep_partition(&path);
        }
        let rows = merge_sorted(kept, rows, order);
        write_partition(&self.versions, RollupTable::BuildingQuarterly, &path, &rows)
    }

    /// Rebuilds every kept day's quarters (on open), returning the newest
    /// reading time of each sensor seen in them. Blocking.
    pub fn rebuild_quarters(&self, snap: &Snapshot) -> Result<HashMap<SensorKey, i64>> {
        let _step = self.step.locked();
        let first = Self::first_quarter_day(crate::now_ms());
        let mut newest = HashMap::new();
        for day in first..first + QUARTER_DAYS {
            for (k, t) in self.recompute_all_quarters(day, snap)? {
                let e = newest.entry(k).or_insert(t);
                *e = (*e).max(t);
            }
        }
        Ok(newest)
    }
}
