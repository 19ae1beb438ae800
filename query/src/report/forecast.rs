//! Forecast of a building's next daily totals.
//!
//! The model is MSTL with a weekly season and an AutoETS trend (augurs):
//! meter data repeats by weekday, drifts slowly, and a holiday is one odd
//! day that the decomposition treats as noise instead of a new level. It
//! is checked on the last weeks of history against the seasonal-naive
//! baseline (each day as the same weekday a week before), and the report
//! uses whichever did better on that back-test, saying so. With too little
//! history for the model, the baseline alone is used.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};
use serde::Serialize;

pub(crate) const WEEK: usize = 7;
/// Level of the prediction intervals.
pub(crate) const LEVEL: f64 = 0.8;
/// z of the two-sided 80% normal interval.
const Z80: f64 = 1.281_551_565_545;
/// Weeks held out, one at a time, in the back-test.
const BACKTEST_WEEKS: usize = 4;
/// Days of history the model is fitted on at the least (four weeks).
const MODEL_MIN_DAYS: usize = 4 * WEEK;

/// One forecast day: the point and its 80% interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Predicted {
    pub kwh: f64,
    pub low: f64,
    pub high: f64,
}

/// How the model and the baseline did on the held-out weeks.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    /// `"MAPE"` (percent) when no held-out day is near zero, else `"MASE"`
    /// (mean absolute error over that of the weekly naive step in the
    /// training part).
    pub metric: &'static str,
    pub weeks: usize,
    /// `None`: the model could not be fitted.
    pub model_error: Option<f64>,
    pub baseline_error: f64,
    pub model_beats_baseline: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    pub method: &'static str,
    /// In words, why this method (shown in the report).
    pub note: String,
    pub level: f64,
    #[serde(skip)]
    pub days: Vec<Predicted>,
    pub backtest: Option<Backtest>,
}

const MODEL: &str = "MSTL (weekly season) with AutoETS trend";
const BASELINE: &str = "seasonal naive (same weekday last week)";

/// Forecasts `horizon` days after `history` (daily totals, oldest first).
pub(crate) fn forecast(history: &[f64], horizon: usize) -> Forecast {
    let n = history.len();
    if n < WEEK {
        return Forecast {
            method: "none",
            note: format!("only {n} days of history; a forecast needs at least {WEEK}"),
            level: LEVEL,
            days: Vec::new(),
            backtest: None,
        };
    }
    let weeks = if n >= MODEL_MIN_DAYS + WEEK {
        ((n - MODEL_MIN_DAYS) / WEEK).min(BACKTEST_WEEKS)
    } else {
        0
    };
    if weeks == 0 {
        return Forecast {
            method: BASELINE,
            note: format!(
                "{n} days of history are too few to fit and test the model (it needs {}); the baseline is used",
                MODEL_MIN_DAYS + WEEK
            ),
            level: LEVEL,
            days: seasonal_naive(history, horizon),
            backtest: None,
        };
    }
    let backtest = back_test(history, weeks);
    let model = backtest
        .model_beats_baseline
        .then(|| mstl(history, horizon).ok())
        .flatten();
    match model {
        Some(days) => Forecast {
            method: MODEL,
            note: format!(
                "the model beat the baseline on the last {weeks} weeks ({} {:.1} against {:.1})",
                backtest.metric,
                backtest.model_error.unwrap_or(f64::NAN),
                backtest.baseline_error
            ),
            level: LEVEL,
            days,
            backtest: Some(backtest),
        },
        None => Forecast {
            method: BASELINE,
            note: match backtest.model_error {
                Some(e) => format!(
                    "the model did not beat the baseline on the last {weeks} weeks ({} {e:.1} against {:.1}); the baseline is used",
                    backtest.metric, backtest.baseline_error
                ),
                None => {
                    "the model could not be fitted to this history; the baseline is used".to_owned()
                }
            },
            level: LEVEL,
            days: seasonal_naive(history, horizon),
            backtest: Some(backtest),
        },
    }
}

/// Each day as the same weekday of the last week of `history`, with an
/// interval from the spread of week-on-week changes.
pub(crate) fn seasonal_naive(history: &[f64], horizon: usize) -> Vec<Predicted> {
    let n = history.len();
    let steps: Vec<f64> = (WEEK..n).map(|t| history[t] - history[t - WEEK]).collect();
    let sd = std_dev(&steps);
    (0..horizon)
        .map(|h| {
            let kwh = history[n - WEEK + h % WEEK];
            let spread = Z80 * sd * ((h / WEEK + 1) as f64).sqrt();
            bounded(kwh, kwh - spread, kwh + spread)
        })
        .collect()
}

