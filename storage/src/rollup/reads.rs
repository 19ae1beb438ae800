//! Reading the building-level rollups: energy series for `/energy` and
//! table rows for SQL, from memory.

use crate::sync::RecoverRw;
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

    /// Rows of a building-level table for the tenants `sees` accepts.
    pub fn table_rows(&self, table: RollupTable, sees: impl Fn(&str) -> bool) -> Vec<RollupRow> {
        let buildings = self.buildings.read_locked();
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
                // On disk only.
                RollupTable::SensorHourly | RollupTable::BuildingQuarterly => vec![],
            }
        })
    }
}
