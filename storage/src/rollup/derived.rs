//! Interval energy of raw readings, as the rollups count it: readings of
//! interval meters as they are, those of cumulative and power meters
//! derived (see [`crate::meter`]). Derivation needs readings around the
//! ones counted, so callers read raw readings [`Meters::reach_ms`] beyond
//! the range they count.

use std::collections::HashMap;

use crate::catalog::CatalogView;
use crate::ids::SensorKey;
use crate::meter::{Meter, Quality, derive, reach_ms};
use crate::reading::Reading;

use super::quarters::QUARTER_MS;

/// The meter settings of some sensors that matter to the rollups.
#[derive(Default)]
pub(super) struct Meters {
    /// Cumulative and power meters, and interval meters with a `max_kw`.
    derived: HashMap<SensorKey, Meter>,
    /// Quarter hours a reading's interval spans, where more than one.
    spans: HashMap<SensorKey, i64>,
}

impl Meters {
    pub(super) fn of(view: &CatalogView<'_>, sensors: impl IntoIterator<Item = SensorKey>) -> Self {
        let mut m = Self::default();
        for k in sensors {
            if let Some(s) = view.sensor_by_key(k) {
                m.add(k, s.meter);
            }
        }
        m
    }

    /// The settings of one sensor (tests).
    #[cfg(test)]
    pub(super) fn single(sensor: SensorKey, meter: Meter) -> Self {
        let mut m = Self::default();
        m.add(sensor, meter);
        m
    }

    fn add(&mut self, sensor: SensorKey, meter: Meter) {
        if !meter.counts_as_sent() {
            self.derived.insert(sensor, meter);
        }
        let quarters = (meter.interval_s * 1000 + QUARTER_MS - 1) / QUARTER_MS;
        if quarters > 1 {
            self.spans.insert(sensor, quarters);
        }
    }

    /// How far beyond a range raw readings must be read (0 without meters).
    pub(super) fn reach_ms(&self) -> i64 {
        self.derived.values().map(reach_ms).max().unwrap_or(0)
    }

    /// How far back a reading's interval may reach into a range.
    pub(super) fn span_ms(&self) -> i64 {
        self.spans
            .values()
            .max()
            .map_or(0, |q| (q - 1) * QUARTER_MS)
    }

    /// The quarter hours `sensor`'s readings span.
    pub(super) fn quarters(&self, sensor: SensorKey) -> i64 {
        self.spans.get(&sensor).copied().unwrap_or(1)
    }

    /// The readings of `raw` that count, with their interval energy as
    /// `value_kwh`: all of an interval meter, the derived ones of the
    /// others. `raw` is deduplicated (one reading per sensor and time).
    pub(super) fn interval_energy(&self, raw: Vec<Reading>) -> Vec<Reading> {
        self.energy_and_quarantined(raw).0
    }

    /// [`Self::interval_energy`], and the readings quarantined.
    pub(super) fn energy_and_quarantined(&self, raw: Vec<Reading>) -> (Vec<Reading>, Vec<Reading>) {
        let mut quarantined = Vec::new();
        if self.derived.is_empty() {
            return (raw, quarantined);
        }
        // Meter readings apart, one lookup per run of a sensor's readings
        // (merged readings come by sensor, day by day), then in series.
        let mut out = Vec::with_capacity(raw.len());
        let mut metered = Vec::new();
        for run in raw.chunk_by(|a, b| a.sensor == b.sensor) {
            if self.derived.contains_key(&run[0].sensor) {
                metered.extend_from_slice(run);
            } else {
                out.extend_from_slice(run);
            }
        }
        metered.sort_unstable_by_key(|r| (r.sensor, r.ts_ms));
        for run in metered.chunk_by(|a, b| a.sensor == b.sensor) {
            let sensor = run[0].sensor;
            let Some(meter) = self.derived.get(&sensor) else {
                continue;
            };
            let series: Vec<(i64, f64)> = run.iter().map(|r| (r.ts_ms, r.value_kwh)).collect();
            for d in derive(meter, &series) {
                let r = Reading {
                    sensor,
                    ts_ms: d.ts_ms,
                    value_kwh: d.kwh.unwrap_or(d.value),
                };
                if d.kwh.is_some() {
                    out.push(r);
                } else if d.quality == Quality::Quarantined {
                    quarantined.push(r);
                }
            }
        }
        (out, quarantined)
    }
}
