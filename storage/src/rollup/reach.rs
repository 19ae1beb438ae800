//! What the readings of one UTC day can change, and so what a rollup step
//! for that day recomputes: not whole days around it, but the hours and
//! quarter hours its readings (and, for meters, their neighbours) fall in.
//!
//! A reading of an interval meter counts in its own hour and quarter. A
//! register reading or power sample also changes the derived energy of
//! readings up to the meter's reach around it (see [`crate::meter`]); an
//! interval longer than a quarter spreads its demand over the quarters
//! after it. A step recomputes exactly those hours and quarters, keeping
//! every other row of the partitions it rewrites, and reads the raw
//! readings they count plus the neighbours their derivation needs.

use crate::chunk::DAY_MS;
use crate::reading::TimeRange;

use super::derived::Meters;
use super::quarters::QUARTER_MS;

/// The longest hour bucket: a local hour, cut where the UTC offset
/// changes (see `calendar`), so never longer than an hour. A reading lies
/// in an hour that started less than this before it.
const LONGEST_HOUR_MS: i64 = 60 * 60_000;

/// The rows one day's readings can change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reach {
    /// Sensor hours, by local hour start.
    pub(super) hours: TimeRange,
    /// Building quarter hours (their energy and their demand), aligned to
    /// quarter hours.
    pub(super) quarters: TimeRange,
    /// The raw readings the recomputed hours and quarters need.
    pub(super) raw: TimeRange,
}

impl Reach {
    /// What the readings of UTC day `day` can change, for buildings with
    /// `meters`.
    pub(super) fn of_day(day: i64, meters: &Meters) -> Self {
        let reach = meters.reach_ms();
        let span = meters.span_ms();
        // Readings whose counted energy (or quarantine) may change.
        let changed = TimeRange {
            start_ms: day * DAY_MS - reach,
            end_ms: (day + 1) * DAY_MS + reach,
        };
        let hours = TimeRange {
            start_ms: changed.start_ms - LONGEST_HOUR_MS,
            end_ms: changed.end_ms,
        };
        let quarters = TimeRange {
            start_ms: changed.start_ms.div_euclid(QUARTER_MS) * QUARTER_MS,
            end_ms: (changed.end_ms + span + QUARTER_MS - 1).div_euclid(QUARTER_MS) * QUARTER_MS,
        };
        // Readings counted: those of the hours, those in the quarters and
        // those whose interval reaches into them; then derivation's
        // neighbours on both sides.
        let raw = TimeRange {
            start_ms: hours.start_ms.min(quarters.start_ms - span) - reach,
            end_ms: (hours.end_ms + LONGEST_HOUR_MS).max(quarters.end_ms) + reach,
        };
        Self {
            hours,
            quarters,
            raw,
        }
    }

    /// The `sensor_hourly` partitions (UTC days of hour starts) holding
    /// recomputed hours.
    pub(super) fn partitions(&self) -> std::ops::RangeInclusive<i64> {
        self.hours.start_ms.div_euclid(DAY_MS)..=(self.hours.end_ms - 1).div_euclid(DAY_MS)
    }

    /// The recomputed quarters, a range per UTC day.
    pub(super) fn quarter_days(&self) -> impl Iterator<Item = TimeRange> + use<> {
        let quarters = self.quarters;
        let days = quarters.start_ms.div_euclid(DAY_MS)..=(quarters.end_ms - 1).div_euclid(DAY_MS);
        days.map(move |d| TimeRange {
            start_ms: quarters.start_ms.max(d * DAY_MS),
            end_ms: quarters.end_ms.min((d + 1) * DAY_MS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SensorKey;
    use crate::meter::{Meter, MeterType};

    const D: i64 = 20_000;
    const A: i64 = D * DAY_MS;
    const B: i64 = (D + 1) * DAY_MS;
    const MIN: i64 = 60_000;

    fn range(start_ms: i64, end_ms: i64) -> TimeRange {
        TimeRange { start_ms, end_ms }
    }

    #[test]
    fn interval_meters_reach_their_day_and_the_hours_it_starts_in() {
        let reach = Reach::of_day(D, &Meters::default());
        assert_eq!(reach.hours, range(A - 60 * MIN, B));
        assert_eq!(reach.partitions(), D - 1..=D);
        assert_eq!(reach.quarter_days().collect::<Vec<_>>(), [range(A, B)]);
        assert_eq!(reach.raw, range(A - 60 * MIN, B + 60 * MIN));
    }

    #[test]
    fn registers_reach_three_gaps_around_the_day() {
        let register = Meter {
            meter_type: MeterType::Cumulative,
            ..Meter::default()
        };
        let reach = Reach::of_day(D, &Meters::single(SensorKey(1), register));
        let gaps = 3 * 60 * MIN;
        assert_eq!(reach.hours, range(A - gaps - 60 * MIN, B + gaps));
        assert_eq!(reach.partitions(), D - 1..=D + 1);
        assert_eq!(
            reach.quarter_days().collect::<Vec<_>>(),
            [range(A - gaps, A), range(A, B), range(B, B + gaps)]
        );
        assert_eq!(
            reach.raw,
            range(A - 2 * gaps - 60 * MIN, B + 2 * gaps + 60 * MIN)
        );
    }

    #[test]
    fn long_intervals_reach_the_quarters_after_the_day() {
        let hourly = Meter {
            interval_s: 3600,
            ..Meter::default()
        };
        let reach = Reach::of_day(D, &Meters::single(SensorKey(1), hourly));
        assert_eq!(reach.partitions(), D - 1..=D);
        assert_eq!(
            reach.quarter_days().collect::<Vec<_>>(),
            [range(A, B), range(B, B + 45 * MIN)]
        );
        assert_eq!(reach.raw, range(A - 60 * MIN, B + 60 * MIN));
    }

    /// Every reading lies in an hour bucket that started less than
    /// `LONGEST_HOUR_MS` before it, in zones with 30-minute and two-hour
    /// shifts, 45-minute offsets and repeated hours.
    #[test]
    fn no_hour_bucket_is_longer_than_the_longest_hour() {
        use super::super::calendar::HourCursor;
        use chrono_tz::{America, Antarctica, Asia, Australia, Europe, Pacific};
        let zones = [
            Australia::Lord_Howe,
            Antarctica::Troll,
            Pacific::Chatham,
            Asia::Kathmandu,
            America::St_Johns,
            Europe::Berlin,
        ];
        let from = 1_577_836_800_000; // 2020-01-01
        for zone in zones {
            let mut cursor = HourCursor::new(zone);
            for ts in (from..from + 3 * 366 * DAY_MS).step_by(5 * MIN as usize) {
                let start = cursor.start_of(ts);
                assert!(
                    start <= ts && ts - start < LONGEST_HOUR_MS,
                    "{zone} at {ts}: hour starts at {start}"
                );
            }
        }
    }

    #[test]
    fn a_gap_that_is_not_a_whole_quarter_widens_the_quarters_to_whole_ones() {
        let register = Meter {
            meter_type: MeterType::Cumulative,
            max_gap_ms: 7 * MIN,
            ..Meter::default()
        };
        let reach = Reach::of_day(D, &Meters::single(SensorKey(1), register));
        assert_eq!(reach.quarters, range(A - 30 * MIN, B + 30 * MIN));
    }
}
