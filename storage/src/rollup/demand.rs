//! Peak demand: the largest 15-minute average power of a building in a
//! local day (months take the largest of their days), the number a
//! utility's demand charge is billed on. Taken from the average power of
//! the day's quarters in `building_quarterly` (each reading's energy
//! spread over the quarters of its metering interval, so an hourly meter
//! counts its hour's average in each), which the rollup step rewrites
//! before it re-derives the days they fall in.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::files::{RollupTable, read_partition};
use super::rollups::Rollups;
use crate::chunk::{DAY_MS, day_name};
use crate::error::Result;

/// A UTC day's quarters: building -> (quarter start, average kW).
type DayQuarters = HashMap<Arc<str>, Vec<(i64, f64)>>;

/// Quarter partitions read while re-deriving days, each read once.
pub(super) struct QuarterFiles<'a> {
    rollups: &'a Rollups,
    days: HashMap<i64, DayQuarters>,
}

impl<'a> QuarterFiles<'a> {
    pub(super) fn new(rollups: &'a Rollups) -> Self {
        Self {
            rollups,
            days: HashMap::new(),
        }
    }

    /// The peak demand in kW of `building` over quarters starting in
    /// `span`; `None` when it has none there.
    pub(super) fn peak_kw(&mut self, building: &str, span: Range<i64>) -> Result<Option<f64>> {
        let mut peak: Option<f64> = None;
        if span.is_empty() {
            return Ok(None);
        }
        for day in span.start.div_euclid(DAY_MS)..=(span.end - 1).div_euclid(DAY_MS) {
            let quarters = match self.days.entry(day) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let path = self
                        .rollups
                        .partition_path(RollupTable::BuildingQuarterly, &day_name(day));
                    let mut by_building = DayQuarters::new();
                    for r in read_partition(RollupTable::BuildingQuarterly, &path)? {
                        if let Some(kw) = r.peak_kw {
                            by_building
                                .entry(r.building_id)
                                .or_default()
                                .push((r.at, kw));
                        }
                    }
                    e.insert(by_building)
                }
            };
            for &(q, kw) in quarters.get(building).into_iter().flatten() {
                if span.contains(&q) {
                    peak = Some(peak.map_or(kw, |p: f64| p.max(kw)));
                }
            }
        }
        Ok(peak)
    }
}