/// MSTL with a weekly season and an AutoETS trend, with its intervals.
fn mstl(history: &[f64], horizon: usize) -> Result<Vec<Predicted>, String> {
    let model = MSTLModel::new(vec![WEEK], AutoETS::non_seasonal().into_trend_model());
    let fitted = model.fit(history).map_err(|e| e.to_string())?;
    let f = fitted
        .predict(horizon, Some(LEVEL))
        .map_err(|e| e.to_string())?;
    if f.point.len() != horizon || f.point.iter().any(|v| !v.is_finite()) {
        return Err("the model gave no finite forecast".to_owned());
    }
    Ok(match f.intervals {
        Some(i) if i.lower.len() == horizon && i.upper.len() == horizon => f
            .point
            .iter()
            .zip(i.lower.iter().zip(&i.upper))
            .map(|(p, (l, u))| bounded(*p, *l, *u))
            .collect(),
        _ => f.point.iter().map(|p| bounded(*p, *p, *p)).collect(),
    })
}

/// Energy is never negative: points and bounds at zero or above.
fn bounded(kwh: f64, low: f64, high: f64) -> Predicted {
    Predicted {
        kwh: kwh.max(0.0),
        low: low.max(0.0).min(kwh.max(0.0)),
        high: high.max(kwh.max(0.0)),
    }
}

/// Holds out each of the last `weeks` weeks in turn, fits on what came
/// before and forecasts that week with the model and the baseline.
fn back_test(history: &[f64], weeks: usize) -> Backtest {
    let n = history.len();
    let first_origin = n - weeks * WEEK;
    let mut actual = Vec::new();
    let mut model = Vec::new();
    let mut baseline = Vec::new();
    let mut model_failed = false;
    for w in (1..=weeks).rev() {
        let origin = n - w * WEEK;
        let train = &history[..origin];
        actual.extend_from_slice(&history[origin..origin + WEEK]);
        baseline.extend(seasonal_naive(train, WEEK).into_iter().map(|p| p.kwh));
        match mstl(train, WEEK) {
            Ok(p) => model.extend(p.into_iter().map(|p| p.kwh)),
            Err(_) => model_failed = true,
        }
    }
    let mean = history.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
    let near_zero = actual.iter().any(|a| a.abs() < 0.1 * mean || *a == 0.0);
    // MASE's scale: the weekly naive step's mean error before the test.
    let train = &history[..first_origin];
    let scale = (WEEK..train.len())
        .map(|t| (train[t] - train[t - WEEK]).abs())
        .sum::<f64>()
        / (train.len() - WEEK).max(1) as f64;
    let metric = if near_zero { "MASE" } else { "MAPE" };
    let error = |p: &[f64]| {
        if near_zero {
            let mae = mean_abs(actual.iter().zip(p).map(|(a, p)| a - p));
            if scale > 0.0 { mae / scale } else { mae }
        } else {
            100.0 * mean_abs(actual.iter().zip(p).map(|(a, p)| (a - p) / a))
        }
    };
    let baseline_error = error(&baseline);
    let model_error = (!model_failed).then(|| error(&model));
    Backtest {
        metric,
        weeks,
        model_error,
        baseline_error,
        model_beats_baseline: model_error.is_some_and(|m| m < baseline_error),
    }
}

fn mean_abs(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v.abs(), c + 1));
    if count == 0 { 0.0 } else { sum / count as f64 }
}

fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    var.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weekly pattern (weekdays high, weekends low), a slow upward
    /// drift, noise and two holidays, deterministic.
    fn series(days: usize) -> Vec<f64> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f64 / 10_000.0 - 0.5
        };
        (0..days)
            .map(|d| {
                let weekday = [1.0, 1.05, 1.02, 1.0, 0.95, 0.45, 0.4][d % WEEK];
                let holiday = d == days / 3 || d == days / 2;
                let level = 1_000.0 + d as f64 * 1.5;
                let v = level * weekday * (1.0 + 0.06 * noise());
                if holiday { v * 0.5 } else { v }
            })
            .collect()
    }

    #[test]
    fn the_model_beats_seasonal_naive_on_a_weekly_series_with_noise() {
        let history = series(182);
        let f = forecast(&history, 14);
        let bt = f.backtest.clone().unwrap();
        assert_eq!(bt.metric, "MAPE");
        assert!(bt.model_beats_baseline, "{bt:?}");
        assert_eq!(f.method, MODEL);
        assert_eq!(f.days.len(), 14);
        // The weekly shape carries over: a Saturday well under a Monday.
        let monday = f
            .days
            .iter()
            .enumerate()
            .find(|(i, _)| (182 + i) % WEEK == 0)
            .unwrap()
            .1;
        let saturday = f
            .days
            .iter()
            .enumerate()
            .find(|(i, _)| (182 + i) % WEEK == 5)
            .unwrap()
            .1;
        assert!(saturday.kwh < 0.6 * monday.kwh, "{monday:?} {saturday:?}");
        for p in &f.days {
            assert!(p.low <= p.kwh && p.kwh <= p.high && p.low < p.high, "{p:?}");
        }
    }

    #[test]
    fn short_histories_fall_back_to_the_baseline_or_to_nothing() {
        let f = forecast(&series(20), 7);
        assert_eq!((f.method, f.days.len()), (BASELINE, 7));
        assert!(f.backtest.is_none());
        let none = forecast(&series(5), 7);
        assert!(none.days.is_empty() && none.note.contains("only 5 days"));
    }

    #[test]
    fn the_baseline_repeats_last_week_and_never_goes_negative() {
        let history: Vec<f64> = (0..14).map(|d| (d % WEEK) as f64).collect();
        let f = seasonal_naive(&history, 9);
        let points: Vec<f64> = f.iter().map(|p| p.kwh).collect();
        assert_eq!(points, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 1.0]);
        assert!(f.iter().all(|p| p.low >= 0.0));
    }

    #[test]
    fn near_zero_days_are_scored_with_mase() {
        let mut history = series(70);
        history[66] = 0.0;
        let bt = back_test(&history, 4);
        assert_eq!(bt.metric, "MASE");
        assert!(bt.baseline_error.is_finite());
    }
}

/// Real metered data (the project's fixture): the model against the
/// baseline on many weeks of two buildings' electricity.
#[cfg(test)]
mod real_data {
    use std::collections::BTreeMap;

    use super::*;

    /// Daily UTC totals per sensor of the fixture's electricity meters.
    fn daily() -> BTreeMap<String, Vec<f64>> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/cambridge_2019_excerpt.csv"
        );
        let mut days: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines().skip(1) {
            let mut cells = line.split(',');
            let (sensor, ts, v) = (
                cells.next().unwrap(),
                cells.next().unwrap(),
                cells.next().unwrap(),
            );
            if !sensor.ends_with("-elec") {
                continue;
            }
            let v: f64 = v.parse().unwrap_or(0.0);
            *days
                .entry(sensor.to_owned())
                .or_default()
                .entry(ts[..10].to_owned())
                .or_default() += v;
        }
        days.into_iter()
            .map(|(s, d)| (s, d.into_values().collect()))
            .collect()
    }

    #[test]
    fn the_model_beats_seasonal_naive_on_a_year_of_real_buildings() {
        let mut model = Vec::new();
        let mut baseline = Vec::new();
        for (sensor, days) in daily() {
            assert!(days.len() >= 360, "{sensor}: {} days", days.len());
            // Every week from half a year in: the history up to it (the
            // last four weeks of it are the report's own back-test), the
            // week to score both methods on.
            let mut origin = 26 * WEEK;
            while origin + WEEK <= days.len() {
                let history = &days[..origin];
                let actual = &days[origin..origin + WEEK];
                let f = forecast(history, WEEK);
                let naive = seasonal_naive(history, WEEK);
                let ape = |p: &[Predicted]| {
                    100.0 * mean_abs(actual.iter().zip(p).map(|(a, p)| (a - p.kwh) / a))
                };
                model.push(ape(&f.days));
                baseline.push(ape(&naive));
                origin += WEEK;
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (m, b) = (mean(&model), mean(&baseline));
        eprintln!(
            "real data: {} weeks forecast, MAPE of the report's forecast {m:.2}%, of seasonal naive {b:.2}%",
            model.len()
        );
        assert!(m < b, "model {m:.2}% against baseline {b:.2}%");
    }
}
