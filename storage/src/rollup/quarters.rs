//! Building energy per 15-minute clock interval, for alert windows.
//!
//! Only the recent past is kept ([`QUARTER_DAYS`] UTC days), in memory:
//! alert rules with a `15m` window look back that far at most. A rollup
//! step that recomputes a recent UTC day also recomputes that day's
//! quarters of the buildings it touches, from the raw readings of *all*
//! their sensors (a quarter's sum cannot be patched from one sensor's
//! change alone). On open they are rebuilt from the raw readings, so they
//! need no file of their own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::chunk::{DAY_MS, SensorNames};
use crate::error::Result;
use crate::ids::SensorKey;
use crate::reading::TimeRange;
use crate::sync::{Recover, RecoverRw};
use crate::tiers::Snapshot;

use super::derived::Meters;
use super::rollups::*;
use super::windows::WindowSpan;

/// UTC days of quarters kept: today and the two before.
pub const QUARTER_DAYS: i64 = 3;
pub(super) const QUARTER_MS: i64 = 900_000;

impl Rollups {
    /// First UTC day whose quarters are kept, at `now_ms`.
    fn first_quarter_day(now_ms: i64) -> i64 {
        now_ms.div_euclid(DAY_MS) - (QUARTER_DAYS - 1)
    }

    /// Recomputes the quarters of UTC day `day` for `buildings` (all of
    /// them with `None`) from the raw readings in `snap`, if the day is
    /// recent enough to be kept. Blocking.
    /// Returns the newest reading time of each sensor on that day.
    pub(super) fn recompute_quarters(
        &self,
        day: i64,
        buildings: Option<&HashSet<Arc<str>>>,
        snap: &Snapshot,
    ) -> Result<HashMap<SensorKey, i64>> {
        let mut newest: HashMap<SensorKey, i64> = HashMap::new();
        if day < Self::first_quarter_day(crate::now_ms()) {
            return Ok(newest);
        }
        let (names, keys, meters) = {
            let view = self.catalog.view();
            let keys: HashSet<SensorKey> = view
                .sensors()
                .filter(|s| buildings.is_none_or(|b| b.contains(s.building_id.as_str())))
                .map(|s| s.key)
                .collect();
            let meters = Meters::of(&view, keys.iter().copied());
            (SensorNames::from_catalog(&view), keys, meters)
        };
        let range = TimeRange {
            start_ms: day * DAY_MS,
            end_ms: (day + 1) * DAY_MS,
        };
        let reach = meters.reach_ms();
        let window = TimeRange {
            start_ms: range.start_ms - reach,
            end_ms: range.end_ms + reach,
        };
        let raw = snap.merged_readings(&|k| keys.contains(&k), window, &names)?;
        for r in raw.iter().filter(|r| range.contains(r.ts_ms)) {
            let t = newest.entry(r.sensor).or_insert(r.ts_ms);
            *t = (*t).max(r.ts_ms);
        }
        let mut sums: HashMap<Arc<str>, BTreeMap<i64, Agg>> = HashMap::new();
        let mut tenants: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        for r in meters.interval_energy(raw) {
            if !range.contains(r.ts_ms) {
                continue;
            }
            let Some(ids) = names.ids(r.sensor) else {
                continue;
            };
            tenants.insert(ids.building_id.clone(), ids.tenant_id.clone());
            let q = r.ts_ms - r.ts_ms.rem_euclid(QUARTER_MS);
            sums.entry(ids.building_id.clone())
                .or_default()
                .entry(q)
                .and_modify(|a| a.add(&Agg::one(r.value_kwh)))
                .or_insert_with(|| Agg::one(r.value_kwh));
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
        Ok(newest)
    }

    /// Rebuilds every kept day's quarters (on open), returning the newest
    /// reading time of each sensor seen in them. Blocking.
    pub fn rebuild_quarters(&self, snap: &Snapshot) -> Result<HashMap<SensorKey, i64>> {
        let _step = self.step.locked();
        let first = Self::first_quarter_day(crate::now_ms());
        let mut newest = HashMap::new();
        for day in first..first + QUARTER_DAYS {
            for (k, t) in self.recompute_quarters(day, None, snap)? {
                let e = newest.entry(k).or_insert(t);
                *e = (*e).max(t);
            }
        }
        Ok(newest)
    }
}
