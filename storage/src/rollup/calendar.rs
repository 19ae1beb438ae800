//! Local-calendar buckets in a building's IANA time zone.
//!
//! An hour bucket is a maximal run of instants sharing the same local date,
//! local hour *and* UTC offset: a repeated hour at the end of summer time
//! is two buckets (a 25-hour day has 25), a skipped one is none, and an
//! hour shortened by a 30-minute shift (Australia/Lord_Howe) starts at the
//! shift. In a +05:30 zone hours start at :30 UTC. A day bucket is a local
//! date and starts at its first existing instant; a month starts with its
//! first day. Every bucket is named by the UTC instant at which it starts.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

const HOUR_MS: i64 = 3_600_000;

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The UTC offset in force at `ms`, in milliseconds.
pub(crate) fn offset_ms(tz: Tz, ms: i64) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&utc(ms).naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1000
}

/// First instant in `(lo, hi]` at which `pred` holds, given that it holds
/// at `hi` and, once true, stays true up to `hi`.
fn first_where(mut lo: i64, mut hi: i64, pred: impl Fn(i64) -> bool) -> i64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { hi = mid } else { lo = mid }
    }
    hi
}

/// Start (UTC ms) of the local hour bucket holding `ts`.
pub(crate) fn hour_start(tz: Tz, ts: i64) -> i64 {
    let off = offset_ms(tz, ts);
    let local = ts + off;
    let candidate = local - local.rem_euclid(HOUR_MS) - off;
    if offset_ms(tz, candidate) == off {
        return candidate;
    }
    // The offset changed inside this local hour: the bucket starts at the
    // change.
    first_where(candidate, ts, |t| offset_ms(tz, t) == off)
}

/// The hour bucket `[start, end)` holding `ts`: [`hour_start`] for many
/// instants at one offset computation each rather than two, for instants
/// that mostly fall in the bucket of the one before (a sensor's readings
/// in time order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HourCursor {
    tz: Tz,
    start: i64,
    end: i64,
}

impl HourCursor {
    pub(crate) fn new(tz: Tz) -> Self {
        Self {
            tz,
            start: 0,
            end: 0,
        }
    }

    /// [`hour_start`] of `ts`.
    pub(crate) fn start_of(&mut self, ts: i64) -> i64 {
        if !(self.start..self.end).contains(&ts) {
            let off = offset_ms(self.tz, ts);
            let local = ts + off;
            self.start = hour_start(self.tz, ts);
            // The next local hour at this offset, or the offset's change
            // before it (zones change offset at most once within an hour).
            let next = local - local.rem_euclid(HOUR_MS) + HOUR_MS - off;
            self.end = if offset_ms(self.tz, next - 1) == off {
                next
            } else {
                first_where(ts, next - 1, |t| offset_ms(self.tz, t) != off)
            };
        }
        self.start
    }
}

/// The local date of `ts`.
pub(crate) fn local_date(tz: Tz, ts: i64) -> NaiveDate {
    utc(ts).with_timezone(&tz).date_naive()
}

/// Start (UTC ms) of the local day `date`: its first existing instant.
pub fn day_start(tz: Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => t.timestamp_millis(),
        chrono::LocalResult::Ambiguous(a, b) => a.timestamp_millis().min(b.timestamp_millis()),
        chrono::LocalResult::None => {
            // Midnight was skipped: the day starts at the shift after it.
            let guess = midnight.and_utc().timestamp_millis()
                - offset_ms(tz, midnight.and_utc().timestamp_millis());
            first_where(guess - 6 * HOUR_MS, guess + 6 * HOUR_MS, |t| {
                local_date(tz, t) >= date
            })
        }
    }
}

/// The first day of the month after `first`.
pub(crate) fn next_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("first of month")
}

