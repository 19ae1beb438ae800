//! Rollup retention: buckets older than `retention.rollups` are dropped,
//! cutting at each building's local date.

use crate::sync::{Recover, RecoverRw};
use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::calendar::local_date;
use super::files::{RollupTable, partitions, write_partition};
use crate::chunk::DAY_MS;
use crate::error::Result;

use super::rollups::*;

impl Rollups {
    /// Drops rollups whose buckets start before `cutoff_ms`. Blocking.
    pub fn drop_expired(&self, cutoff_ms: i64) -> Result<()> {
        let _step = self.step.locked();
        let cutoff_day = cutoff_ms.div_euclid(DAY_MS);
        for table in [
            RollupTable::SensorHourly,
            RollupTable::BuildingHourly,
            RollupTable::BuildingQuarterly,
        ] {
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
                    write_partition(&self.versions, table, &path, &[])?;
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        let mut touched = HashMap::new();
        let view = self.catalog.view();
        let mut buildings = self.buildings.write_locked();
        for (id, b) in buildings.iter_mut() {
            b.hourly = b.hourly.split_off(&cutoff_ms);
            // Whole local days before the cutoff go; the day holding it stays.
            let tz = view.building(id).map_or(Tz::UTC, |bb| bb.timezone.tz());
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
