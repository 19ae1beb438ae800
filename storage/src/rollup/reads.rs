//! Reading the building-level rollups: energy series for `/energy` and
//! table rows for SQL, from memory.

use crate::sync::RecoverRw;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;

use super::calendar::{day_start, local_date};
use super::files::{RollupRow, RollupTable};
use crate::reading::TimeRange;

use super::rollups::*;

impl Rollups {
    /// The building's buckets whose start lies in `range`, in order.
    pub fn series(
        &self,
        building: &str,
        tz: Tz,
        resolution: Resolution,
        range: TimeRange,
    ) -> Vec<(i64, Agg)> {
        let buildings = self.buildings.read_locked();
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

    /// For each building (id and zone): its energy on the local day and in
    /// the local month holding `now_ms`, under one read lock.
    pub fn today_and_month(
        &self,
        buildings: &[(&str, Tz)],
        now_ms: i64,
    ) -> Vec<(Option<Agg>, Option<Agg>)> {
        let all = self.buildings.read_locked();
        buildings
            .iter()
            .map(|(id, tz)| {
                let Some(b) = all.get(*id) else {
                    return (None, None);
                };
                let today = local_date(*tz, now_ms);
                let month = today.with_day(1).unwrap_or(today);
                (b.daily.get(&today).copied(), b.monthly.get(&month).copied())
            })
            .collect()
    }

    /// Rows of a building-level table for the tenants `sees` accepts, of
    /// `buildings` (`None`: all), whose bucket start (`at`: milliseconds
    /// for hours, days since the epoch for days and months) lies in `at`.
    /// Sorted by building id, then bucket: the SQL tables declare that
    /// order, and DataFusion skips sorts on it.
    pub fn table_rows(
        &self,
        table: RollupTable,
        sees: impl Fn(&str) -> bool,
        buildings: Option<&HashSet<String>>,
        at: Range<i64>,
    ) -> Vec<RollupRow> {
        let all = self.buildings.read_locked();
        let mut ids: Vec<&Arc<str>> = match buildings {
            // Looked up, not filtered: 2,500 buildings cost a query that
            // names one a pass over all of them.
            Some(wanted) => wanted
                .iter()
                .filter_map(|id| all.get_key_value(id.as_str()).map(|(k, _)| k))
                .collect(),
            None => all.keys().collect(),
        };
        ids.sort();
        let dates = |map: &BTreeMap<NaiveDate, Agg>| -> Vec<(i64, Agg)> {
            map.iter()
                .map(|(d, a)| (days_since_epoch(*d), *a))
                .filter(|(d, _)| at.contains(d))
                .collect()
        };
        let mut rows = Vec::new();
        for id in ids {
            let b = &all[id];
            if !sees(&b.tenant) || at.is_empty() {
                continue;
            }
            let points = match table {
                RollupTable::BuildingHourly => {
                    b.hourly.range(at.clone()).map(|(h, a)| (*h, *a)).collect()
                }
                RollupTable::BuildingDaily => dates(&b.daily),
                RollupTable::BuildingMonthly => dates(&b.monthly),
                // On disk only.
                RollupTable::SensorHourly | RollupTable::BuildingQuarterly => vec![],
            };
            rows.extend(
                points
                    .into_iter()
                    .map(|(at, a)| RollupRow::building(id, &b.tenant, at, &a)),
            );
        }
        rows
    }
}
