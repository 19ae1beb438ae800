//! Sensor keys to the ids written in chunk files, and back.
//!
//! Chunks store readable ids (so outside readers can use them); memory and
//! the write-ahead use [`SensorKey`]s. A [`SensorNames`] is built from the
//! catalog once per flush, compaction or query, and also fixes the sort
//! order of chunk rows: by building id, then sensor id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::CatalogView;
use crate::ids::SensorKey;

#[derive(Debug, Clone)]
pub struct SensorIds {
    /// Position in `(building_id, sensor_id)` order.
    pub rank: u32,
    pub sensor_id: Arc<str>,
    pub building_id: Arc<str>,
    pub tenant_id: Arc<str>,
}

#[derive(Debug, Default, Clone)]
pub struct SensorNames {
    by_key: HashMap<SensorKey, SensorIds>,
    by_id: HashMap<Arc<str>, SensorKey>,
}

impl SensorNames {
    pub fn from_catalog(view: &CatalogView<'_>) -> Self {
        let mut sensors: Vec<_> = view.state.sensors.values().collect();
        sensors.sort_unstable_by(|a, b| (&a.building_id, &a.id).cmp(&(&b.building_id, &b.id)));
        let mut names = Self::default();
        for (rank, s) in sensors.into_iter().enumerate() {
            let ids = SensorIds {
                rank: rank as u32,
                sensor_id: Arc::from(s.id.as_str()),
                building_id: Arc::from(s.building_id.as_str()),
                tenant_id: Arc::from(s.tenant_id.as_str()),
            };
            names.by_id.insert(ids.sensor_id.clone(), s.key);
            names.by_key.insert(s.key, ids);
        }
        names
    }

    pub fn ids(&self, key: SensorKey) -> Option<&SensorIds> {
        self.by_key.get(&key)
    }

    pub fn key(&self, sensor_id: &str) -> Option<SensorKey> {
        self.by_id.get(sensor_id).copied()
    }

    /// Sort position of a sensor; unknown keys sort last.
    pub fn rank(&self, key: SensorKey) -> u32 {
        self.by_key.get(&key).map_or(u32::MAX, |s| s.rank)
    }
}
