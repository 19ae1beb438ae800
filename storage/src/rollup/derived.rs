//! Interval energy of raw readings, as the rollups count it: readings of
//! interval meters as they are, those of cumulative and power meters
//! derived (see [`crate::meter`]). Derivation needs readings around the
//! ones counted, so callers read raw readings [`Meters::reach_ms`] beyond
//! the range they count.

use std::collections::HashMap;

use crate::catalog::CatalogView;
use crate::ids::SensorKey;
use crate::meter::{Meter, derive, reach_ms};
use crate::reading::Reading;

/// The meter settings of the non-interval sensors among some sensors.
#[derive(Default)]
pub(super) struct Meters(HashMap<SensorKey, Meter>);

impl Meters {
    pub(super) fn of(view: &CatalogView<'_>, sensors: impl IntoIterator<Item = SensorKey>) -> Self {
        Self(
            sensors
                .into_iter()
                .filter_map(|k| Some((k, view.sensor_by_key(k)?.meter)))
                .filter(|(_, m)| !m.is_interval())
                .collect(),
        )
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How far beyond a range raw readings must be read (0 without meters).
    pub(super) fn reach_ms(&self) -> i64 {
        self.0.values().map(reach_ms).max().unwrap_or(0)
    }

    /// The readings of `raw` that count, with their interval energy as
    /// `value_kwh`: all of an interval meter, the derived ones of the
    /// others. `raw` is deduplicated (one reading per sensor and time).
    pub(super) fn interval_energy(&self, raw: Vec<Reading>) -> Vec<Reading> {
        if self.0.is_empty() {
            return raw;
        }
        let (mut metered, mut out): (Vec<Reading>, Vec<Reading>) = raw
            .into_iter()
            .partition(|r| self.0.contains_key(&r.sensor));
        metered.sort_unstable_by_key(|r| (r.sensor, r.ts_ms));
        for run in metered.chunk_by(|a, b| a.sensor == b.sensor) {
            let sensor = run[0].sensor;
            let series: Vec<(i64, f64)> = run.iter().map(|r| (r.ts_ms, r.value_kwh)).collect();
            out.extend(
                derive(&self.0[&sensor], &series)
                    .into_iter()
                    .filter_map(|d| {
                        Some(Reading {
                            sensor,
                            ts_ms: d.ts_ms,
                            value_kwh: d.kwh?,
                        })
                    }),
            );
        }
        out
    }
}
