//! A memtable: readings of the write-ahead held in memory, deduplicated.
//!
//! The hot data is one active memtable, which the write-ahead writer fills,
//! plus frozen ones waiting to become chunk files. Each sensor's readings
//! sit in a `BTreeMap` from timestamp to value, so a correction replaces the
//! old value in place and a time-range read is one ordered range scan.
//! Sensors are spread over shards, each behind its own lock, so the writer
//! thread and readers of other sensors do not contend.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::SensorKey;
use crate::reading::{Reading, TimeRange};

const SHARDS: usize = 16;

type Series = BTreeMap<i64, f64>;

/// What reading a sensor's range found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesSlice {
    /// `(ts_ms, value_kwh)` in timestamp order.
    pub points: Vec<(i64, f64)>,
    /// True when more points than the limit lay in the range.
    pub truncated: bool,
}

pub struct Memtable {
    shards: Vec<RwLock<HashMap<SensorKey, Series>>>,
    distinct: AtomicU64,
}

impl Default for Memtable {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            distinct: AtomicU64::new(0),
        }
    }
}

impl Memtable {
    fn shard(&self, key: SensorKey) -> &RwLock<HashMap<SensorKey, Series>> {
        &self.shards[key.0 as usize % SHARDS]
    }

    /// Applies readings in order; a later one for the same `(sensor, ts)`
    /// replaces an earlier one.
    pub(crate) fn apply(&self, readings: &[Reading]) {
        let mut added = 0u64;
        for (i, shard) in self.shards.iter().enumerate() {
            let mut mine = readings
                .iter()
                .filter(|r| r.sensor.0 as usize % SHARDS == i)
                .peekable();
            if mine.peek().is_none() {
                continue;
            }
            let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
            for r in mine {
                if map
                    .entry(r.sensor)
                    .or_default()
                    .insert(r.ts_ms, r.value_kwh)
                    .is_none()
                {
                    added += 1;
                }
            }
        }
        self.distinct.fetch_add(added, Ordering::Relaxed);
    }

    /// The sensor's readings in `range`, at most `limit` of them.
    pub fn range(&self, sensor: SensorKey, range: TimeRange, limit: usize) -> SeriesSlice {
        let map = self.shard(sensor).read().unwrap_or_else(|e| e.into_inner());
        let Some(series) = map.get(&sensor) else {
            return SeriesSlice::default();
        };
        if range.start_ms >= range.end_ms {
            return SeriesSlice::default();
        }
        let mut iter = series
            .range(range.start_ms..range.end_ms)
            .map(|(&t, &v)| (t, v));
        let points: Vec<_> = iter.by_ref().take(limit).collect();
        let truncated = iter.next().is_some();
        SeriesSlice { points, truncated }
    }

    /// Every reading in `range`, for sensors `wanted` accepts, in (sensor,
    /// ts) order.
    pub fn readings(&self, wanted: impl Fn(SensorKey) -> bool, range: TimeRange) -> Vec<Reading> {
        let mut out = Vec::new();
        if range.start_ms >= range.end_ms {
            return out;
        }
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            for (&sensor, series) in map.iter().filter(|(k, _)| wanted(**k)) {
                out.extend(series.range(range.start_ms..range.end_ms).map(
                    |(&ts_ms, &value_kwh)| Reading {
                        sensor,
                        ts_ms,
                        value_kwh,
                    },
                ));
            }
        }
        out.sort_unstable_by_key(|r| (r.sensor, r.ts_ms));
        out
    }

    /// Number of distinct `(sensor, ts)` readings held.
    pub fn len(&self) -> u64 {
        self.distinct.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sensor: u32, ts_ms: i64, value_kwh: f64) -> Reading {
        Reading {
            sensor: SensorKey(sensor),
            ts_ms,
            value_kwh,
        }
    }

    #[test]
    fn last_write_wins_and_counts_distinct() {
        let hot = Memtable::default();
        hot.apply(&[r(1, 10, 1.0), r(1, 20, 2.0), r(2, 10, 5.0)]);
        hot.apply(&[r(1, 10, 1.5), r(1, 10, 1.75)]);
        assert_eq!(hot.len(), 3);
        let got = hot.range(SensorKey(1), TimeRange::ALL, 10);
        assert_eq!(got.points, vec![(10, 1.75), (20, 2.0)]);
        assert!(!got.truncated);
    }

    #[test]
    fn range_is_half_open_and_limited() {
        let hot = Memtable::default();
        hot.apply(&(0..10).map(|t| r(3, t, t as f64)).collect::<Vec<_>>());
        let got = hot.range(
            SensorKey(3),
            TimeRange {
                start_ms: 2,
                end_ms: 8,
            },
            3,
        );
        assert_eq!(got.points, vec![(2, 2.0), (3, 3.0), (4, 4.0)]);
        assert!(got.truncated);
        let empty = hot.range(
            SensorKey(3),
            TimeRange {
                start_ms: 8,
                end_ms: 2,
            },
            3,
        );
        assert!(empty.points.is_empty());
    }
}
