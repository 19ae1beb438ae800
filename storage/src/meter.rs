//! Meters as they report: interval energy derived from cumulative
//! registers and from power samples.
//!
//! Every downstream table counts *interval energy*: the kWh consumed in the
//! interval that starts at a reading's `ts`. An `interval` meter sends that
//! directly. A `cumulative` meter sends its register total, so the energy
//! of the interval from one reading to the next is their difference; a
//! `power` meter sends kW samples, integrated by the trapezoid rule. Either
//! way the derived energy is attached to the earlier reading, so a register
//! read every 15 minutes and an interval meter sending the differences give
//! the same buckets.
//!
//! Readings further apart than the sensor's `max_gap` are not neighbours:
//! nothing is bridged across such a gap. That also bounds what one reading
//! can change: the derived value of a reading depends only on readings at
//! most `max_gap` before and `3 * max_gap` after it ([`reach_ms`]), which
//! lets a rollup step re-derive exactly the days a late reading touches.
//!
//! Registers: a drop that recovers at the next reading (or a spike that
//! returns) is a *glitch*: that one reading is skipped and its neighbours'
//! difference counted. A drop that stays is a *wrap* when the register has
//! a `register_max` and was in its upper half (energy = `register_max` minus
//! the old value plus the new), else a *reset* (the meter counts from zero
//! again: energy = the new value). Only single-reading glitches are
//! recognised. An interval whose average power exceeds `max_kw` is
//! quarantined: flagged and never summed (for interval meters, a reading
//! above `max_kw` over the sensor's `interval_s`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kwh::{add_kwh, round_kwh};

const HOUR_MS: i64 = 3_600_000;
const QUARTER_MS: i64 = 900_000;

/// How a sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterType {
    /// Energy of the interval starting at `ts`, in kWh (the default).
    #[default]
    Interval,
    /// A register total in kWh.
    Cumulative,
    /// Instantaneous power in kW.
    Power,
}

impl MeterType {
    /// The unit its readings are in.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Power => "kW",
            _ => "kWh",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Interval => "interval",
            Self::Cumulative => "cumulative",
            Self::Power => "power",
        }
    }
}

/// The longest `max_gap` a sensor may have: it bounds how far a late
/// reading reaches (see the module docs), so that its reach stays within
/// the days a rollup step recomputes.
pub const MAX_GAP_LIMIT_MS: i64 = 6 * HOUR_MS;
/// `max_gap` when none is given.
pub const DEFAULT_MAX_GAP_MS: i64 = HOUR_MS;

/// A sensor's meter settings. Fixed at creation: changing them would
/// change the meaning of every reading already stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Meter {
    #[serde(default)]
    pub meter_type: MeterType,
    /// Where a cumulative register wraps to zero, in kWh.
    #[serde(default)]
    pub register_max: Option<f64>,
    /// Readings further apart are not bridged (milliseconds).
    #[serde(default = "default_max_gap")]
    pub max_gap_ms: i64,
    /// Intervals with a higher average power are quarantined (kW).
    #[serde(default)]
    pub max_kw: Option<f64>,
    /// How often the meter reports (seconds): peak demand spreads a
    /// reading's energy over the quarter hours of its interval.
    #[serde(default = "default_interval")]
    pub interval_s: i64,
}

fn default_interval() -> i64 {
    DEFAULT_INTERVAL_S
}

/// `interval_s` when none is given: the quarter hour utilities bill on.
pub(crate) const DEFAULT_INTERVAL_S: i64 = 900;

fn default_max_gap() -> i64 {
    DEFAULT_MAX_GAP_MS
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            meter_type: MeterType::Interval,
            register_max: None,
            max_gap_ms: DEFAULT_MAX_GAP_MS,
            max_kw: None,
            interval_s: DEFAULT_INTERVAL_S,
        }
    }
}

impl Meter {
    /// Refuses settings that cannot be meant.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(1_000..=MAX_GAP_LIMIT_MS).contains(&self.max_gap_ms) {
            return bad(format!(
                "max_gap must be between 1 second and {} hours",
                MAX_GAP_LIMIT_MS / HOUR_MS
            ));
        }
        for (name, v) in [("register_max", self.register_max), ("max_kw", self.max_kw)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return bad(format!("{name} must be a positive number"));
            }
        }
        if !(1..=86_400).contains(&self.interval_s) {
            return bad("interval_s must be between 1 and 86400 seconds".into());
        }
        if self.register_max.is_some() && self.meter_type != MeterType::Cumulative {
            return bad("register_max applies to cumulative meters only".into());
        }
        Ok(())
    }

    /// Whether readings are energy as they are (no derivation).
    pub fn is_interval(&self) -> bool {
        self.meter_type == MeterType::Interval
    }

    /// Whether readings count as they are: interval energy with nothing
    /// to quarantine.
    pub fn counts_as_sent(&self) -> bool {
        self.is_interval() && self.max_kw.is_none()
    }
}

/// How far one reading's arrival or change reaches: derived values of
/// readings within this distance before or after it may change (a power
/// sample's share also depends on its clock quarter's earlier samples).
pub fn reach_ms(meter: &Meter) -> i64 {
    match meter.meter_type {
        MeterType::Interval => 0,
        MeterType::Cumulative => 3 * meter.max_gap_ms,
        MeterType::Power => meter.max_gap_ms + QUARTER_MS,
    }
}

/// What became of a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Energy derived from it and its successor.
    Measured,
    /// Its interval spans a register reset; counted from zero.
    Reset,
    /// Its interval spans a register wrap at `register_max`.
    Wrap,
    /// A register glitch: skipped, its neighbours' difference counts.
    Glitch,
    /// Implausible (above `max_kw`, or a negative register): not summed.
    Quarantined,
    /// No successor within `max_gap`: the interval is unknown.
    Gap,
}

