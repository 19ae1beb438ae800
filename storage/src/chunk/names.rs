//! Sensor keys to the ids written in chunk files, and back.
//!
//! Chunks store readable ids (so outside readers can use them); memory and
//! the write-ahead use [`SensorKey`]s. A [`SensorNames`] is built from the
//! catalog once per flush, compaction or query, and also fixes the sort
//! order of chunk rows: by building id, then sensor id.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::catalog::CatalogView;
use crate::ids::SensorKey;
use crate::reading::Reading;

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

    /// Sorts `rows` into chunk order, by rank then time, looking each
    /// sensor up once rather than at every comparison: rows grouped by
    /// sensor in time order (as memory holds them) move run by run.
    /// Sensors unknown to the catalog come last, each one's rows together.
    pub fn sort_by_rank(&self, rows: &mut Vec<Reading>) {
        if !rows.is_sorted_by_key(|r| (r.sensor, r.ts_ms)) {
            rows.sort_unstable_by_key(|r| (r.sensor, r.ts_ms));
        }
        let mut runs: Vec<(u32, SensorKey, Range<usize>)> = Vec::new();
        let mut start = 0;
        for run in rows.chunk_by(|a, b| a.sensor == b.sensor) {
            let sensor = run[0].sensor;
            runs.push((self.rank(sensor), sensor, start..start + run.len()));
            start += run.len();
        }
        runs.sort_unstable_by_key(|(rank, sensor, _)| (*rank, *sensor));
        *rows = runs
            .into_iter()
            .flat_map(|(_, _, range)| rows[range].iter().copied())
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run by run gives what a sort by `(rank, ts)` with a lookup per
    /// comparison gives, from memory's order and from any other.
    #[test]
    fn sorting_by_rank_moves_whole_runs_into_chunk_order() {
        let dir = tempfile::tempdir().unwrap();
        let cat = crate::test_util::catalog_with_sensors(dir.path(), 120);
        let names = SensorNames::from_catalog(&cat.view());
        let rows: Vec<Reading> = (0..120u32)
            .flat_map(|s| {
                (0..(s % 7 + 1) as i64).map(move |q| Reading {
                    sensor: SensorKey(s),
                    ts_ms: 1_000 * (q * 37 % 11),
                    value_kwh: f64::from(s) + q as f64,
                })
            })
            .collect();
        let mut want = rows.clone();
        want.sort_unstable_by_key(|r| (names.rank(r.sensor), r.ts_ms));
        // Shuffled, and as memory gives them (by key, then time).
        let mut shuffled = rows.clone();
        shuffled.sort_unstable_by_key(|r| (r.ts_ms * 7919 + i64::from(r.sensor.0)) % 101);
        let mut by_key = rows;
        by_key.sort_unstable_by_key(|r| (r.sensor, r.ts_ms));
        for mut got in [shuffled, by_key] {
            names.sort_by_rank(&mut got);
            assert_eq!(got, want);
        }
    }
}
