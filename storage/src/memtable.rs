//! A memtable: readings of the write-ahead held in memory, deduplicated.
//!
//! The hot data is one active memtable, which the write-ahead writer fills,
//! plus frozen ones waiting to become chunk files. Each sensor's readings
//! sit in a `BTreeMap` from timestamp to value, so a correction replaces the
//! old value in place and a time-range read is one ordered range scan per
//! sensor. Sensors are spread over shards, each behind its own lock, so
//! the writer thread and readers do not hold one lock for everything.

use crate::sync::RecoverRw;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::SensorKey;
use crate::reading::{DAY_MS, Reading, TimeRange, day_of};

const SHARDS: usize = 16;

type Series = BTreeMap<i64, f64>;

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
            let mut map = shard.write_locked();
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

    /// Every reading in `range`, for sensors `wanted` accepts, in (sensor,
    /// ts) order.
    pub fn readings(&self, wanted: impl Fn(SensorKey) -> bool, range: TimeRange) -> Vec<Reading> {
        let mut out = Vec::new();
        if range.start_ms >= range.end_ms {
            return out;
        }
        for shard in &self.shards {
            let map = shard.read_locked();
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

    /// The sensors with readings held, in key order.
    pub(crate) fn sensors(&self) -> Vec<SensorKey> {
        let mut keys: Vec<SensorKey> = self
            .shards
            .iter()
            .flat_map(|shard| shard.read_locked().keys().copied().collect::<Vec<_>>())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The UTC days (see [`day_of`]) with readings held, in order. Each
    /// sensor's readings are visited once per day they span, not once per
    /// reading.
    pub(crate) fn days(&self) -> Vec<i64> {
        let mut days = std::collections::BTreeSet::new();
        for shard in &self.shards {
            for series in shard.read_locked().values() {
                let mut next = series.keys().next().copied();
                while let Some(ts_ms) = next {
                    let day = day_of(ts_ms);
                    days.insert(day);
                    let after = (day + 1).saturating_mul(DAY_MS);
                    next = series.range(after..).next().map(|(&ts, _)| ts);
                }
            }
        }
        days.into_iter().collect()
    }

    /// Appends `sensor`'s readings in `range` to `out`, in time order.
    pub(crate) fn extend_series(
        &self,
        sensor: SensorKey,
        range: TimeRange,
        out: &mut Vec<Reading>,
    ) {
        if range.start_ms >= range.end_ms {
            return;
        }
        let shard = self.shards[sensor.0 as usize % SHARDS].read_locked();
        if let Some(series) = shard.get(&sensor) {
            out.extend(
                series
                    .range(range.start_ms..range.end_ms)
                    .map(|(&ts_ms, &value_kwh)| Reading {
                        sensor,
                        ts_ms,
                        value_kwh,
                    }),
            );
        }
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
        let got = hot.readings(|k| k == SensorKey(1), TimeRange::ALL);
        assert_eq!(got, vec![r(1, 10, 1.75), r(1, 20, 2.0)]);
    }

    #[test]
    fn readings_are_half_open_and_ordered_by_sensor_then_time() {
        let hot = Memtable::default();
        hot.apply(&(0..10).rev().map(|t| r(3, t, t as f64)).collect::<Vec<_>>());
        hot.apply(&[r(1, 5, 0.5)]);
        let range = TimeRange {
            start_ms: 2,
            end_ms: 6,
        };
        let got = hot.readings(|_| true, range);
        assert_eq!(
            got,
            vec![
                r(1, 5, 0.5),
                r(3, 2, 2.0),
                r(3, 3, 3.0),
                r(3, 4, 4.0),
                r(3, 5, 5.0)
            ]
        );
        assert!(
            hot.readings(
                |_| true,
                TimeRange {
                    start_ms: 8,
                    end_ms: 2
                }
            )
            .is_empty()
        );
    }

    /// Days are found by jumping from day to day within each sensor, and
    /// a sensor's readings of a range come in time order.
    #[test]
    fn days_and_one_sensors_range() {
        let hot = Memtable::default();
        let day = DAY_MS;
        hot.apply(&[
            r(1, 5 * day + 10, 1.0),
            r(1, 5 * day + 20, 2.0),
            r(1, 9 * day, 3.0),
            r(2, -day + 1, 4.0),
            r(2, 5 * day - 1, 5.0),
            r(3, 5 * day, 6.0),
        ]);
        assert_eq!(hot.days(), vec![-1, 4, 5, 9]);
        assert_eq!(
            hot.sensors(),
            vec![SensorKey(1), SensorKey(2), SensorKey(3)]
        );
        let mut out = vec![r(9, 0, 0.0)];
        let fifth = TimeRange {
            start_ms: 5 * day,
            end_ms: 6 * day,
        };
        hot.extend_series(SensorKey(1), fifth, &mut out);
        hot.extend_series(SensorKey(2), fifth, &mut out);
        hot.extend_series(SensorKey(4), fifth, &mut out);
        assert_eq!(
            out,
            vec![
                r(9, 0, 0.0),
                r(1, 5 * day + 10, 1.0),
                r(1, 5 * day + 20, 2.0)
            ]
        );
        assert!(Memtable::default().days().is_empty());
    }
}
