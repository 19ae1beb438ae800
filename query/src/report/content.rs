//! What a report says, computed from a building's rollups in memory (never
//! from raw readings, so a year of a building with a thousand meters
//! costs what a year of one does): totals per local day, the weekday and
//! weekend profile by local hour, the peak hour, kWh per m2, the previous
//! period, anomalous days and the forecast.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Weekday};
use chrono_tz::Tz;
use serde::Serialize;
use wattline_storage::{
    Agg, Building, Resolution, Rollups, TimeRange, coverage, day_start, format_local,
};

use super::forecast::{self, Forecast, WEEK};

/// Days of history the forecast is fitted on (up to the period's end).
const HISTORY_DAYS: i64 = 26 * 7;
/// Same weekdays before a day that make its expected value.
const EXPECTED_FROM_WEEKS: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct Day {
    pub day: String,
    pub kwh: f64,
    pub readings: i64,
    /// Peak demand: the day's largest 15-minute average power.
    pub peak_kw: Option<f64>,
    /// Under the building's tariff (energy only: demand is billed monthly).
    pub cost: Option<f64>,
    /// Readings received over those the active sensors should have sent.
    pub coverage: Option<f64>,
}

/// What a report needs of the catalog besides the building.
#[derive(Debug, Clone, Default)]
pub struct CatalogFacts {
    /// The tenant's tariff currency.
    pub currency: Option<String>,
    /// Readings per hour the building's active sensors should send.
    pub expected_per_hour: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peak {
    /// Start of the local hour, RFC 3339 with the building's offset.
    pub hour: String,
    pub kwh: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Demand {
    pub day: String,
    pub kw: f64,
}

/// Average kWh per local hour (0..23) on days of that kind with data;
/// `None` where no such day had data in that hour.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub weekday: Vec<Option<f64>>,
    pub weekend: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub start: String,
    pub end: String,
    pub total_kwh: f64,
    pub change_kwh: f64,
    /// `None` when the previous period had no energy.
    pub change_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub day: String,
    pub kwh: f64,
    /// The median of the same weekday in the four weeks before.
    pub expected_kwh: f64,
    pub deviation_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForecastDay {
    pub day: String,
    pub kwh: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub building_id: String,
    pub building_name: String,
    pub timezone: String,
    pub start: String,
    pub end: String,
    pub generated_at: String,
    pub unit: &'static str,
    pub total_kwh: f64,
    pub readings: i64,
    pub floor_area_m2: Option<f64>,
    pub kwh_per_m2: Option<f64>,
    /// The largest of the days' peak demands, and its day.
    pub peak_demand: Option<Demand>,
    /// The days' energy cost, when the building has a tariff.
    pub energy_cost: Option<f64>,
    pub currency: Option<String>,
    /// The period's readings over those expected.
    pub coverage: Option<f64>,
    pub days: Vec<Day>,
    pub peak: Option<Peak>,
    pub profile: Profile,
    pub previous_period: Comparison,
    pub anomalies: Vec<Anomaly>,
    pub forecast: Vec<ForecastDay>,
    pub forecast_model: Forecast,
}

fn local_date(tz: Tz, ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// Most days one report lists (the web layer allows about five years).
const MAX_DAYS: usize = 2_000;

/// The local days lying wholly in `[start, end)`.
fn days_in(tz: Tz, start: i64, end: i64) -> Vec<NaiveDate> {
    let mut d = local_date(tz, start);
    if day_start(tz, d) < start {
        d = d.succ_opt().unwrap_or(d);
    }
    let mut out = Vec::new();
    while let Some(next) = d.succ_opt()
        && day_start(tz, next) <= end
        && out.len() < MAX_DAYS
    {
        out.push(d);
        d = next;
    }
    out
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Builds the report of `building` for `[start, end)` with a forecast of
/// `forecast_days` days after it.
pub fn build(
    building: &Building,
    rollups: &Rollups,
    start: i64,
    end: i64,
    forecast_days: usize,
    facts: &CatalogFacts,
    now_ms: i64,
) -> Report {
    let tz = building.timezone.tz();
    let id = building.id.as_str();
    let period = days_in(tz, start, end);
    let first_day = period
        .first()
        .copied()
        .unwrap_or_else(|| local_date(tz, start));
    let span = period.len() as i64;
    // One read of daily totals: the previous period, the weeks before for
    // expected values, the forecast's history and the period itself.
    let history_from = first_day
        - chrono::Duration::days(span.max(HISTORY_DAYS).max(EXPECTED_FROM_WEEKS as i64 * 7));
    let daily: std::collections::BTreeMap<NaiveDate, Agg> = rollups
        .series(
            id,
            tz,
            Resolution::Day,
            TimeRange {
                start_ms: day_start(tz, history_from),
                end_ms: end,
            },
        )
        .into_iter()
        .map(|(t, a)| (local_date(tz, t), a))
        .collect();
    let kwh_of = |d: NaiveDate| daily.get(&d).map_or(0.0, |a| a.kwh);

    let days: Vec<Day> = period
        .iter()
        .map(|d| Day {
            day: d.to_string(),
            kwh: kwh_of(*d),
            readings: daily.get(d).map_or(0, |a| a.readings),
            peak_kw: daily.get(d).and_then(|a| a.peak_kw),
            cost: daily.get(d).and_then(|a| a.cost),
            coverage: coverage(
                daily.get(d).map_or(0, |a| a.readings),
                facts.expected_per_hour,
                day_start(tz, *d + chrono::Duration::days(1)) - day_start(tz, *d),
            ),
        })
        .collect();
    let peak_demand = days
        .iter()
        .filter_map(|d| Some((d, d.peak_kw?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(d, kw)| Demand {
            day: d.day.clone(),
            kw,
        });
    // Known only when every day with energy has a cost.
    let costs: Option<Vec<f64>> = days
        .iter()
        .filter(|d| d.readings > 0)
        .map(|d| d.cost)
        .collect();
    let energy_cost = costs
        .filter(|c| !c.is_empty())
        .map(wattline_storage::kwh_sum);
    let total_kwh = wattline_storage::kwh_sum(days.iter().map(|d| d.kwh));
    let readings = days.iter().map(|d| d.readings).sum();

    let previous_days: Vec<NaiveDate> = (1..=span)
        .map(|k| first_day - chrono::Duration::days(k))
        .collect();
    let previous_total = wattline_storage::kwh_sum(previous_days.iter().map(|d| kwh_of(*d)));
    let previous_period = Comparison {
        start: format_local(
            tz,
            day_start(tz, previous_days.last().copied().unwrap_or(first_day)),
        ),
        end: format_local(tz, day_start(tz, first_day)),
        total_kwh: previous_total,
        change_kwh: total_kwh - previous_total,
        change_percent: (previous_total > 0.0)
            .then(|| (total_kwh - previous_total) / previous_total * 100.0),
    };

    // The hours of exactly the period's days.
    let hours = match (period.first(), period.last()) {
        (Some(first), Some(last)) => TimeRange {
            start_ms: day_start(tz, *first),
            end_ms: day_start(tz, *last + chrono::Duration::days(1)),
        },
        _ => TimeRange {
            start_ms: start,
            end_ms: start,
        },
    };
    let hourly = rollups.series(id, tz, Resolution::Hour, hours);
    // Days still running or to come are not judged or learnt from.
    let last_complete = (local_date(tz, now_ms) - chrono::Duration::days(1))
        .min(period.last().copied().unwrap_or(first_day));
    let (profile, peak) = profile_and_peak(tz, &hourly);

    Report {
        building_id: id.to_owned(),
        building_name: building.name.clone(),
        timezone: building.timezone.name().to_owned(),
        start: format_local(tz, start),
        end: format_local(tz, end),
        generated_at: format_local(tz, now_ms),
        unit: "kWh",
        total_kwh,
        readings,
        floor_area_m2: building.floor_area_m2,
        kwh_per_m2: building
            .floor_area_m2
            .filter(|a| *a > 0.0)
            .map(|a| total_kwh / a),
        anomalies: anomalies(&period, &daily, last_complete),
        peak_demand,
        energy_cost,
        currency: energy_cost.and(facts.currency.clone()),
        coverage: coverage(
            readings,
            facts.expected_per_hour,
            hours.end_ms - hours.start_ms,
        ),
        days,
        peak,
        profile,
        previous_period,
        forecast: Vec::new(),
        forecast_model: forecast_after(&daily, last_complete, forecast_days),
    }
    .with_forecast_days(last_complete)
}

impl Report {
    /// Names the forecast's days: the local days after `last`, the last
    /// day of its history.
    fn with_forecast_days(mut self, last: NaiveDate) -> Self {
        let mut d = last;
        self.forecast = self
            .forecast_model
            .days
            .iter()
            .map(|p| {
                d = d.succ_opt().unwrap_or(d);
                ForecastDay {
                    day: d.to_string(),
                    kwh: p.kwh,
                    low: p.low,
                    high: p.high,
                }
            })
            .collect();
        self
    }
}

/// The forecast from the daily totals up to `last` (the period's last
/// complete day), from the first day with data (days without data inside
/// count as zero).
fn forecast_after(
    daily: &std::collections::BTreeMap<NaiveDate, Agg>,
    last: NaiveDate,
    horizon: usize,
) -> Forecast {
    let history: Vec<f64> = match daily.range(..=last).next() {
        Some((first, _)) => first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| daily.get(&d).map_or(0.0, |a| a.kwh))
            .collect(),
        None => Vec::new(),
    };
    forecast::forecast(&history, horizon)
}

/// Average weekday and weekend energy per local hour, and the largest
/// hour.
fn profile_and_peak(tz: Tz, hourly: &[(i64, Agg)]) -> (Profile, Option<Peak>) {
    let mut sums = [[0.0f64; 24]; 2];
    let mut days: [[std::collections::BTreeSet<NaiveDate>; 24]; 2] = Default::default();
    let mut peak: Option<(i64, f64)> = None;
    for (t, a) in hourly {
        let local = DateTime::from_timestamp_millis(*t)
            .unwrap_or_default()
            .with_timezone(&tz);
        let kind = usize::from(matches!(local.weekday(), Weekday::Sat | Weekday::Sun));
        let h = local.hour() as usize;
        sums[kind][h] += a.kwh;
        days[kind][h].insert(local.date_naive());
        if peak.is_none_or(|(_, k)| a.kwh > k) {
            peak = Some((*t, a.kwh));
        }
    }
    let average = |kind: usize| {
        (0..24)
            .map(|h| {
                let n = days[kind][h].len();
                (n > 0).then(|| sums[kind][h] / n as f64)
            })
            .collect()
    };
    (
        Profile {
            weekday: average(0),
            weekend: average(1),
        },
        peak.map(|(t, kwh)| Peak {
            hour: format_local(tz, t),
            kwh,
        }),
    )
}

/// Complete days far from the median of the same weekday in the four
/// weeks before: their difference from it departs from the period's
/// typical difference by more than three robust standard deviations, and
/// by more than 15% of the expected value. A day without any reading (an
/// outage) counts as zero.
fn anomalies(
    period: &[NaiveDate],
    daily: &std::collections::BTreeMap<NaiveDate, Agg>,
    last_complete: NaiveDate,
) -> Vec<Anomaly> {
    let expected: Vec<(NaiveDate, f64, f64)> = period
        .iter()
        .filter(|d| **d <= last_complete)
        .filter_map(|d| {
            let kwh = daily.get(d).map_or(0.0, |a| a.kwh);
            let before: Vec<f64> = (1..=EXPECTED_FROM_WEEKS)
                .filter_map(|k| daily.get(&(*d - chrono::Duration::days((k * WEEK) as i64))))
                .map(|a| a.kwh)
                .collect();
            (before.len() * 2 >= EXPECTED_FROM_WEEKS)
                .then(|| median(before))
                .flatten()
                .map(|e| (*d, kwh, e))
        })
        .collect();
    let residuals: Vec<f64> = expected.iter().map(|(_, k, e)| k - e).collect();
    let Some(center) = median(residuals.clone()) else {
        return Vec::new();
    };
    let mad = median(residuals.iter().map(|r| (r - center).abs()).collect()).unwrap_or(0.0);
    let scale = 1.4826 * mad;
    expected
        .into_iter()
        .filter(|(_, kwh, e)| {
            let r = kwh - e;
            (r - center).abs() > 3.0 * scale && (r - center).abs() > 0.15 * e.abs()
        })
        .map(|(d, kwh, e)| Anomaly {
            day: d.to_string(),
            kwh,
            expected_kwh: e,
            deviation_percent: if e != 0.0 {
                (kwh - e) / e * 100.0
            } else {
                100.0
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_of_a_period_are_local_days_also_across_a_clock_change() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let start = day_start(tz, NaiveDate::from_ymd_opt(2026, 10, 24).unwrap());
        let end = day_start(tz, NaiveDate::from_ymd_opt(2026, 10, 27).unwrap());
        let days: Vec<String> = days_in(tz, start, end)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(days, ["2026-10-24", "2026-10-25", "2026-10-26"]);
        // Only whole days: a start or an end inside a day leaves it out.
        assert_eq!(days_in(tz, start + 1, end).len(), 2);
        assert_eq!(days_in(tz, start, end - 1).len(), 2);
        assert!(days_in(tz, start, start + 3_600_000).is_empty());
    }

    #[test]
    fn a_day_far_from_its_weekday_is_anomalous_with_its_expected_value() {
        let first = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        let mut daily = std::collections::BTreeMap::new();
        for i in 0..70 {
            let d = first + chrono::Duration::days(i);
            let kwh = if i == 60 {
                40.0
            } else {
                100.0 + (i % 7) as f64
            };
            daily.insert(
                d,
                Agg {
                    kwh,
                    peak_kwh: kwh,
                    readings: 24,
                    peak_kw: None,
                    cost: None,
                    quarantined: 0,
                },
            );
        }
        let day = |i: i64| first + chrono::Duration::days(i);
        let period: Vec<NaiveDate> = (42..70).map(day).collect();
        let found = anomalies(&period, &daily, day(69));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].day, day(60).to_string());
        assert_eq!(found[0].expected_kwh, 104.0);
        // A day without any reading is an outage, not a gap in the test;
        // days not complete yet are not judged.
        daily.remove(&day(65));
        let found = anomalies(&period, &daily, day(69));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[1].day.clone(), found[1].kwh),
            (day(65).to_string(), 0.0)
        );
        assert_eq!(anomalies(&period, &daily, day(64)).len(), 1);
        // A shift of the whole period is a change of level, not anomalies.
        for i in 42..70 {
            if let Some(a) = daily.get_mut(&day(i)) {
                a.kwh *= 1.3;
            }
        }
        let found = anomalies(&period, &daily, day(69));
        assert!(
            found
                .iter()
                .all(|a| a.day == day(60).to_string() || a.day == day(65).to_string()),
            "{found:?}"
        );
        assert!(!found.is_empty());
    }
}
