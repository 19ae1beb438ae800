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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::sync::Arc;

use super::files::{RollupTable, read_partition};
use super::rollups::Rollups;
use crate::chunk::{DAY_MS, day_name};
use crate::error::Result;
use crate::kwh::round_kwh;
use crate::tariff::Tariff;
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::catalog::CatalogView;

/// A building's zone and its tenant's tariffs, copied out of the catalog.
pub(super) struct Pricing {
    pub(super) tz: Tz,
    tenant: String,
    building: String,
    tariffs: Arc<[Tariff]>,
}

impl Pricing {
    /// The pricing of each of `buildings` still in the catalog.
    pub(super) fn of<'b>(
        view: &CatalogView<'_>,
        buildings: impl Iterator<Item = &'b Arc<str>>,
    ) -> HashMap<Arc<str>, Pricing> {
        let mut by_tenant: HashMap<&str, Arc<[Tariff]>> = HashMap::new();
        buildings
            .filter_map(|b| {
                let bb = view.building(b)?;
                let tenant = bb.tenant_id.as_str();
                let tariffs = by_tenant
                    .entry(tenant)
                    .or_insert_with(|| view.tariffs_of(tenant).cloned().collect())
                    .clone();
                Some((
                    b.clone(),
                    Pricing {
                        tz: bb.timezone.tz(),
                        tenant: tenant.to_owned(),
                        building: bb.id.to_string(),
                        tariffs,
                    },
                ))
            })
            .collect()
    }

    /// The tariff in effect on local day `day`.
    pub(super) fn tariff(&self, day: NaiveDate) -> Option<&Tariff> {
        crate::tariff::tariff_for(self.tariffs.iter(), &self.tenant, &self.building, day)
    }
}

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
            for &(q, kw) in self.quarters(day)?.get(building).into_iter().flatten() {
                if !span.contains(&q) {
                    continue;
                }
                peak = Some(peak.map_or(kw, |p: f64| p.max(kw)));
                // The energy used in the quarter (readings spread over
                // their intervals) at the quarter's price.
                if let Some(t) = tariff
                    && let Some(local) = chrono::DateTime::from_timestamp_millis(q)
                {
                    let price = t.price_at(local.with_timezone(&tz).naive_local());
                    cost = Some(cost.unwrap_or(0.0) + kw / 4.0 * price);
                }
            }
        }
        Ok((peak, cost.map(round_kwh)))
    }

    /// Drops the quarters of UTC days before `day` from memory.
    pub(super) fn forget_before(&mut self, day: i64) {
        self.days.retain(|d, _| *d >= day);
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
                // An unreadable file costs that day its peak and cost
                // (unknown), not the rollups their progress; the next step
                // of the day rewrites it.
                let rows =
                    read_partition(RollupTable::BuildingQuarterly, &path).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "a quarter file is unreadable");
                        Vec::new()
                    });
                for r in rows {
                    if let Some(kw) = r.peak_kw {
                        by_building
                            .entry(r.building_id)
                            .or_default()
                            .push((r.at, kw));
                    }
                }
                e.insert(by_building)
            }
        })
    }
}
