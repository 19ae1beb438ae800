//! Peak demand and cost of a building's local days, from its quarters.
//!
//! Peak demand: the largest 15-minute average power of a building in a
//! local day (months take the largest of their days), the number a
//! utility's demand charge is billed on. Taken from the average power of
//! the day's quarters in `building_quarterly` (each reading's energy
//! spread over the quarters of its metering interval, so an hourly meter
//! counts its hour's average in each), which the rollup step rewrites
//! before it re-derives the days they fall in. Cost: each quarter's energy
//! at the price its local start has under the day's tariff.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::files::{RollupTable, read_partition};
use super::rollups::Rollups;
use crate::chunk::{DAY_MS, day_name};
use crate::error::Result;
use crate::kwh::round_kwh;
use crate::tariff::Tariff;
use chrono::NaiveDate;
use chrono_tz::Tz;

use super::calendar::{day_start, next_day};
use crate::sync::RecoverRw;

/// A UTC day's quarters: building -> (quarter start, kWh, average kW).
type DayQuarters = HashMap<Arc<str>, Vec<(i64, f64, Option<f64>)>>;

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

    /// Peak demand in kW and cost of `building` over the quarters
    /// starting in `span` (a local day in `tz`) under `tariff`; `None`
    /// where there are no quarters (or no tariff).
    pub(super) fn day(
        &mut self,
        building: &str,
        span: Range<i64>,
        tz: Tz,
        tariff: Option<&Tariff>,
    ) -> Result<(Option<f64>, Option<f64>)> {
        let mut peak: Option<f64> = None;
        let mut cost: Option<f64> = None;
        if span.is_empty() {
            return Ok((None, None));
        }
        for day in span.start.div_euclid(DAY_MS)..=(span.end - 1).div_euclid(DAY_MS) {
            for &(q, kwh, kw) in self.quarters(day)?.get(building).into_iter().flatten() {
                if !span.contains(&q) {
                    continue;
                }
                if let Some(kw) = kw {
                    peak = Some(peak.map_or(kw, |p: f64| p.max(kw)));
                }
                if let Some(t) = tariff
                    && let Some(local) = chrono::DateTime::from_timestamp_millis(q)
                {
                    let price = t.price_at(local.with_timezone(&tz).naive_local());
                    cost = Some(cost.unwrap_or(0.0) + kwh * price);
                }
            }
        }
        Ok((peak, cost.map(round_kwh)))
    }

    /// UTC day `day`'s quarters, read on first use.
    fn quarters(&mut self, day: i64) -> Result<&DayQuarters> {
        Ok(match self.days.entry(day) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let path = self
                    .rollups
                    .partition_path(RollupTable::BuildingQuarterly, &day_name(day));
                let mut by_building = DayQuarters::new();
                for r in read_partition(RollupTable::BuildingQuarterly, &path)? {
                    by_building
                        .entry(r.building_id)
                        .or_default()
                        .push((r.at, r.kwh, r.peak_kw));
                }
                e.insert(by_building)
            }
        })
    }
}

impl Rollups {
    /// After a tariff change, re-costs every building's days (and months)
    /// from their quarters. Tariffs change rarely; this reads each UTC day's
    /// quarter file once. Blocking; call with the step lock held.
    pub(super) fn recost_if_tariffs_changed(&self) -> Result<()> {
        let version = self.catalog.tariff_version();
        if self.tariffs_seen.load(Ordering::Acquire) == version {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let view = self.catalog.view();
        let mut quarters = QuarterFiles::new(self);
        let mut touched: HashMap<Arc<str>, BTreeSet<NaiveDate>> = HashMap::new();
        {
            let mut buildings = self.buildings.write_locked();
            for (b, entry) in buildings.iter_mut() {
                let Some(building) = view.building(b) else {
                    continue;
                };
                let tz = building.timezone.tz();
                for (d, a) in entry.daily.iter_mut() {
                    let span = day_start(tz, *d)..day_start(tz, next_day(*d));
                    (a.peak_kw, a.cost) =
                        quarters.day(b, span, tz, view.tariff_for(building, *d))?;
                }
                touched.insert(b.clone(), entry.daily.keys().copied().collect());
            }
        }
        drop(view);
        self.rederive_with(&touched, false)?;
        self.tariffs_seen.store(version, Ordering::Release);
        tracing::info!(
            buildings = touched.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "re-costed the rollups after a tariff change"
        );
        Ok(())
    }
}
