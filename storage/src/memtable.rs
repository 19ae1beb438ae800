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
use std::ops::RangeInclusive;

use crate::reading::{Reading, TimeRange, day_of, day_span};

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

    /// The UTC days (see [`day_of`]) with readings held, in order, each
    /// with the sensors that have readings that day (in no particular
    /// order: the caller sorts them as it needs). Each
    /// sensor's readings are visited once per day they span, not once per
    /// reading.
    pub(crate) fn sensors_by_day(&self) -> BTreeMap<i64, Vec<SensorKey>> {
        let mut days: BTreeMap<i64, Vec<SensorKey>> = BTreeMap::new();
        for shard in &self.shards {
            for (&sensor, series) in shard.read_locked().iter() {
                let mut next = series.keys().next().copied();
                while let Some(ts_ms) = next {
                    let day = day_of(ts_ms);
                    days.entry(day).or_default().push(sensor);
                    // The last day of the i64 range has no next one.
                    let Some(after) = day_span(day).end().checked_add(1) else {
                        break;
                    };
                    next = series.range(after..).next().map(|(&ts, _)| ts);
                }
            }
        }
        days
    }

    /// Appends `sensor`'s readings in `range` to `out` in time order, at
    /// most `max` of them; returns the time of the next one in `range` if
    /// `max` stopped it.
    pub(crate) fn extend_series(
        &self,
        sensor: SensorKey,
        range: RangeInclusive<i64>,
        max: usize,
        out: &mut Vec<Reading>,
    ) -> Option<i64> {
        let shard = self.shards[sensor.0 as usize % SHARDS].read_locked();
        let mut series = shard.get(&sensor)?.range(range);
        out.extend(
            series
                .by_ref()
                .take(max)
                .map(|(&ts_ms, &value_kwh)| Reading {
                    sensor,
                    ts_ms,
                    value_kwh,
                }),
        );
        series.next().map(|(&ts, _)| ts)
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

    /// Days are found by jumping from day to day within each sensor, up
    /// to the ends of the i64 range, and a sensor's readings of a range
    /// come in time order, as many as asked for.
    #[test]
    fn days_and_one_sensors_range() {
        let hot = Memtable::default();
        let day = crate::reading::DAY_MS;
        hot.apply(&[
            r(1, 5 * day + 10, 1.0),
            r(1, 5 * day + 20, 2.0),
            r(1, 5 * day + 30, 2.5),
            r(1, 9 * day, 3.0),
            r(2, -day + 1, 4.0),
            r(2, 5 * day - 1, 5.0),
            r(3, 5 * day, 6.0),
            r(3, i64::MAX, 7.0),
            r(3, i64::MIN, 8.0),
        ]);
        let mut days = hot.sensors_by_day();
        days.values_mut()
            .for_each(|sensors| sensors.sort_unstable());
        let k = SensorKey;
        assert_eq!(
            days.into_iter().collect::<Vec<_>>(),
            vec![
                (day_of(i64::MIN), vec![k(3)]),
                (-1, vec![k(2)]),
                (4, vec![k(2)]),
                (5, vec![k(1), k(3)]),
                (9, vec![k(1)]),
                (day_of(i64::MAX), vec![k(3)]),
            ]
        );
        let mut out = vec![r(9, 0, 0.0)];
        assert_eq!(
            hot.extend_series(k(1), day_span(5), 2, &mut out),
            Some(5 * day + 30)
        );
        assert_eq!(hot.extend_series(k(2), day_span(5), 2, &mut out), None);
        assert_eq!(hot.extend_series(k(4), day_span(5), 2, &mut out), None);
        assert_eq!(
            out,
            vec![
                r(9, 0, 0.0),
                r(1, 5 * day + 10, 1.0),
                r(1, 5 * day + 20, 2.0)
            ]
        );
        for d in [day_of(i64::MIN), day_of(i64::MAX)] {
            let mut edge = Vec::new();
            assert_eq!(hot.extend_series(k(3), day_span(d), 9, &mut edge), None);
            assert_eq!(edge.len(), 1);
        }
        assert!(Memtable::default().sensors_by_day().is_empty());
    }
}