/// RFC 3339 text of `ms` with the zone's offset at that instant.
pub fn format_local(tz: Tz, ms: i64) -> String {
    utc(ms)
        .with_timezone(&tz)
        .fixed_offset()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The day after `d`.
pub(crate) fn next_day(d: NaiveDate) -> NaiveDate {
    d + Duration::days(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    /// Every hour bucket of a local day, by walking its minutes.
    fn hours_of_day(tz: Tz, date: NaiveDate) -> Vec<i64> {
        let (start, end) = (day_start(tz, date), day_start(tz, next_day(date)));
        let mut hours: Vec<i64> = (start..end)
            .step_by(60_000)
            .map(|t| hour_start(tz, t))
            .collect();
        hours.dedup();
        hours
    }

    #[test]
    fn the_cursor_finds_every_instant_s_hour_as_hour_start_does() {
        for zone in [
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
            "UTC",
        ] {
            let tz: Tz = zone.parse().unwrap();
            let mut cursor = HourCursor::new(tz);
            // Every 7 minutes through both of 2026's changes (and a jump back).
            for (from, to) in [
                ("2026-03-27T00:00:00Z", "2026-04-07T00:00:00Z"),
                ("2026-10-02T00:00:00Z", "2026-11-03T00:00:00Z"),
                ("2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"),
            ] {
                for t in (ms(from)..ms(to)).step_by(7 * 60_000) {
                    assert_eq!(cursor.start_of(t), hour_start(tz, t), "{zone} at {t}");
                    // The bucket ends where the next one starts.
                    assert_eq!(hour_start(tz, cursor.end), cursor.end, "{zone} at {t}");
                    assert_eq!(
                        hour_start(tz, cursor.end - 1),
                        cursor.start,
                        "{zone} at {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn berlin_days_around_both_changes_have_23_and_25_hours() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        assert_eq!(hours_of_day(tz, spring).len(), 23);
        assert_eq!(hours_of_day(tz, autumn).len(), 25);
        assert_eq!(day_start(tz, spring), ms("2026-03-28T23:00:00Z"));
        // The repeated 02:00 hour is two buckets, an hour apart.
        assert_eq!(
            hour_start(tz, ms("2026-10-25T00:30:00Z")),
            ms("2026-10-25T00:00:00Z")
        );
        assert_eq!(
            hour_start(tz, ms("2026-10-25T01:30:00Z")),
            ms("2026-10-25T01:00:00Z")
        );
        assert_eq!(
            format_local(tz, ms("2026-10-25T00:00:00Z")),
            "2026-10-25T02:00:00+02:00"
        );
        assert_eq!(
            format_local(tz, ms("2026-10-25T01:00:00Z")),
            "2026-10-25T02:00:00+01:00"
        );
    }

    #[test]
    fn new_york_changes() {
        let tz: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            hours_of_day(tz, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap()).len(),
            23
        );
        assert_eq!(
            hours_of_day(tz, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()).len(),
            25
        );
        assert_eq!(
            day_start(tz, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
            ms("2026-11-01T04:00:00Z")
        );
    }

    #[test]
    fn kolkata_hours_start_at_half_past_utc() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            hour_start(tz, ms("2026-06-01T10:10:00Z")),
            ms("2026-06-01T09:30:00Z")
        );
        assert_eq!(
            hour_start(tz, ms("2026-06-01T10:30:00Z")),
            ms("2026-06-01T10:30:00Z")
        );
        let d = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        assert_eq!(day_start(tz, d), ms("2026-05-31T18:30:00Z"));
        assert_eq!(hours_of_day(tz, d).len(), 24);
    }

    #[test]
    fn lord_howe_half_hour_shifts() {
        let tz: Tz = "Australia/Lord_Howe".parse().unwrap();
        // Spring: 02:00 -> 02:30 local (+10:30 -> +11) on 2026-10-04; the day
        // is 23.5 hours, its 02:xx hour is 30 minutes long.
        let spring = NaiveDate::from_ymd_opt(2026, 10, 4).unwrap();
        let hours = hours_of_day(tz, spring);
        assert_eq!(hours.len(), 24);
        let len = day_start(tz, next_day(spring)) - day_start(tz, spring);
        assert_eq!(len, 23 * HOUR_MS + HOUR_MS / 2);
        // Autumn: 02:00 -> 01:30 local (+11 -> +10:30) on 2026-04-05; the
        // second 01:30-02:00 is a bucket of its own.
        let autumn = NaiveDate::from_ymd_opt(2026, 4, 5).unwrap();
        assert_eq!(hours_of_day(tz, autumn).len(), 25);
        let len = day_start(tz, next_day(autumn)) - day_start(tz, autumn);
        assert_eq!(len, 24 * HOUR_MS + HOUR_MS / 2);
    }

    #[test]
    fn months() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let m = local_date(tz, ms("2026-01-31T23:30:00Z"))
            .with_day(1)
            .unwrap();
        assert_eq!(m, NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
        assert_eq!(
            next_month(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
    }
}
