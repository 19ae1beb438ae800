//! Readings as the storage engine sees them: a sensor key, a timestamp in
//! milliseconds since the Unix epoch (UTC) and the interval's energy in kWh.

use crate::ids::SensorKey;

/// One validated meter reading. `(sensor, ts_ms)` identifies it: a later
/// reading with the same pair replaces an earlier one (last write wins).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub sensor: SensorKey,
    /// Start of the metering interval, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Energy consumed in the interval; negative is export. Always finite.
    pub value_kwh: f64,
}

/// A batch of validated readings, stored and acknowledged as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadingBatch {
    pub readings: Vec<Reading>,
}

impl ReadingBatch {
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

/// A half-open time interval `[start_ms, end_ms)` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl TimeRange {
    /// Every representable instant.
    pub const ALL: TimeRange = TimeRange {
        start_ms: i64::MIN,
        end_ms: i64::MAX,
    };

    pub fn contains(&self, ts_ms: i64) -> bool {
        self.start_ms <= ts_ms && ts_ms < self.end_ms
    }
}

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day number (days since 1970-01-01) of a timestamp.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// The timestamps of UTC day `day`, clipped to the i64 range (the first
/// and the last day of that range are partial).
pub(crate) fn day_span(day: i64) -> std::ops::RangeInclusive<i64> {
    let start = day.checked_mul(DAY_MS).unwrap_or(i64::MIN);
    let end = day
        .checked_add(1)
        .and_then(|next| next.checked_mul(DAY_MS))
        .map_or(i64::MAX, |next| next - 1);
    start..=end
}
