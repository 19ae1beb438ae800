//! The newest reading time of every sensor, kept as batches are applied:
//! what `offline` alert rules read. Seeded at open from the raw readings
//! of the recent days (see the rollups' quarter rebuild), so a sensor
//! silent for longer than that before a restart is unknown until it
//! reports again.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard};

use crate::ids::SensorKey;
use crate::reading::Reading;
use crate::sync::RecoverRw;

#[derive(Debug, Default)]
pub struct LastSeen {
    newest: RwLock<HashMap<SensorKey, i64>>,
}

impl LastSeen {
    /// Takes the readings of an applied batch.
    pub(crate) fn note(&self, readings: &[Reading]) {
        let mut map = self.newest.write_locked();
        for r in readings {
            let t = map.entry(r.sensor).or_insert(r.ts_ms);
            *t = (*t).max(r.ts_ms);
        }
    }

    /// Merges newest times found elsewhere (at open).
    pub(crate) fn merge(&self, found: HashMap<SensorKey, i64>) {
        let mut map = self.newest.write_locked();
        for (k, t) in found {
            let e = map.entry(k).or_insert(t);
            *e = (*e).max(t);
        }
    }

    /// The newest reading time of `sensor` (UTC ms), if known.
    pub fn get(&self, sensor: SensorKey) -> Option<i64> {
        self.newest.read_locked().get(&sensor).copied()
    }

    /// A read lock for many lookups (one evaluation pass).
    pub fn reader(&self) -> LastSeenReader<'_> {
        LastSeenReader(self.newest.read_locked())
    }
}

pub struct LastSeenReader<'a>(RwLockReadGuard<'a, HashMap<SensorKey, i64>>);

impl LastSeenReader<'_> {
    pub fn get(&self, sensor: SensorKey) -> Option<i64> {
        self.0.get(&sensor).copied()
    }
}