impl Quality {
    pub fn name(self) -> &'static str {
        match self {
            Self::Measured => "measured",
            Self::Reset => "reset",
            Self::Wrap => "wrap",
            Self::Glitch => "glitch",
            Self::Quarantined => "quarantined",
            Self::Gap => "gap",
        }
    }
}

/// A reading with its derived interval energy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Derived {
    pub ts_ms: i64,
    /// As sent (register kWh, power kW).
    pub value: f64,
    /// Energy of the interval starting at `ts_ms`; `None` is not summed.
    pub kwh: Option<f64>,
    pub quality: Quality,
}

/// Derives interval energy for one sensor's readings `series`, sorted by
/// time with distinct times, as `(ts_ms, value)`.
pub fn derive(meter: &Meter, series: &[(i64, f64)]) -> Vec<Derived> {
    match meter.meter_type {
        MeterType::Interval => series
            .iter()
            .map(|&(ts_ms, value)| {
                // Implausible for its metering interval: quarantined.
                let hours = meter.interval_s as f64 / 3600.0;
                if meter.max_kw.is_some_and(|max| value.abs() > max * hours) {
                    Derived {
                        ts_ms,
                        value,
                        kwh: None,
                        quality: Quality::Quarantined,
                    }
                } else {
                    Derived {
                        ts_ms,
                        value,
                        kwh: Some(value),
                        quality: Quality::Measured,
                    }
                }
            })
            .collect(),
        MeterType::Cumulative => registers(meter, series),
        MeterType::Power => power(meter, series),
    }
}

fn hours(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms) as f64 / HOUR_MS as f64
}

/// `kwh` over `[from, to)` if its average power is plausible.
fn plausible(meter: &Meter, kwh: f64, from_ms: i64, to_ms: i64) -> bool {
    meter
        .max_kw
        .is_none_or(|max| kwh.abs() <= max * hours(from_ms, to_ms))
}

fn registers(meter: &Meter, series: &[(i64, f64)]) -> Vec<Derived> {
    let n = series.len();
    let linked = |i: usize| i + 1 < n && series[i + 1].0 - series[i].0 <= meter.max_gap_ms;
    // A reading out of line with its linked neighbours, which agree: a
    // drop below the one before or a spike above the one after.
    let glitch: Vec<bool> = (0..n)
        .map(|k| {
            if k == 0 || !linked(k - 1) || !linked(k) {
                return false;
            }
            let (before, v, after) = (series[k - 1].1, series[k].1, series[k + 1].1);
            before <= after && (v < before || v > after)
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (ts_ms, value) = series[i];
        let mut d = Derived {
            ts_ms,
            value,
            kwh: None,
            quality: Quality::Gap,
        };
        if glitch[i] {
            d.quality = Quality::Glitch;
        } else if value < 0.0 || !value.is_finite() {
            d.quality = Quality::Quarantined;
        } else {
            // The next reading, or the one after it when that is a glitch.
            let next = if !linked(i) {
                None
            } else if !glitch[i + 1] {
                Some(series[i + 1])
            } else if linked(i + 1) && !glitch[i + 2] {
                Some(series[i + 2])
            } else {
                None
            };
            if let Some((next_ts, next_v)) = next {
                let (kwh, quality) = register_step(meter, value, next_v, ts_ms, next_ts);
                if next_v >= 0.0 && plausible(meter, kwh, ts_ms, next_ts) {
                    d.kwh = Some(round_kwh(kwh));
                    d.quality = quality;
                } else {
                    d.quality = Quality::Quarantined;
                }
            }
        }
        out.push(d);
    }
    out
}

/// Energy from register value `a` to `b`, with what happened between.
fn register_step(meter: &Meter, a: f64, b: f64, from_ms: i64, to_ms: i64) -> (f64, Quality) {
    if b >= a {
        return (b - a, Quality::Measured);
    }
    if let Some(max) = meter.register_max {
        let wrapped = max - a + b;
        if a >= max / 2.0 && b < max / 2.0 && plausible(meter, wrapped, from_ms, to_ms) {
            return (wrapped, Quality::Wrap);
        }
    }
    (b, Quality::Reset)
}

fn power(meter: &Meter, series: &[(i64, f64)]) -> Vec<Derived> {
    let ok = |v: f64| v.is_finite() && meter.max_kw.is_none_or(|max| v.abs() <= max);
    let mut out = Vec::with_capacity(series.len());
    // Each interval's exact energy is a binary fraction; rounding each to
    // the milliwatt-hour would add up an error per sample. Instead each
    // gets the step of the rounded running sum within its clock quarter,
    // so a quarter (and every bucket made of quarters) sums to its exact
    // energy rounded once, and a sample depends on its own quarter only.
    let mut quarter = i64::MIN;
    let mut running = 0.0;
    for (i, &(ts_ms, value)) in series.iter().enumerate() {
        let mut d = Derived {
            ts_ms,
            value,
            kwh: None,
            quality: Quality::Gap,
        };
        if !ok(value) {
            d.quality = Quality::Quarantined;
        } else if let Some(&(next_ts, next_v)) = series[i + 1..]
            .iter()
            .take_while(|(t, _)| t - ts_ms <= meter.max_gap_ms)
            .find(|(_, v)| ok(*v))
        {
            if ts_ms.div_euclid(QUARTER_MS) != quarter {
                quarter = ts_ms.div_euclid(QUARTER_MS);
                running = 0.0;
            }
            let before = round_kwh(running);
            running += (value + next_v) / 2.0 * hours(ts_ms, next_ts);
            d.kwh = Some(add_kwh(round_kwh(running), -before));
            d.quality = Quality::Measured;
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests;
