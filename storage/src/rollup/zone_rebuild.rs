//! Rebuilding a building's rollups after its time zone changed (see
//! [`super::zones`] for when).

use crate::sync::{Recover, RecoverRw};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;

use super::calendar::local_date;
use super::zones::ZoneLedger;
use crate::chunk::DAY_MS;
use crate::error::Result;
use crate::reading::TimeRange;
use crate::tiers::Snapshot;
use crate::wal::marks::DIRTY;

use super::rollups::*;
use crate::catalog::Zone;

impl Rollups {
    /// After a building's time zone changed: re-derives its days and months
    /// from its hours now, and marks every day with raw readings of its
    /// sensors, so its hours are recomputed in the new zone. Blocking.
    ///
    /// Returns false, doing nothing, when the building was rebuilt less
    /// than a minute ago: the rollup worker then rebuilds it once that
    /// minute is over, in whatever zone it has by then.
    pub fn rebuild_building(&self, building: &str, snapshot: &Snapshot) -> Result<bool> {
        let _step = self.step.locked();
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
    pub(super) fn rebuild_locked(&self, building: &str, snapshot: &Snapshot) -> Result<()> {
        let (sensors, zone): (Vec<u32>, Zone) = {
            let view = self.catalog.view();
            let Some(b) = view.building(building) else {
                return Ok(());
            };
            (
                view.sensors_of(building).map(|s| s.key.0).collect(),
                b.timezone,
            )
        };
        let (tz, zone) = (zone.tz(), zone.name());
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
        ZoneLedger::record(&txn, building, zone)?;
        txn.commit()?;
        self.zones.rebuilt(building, zone, Instant::now());
        let key: Arc<str> = Arc::from(building);
        let mut touched = HashMap::new();
        {
            let mut buildings = self.buildings.write_locked();
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
}
