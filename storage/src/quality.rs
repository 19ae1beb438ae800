//! Data quality: how much of what a building's meters should have sent
//! arrived. A bucket's `coverage` is the readings counted in it over the
//! readings its active sensors' metering intervals (`interval_s`) expect in
//! its span, at most 1; unknown without active sensors. It is judged
//! against the catalog as it is now (a sensor added last week lowers the
//! coverage of older buckets it never reported in).

use chrono::Datelike;
use chrono_tz::Tz;

use crate::catalog::CatalogView;
use crate::rollup::Resolution;
use crate::rollup::calendar::{day_start, local_date, next_day, next_month};

const HOUR_MS: i64 = 3_600_000;

/// The end (UTC ms) of the `resolution` bucket starting at `start` in
/// zone `tz`. Hours are taken as an hour long.
pub fn bucket_end(tz: Tz, resolution: Resolution, start: i64) -> i64 {
    match resolution {
        // No zone lookup: a month of hours is 720 calls on /energy.
        Resolution::Hour => start + HOUR_MS,
        Resolution::Day => day_start(tz, next_day(local_date(tz, start))),
        Resolution::Month => {
            let date = local_date(tz, start);
            day_start(tz, next_month(date.with_day(1).unwrap_or(date)))
        }
    }
}

impl CatalogView<'_> {
    /// Readings per hour the building's active sensors should send.
    pub fn expected_per_hour(&self, building: &str) -> f64 {
        self.sensors_of(building)
            .filter(|s| s.is_active)
            .map(|s| HOUR_MS as f64 / (s.meter.interval_s.max(1) * 1000) as f64)
            .sum()
    }
}

/// `readings` over what `per_hour` expects in `span_ms`, at most 1 and
/// rounded to four decimals; `None` when nothing is expected.
pub fn coverage(readings: i64, per_hour: f64, span_ms: i64) -> Option<f64> {
    let expected = per_hour * span_ms as f64 / HOUR_MS as f64;
    (expected > 0.0).then(|| ((readings as f64 / expected).min(1.0) * 1e4).round() / 1e4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn coverage_counts_against_the_span_and_caps_at_one() {
        // Four 15-minute meters for an hour: 16 expected.
        assert_eq!(coverage(12, 16.0, HOUR_MS), Some(0.75));
        assert_eq!(coverage(20, 16.0, HOUR_MS), Some(1.0));
        assert_eq!(coverage(3, 0.0, HOUR_MS), None);
        // A 23-hour DST day expects 23 hours of readings.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let start = day_start(tz, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        let end = bucket_end(tz, Resolution::Day, start);
        assert_eq!(end - start, 23 * HOUR_MS);
        assert_eq!(coverage(92, 4.0, end - start), Some(1.0));
        let march = day_start(tz, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert_eq!(
            bucket_end(tz, Resolution::Month, march) - march,
            31 * 24 * HOUR_MS - HOUR_MS
        );
    }
}
