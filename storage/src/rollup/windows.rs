//! Clock-aligned windows over a building's energy, read from memory in
//! one pass: what alert evaluation reads instead of querying readings.

use std::collections::HashMap;
use std::sync::{Arc, RwLockReadGuard};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::calendar::{day_start, hour_start, local_date, next_day};
use super::quarters::QUARTER_MS;
use super::rollups::{Agg, BuildingRollups, HOUR_MS, Rollups};
use crate::sync::RecoverRw;

/// The length of a window: a 15-minute interval, a local hour or a local
/// day of the building.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WindowSpan {
    Quarter,
    Hour,
    Day,
}

impl WindowSpan {
    /// Parses `"15m"`, `"1h"` (or `"60m"`) and `"1d"` (or `"24h"`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "15m" => Some(Self::Quarter),
            "1h" | "60m" => Some(Self::Hour),
            "1d" | "24h" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Quarter => "15m",
            Self::Hour => "1h",
            Self::Day => "1d",
        }
    }

    /// Start of the window holding `ts`.
    pub fn start_of(self, tz: Tz, ts: i64) -> i64 {
        match self {
            Self::Quarter => ts - ts.rem_euclid(QUARTER_MS),
            Self::Hour => hour_start(tz, ts),
            Self::Day => day_start(tz, local_date(tz, ts)),
        }
    }

    /// Start of the window after the one starting at `start`.
    pub fn next(self, tz: Tz, start: i64) -> i64 {
        match self {
            Self::Quarter => start + QUARTER_MS,
            Self::Hour => hour_start(tz, start + HOUR_MS),
            Self::Day => day_start(tz, next_day(local_date(tz, start))),
        }
    }
}

impl TryFrom<String> for WindowSpan {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("window {s:?} is not one of \"15m\", \"1h\", \"1d\""))
    }
}

impl From<WindowSpan> for String {
    fn from(w: WindowSpan) -> String {
        w.name().to_owned()
    }
}

/// A read lock on the building tables; hold it for one evaluation pass.
pub struct WindowReader<'a> {
    buildings: RwLockReadGuard<'a, HashMap<Arc<str>, BuildingRollups>>,
    generation: u64,
}

impl Rollups {
    pub fn windows(&self) -> WindowReader<'_> {
        let buildings = self.buildings.read_locked();
        // Read under the lock: changes bump it while holding the write lock.
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        WindowReader {
            buildings,
            generation,
        }
    }
}

impl WindowReader<'_> {
    /// The current generation: pass it back to [`Self::changed_since`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The earliest start of a `span` bucket of `building` changed after
    /// generation `seen` (`i64::MIN`: maybe any), or `None` if none did.
    pub fn changed_since(&self, building: &str, span: WindowSpan, seen: u64) -> Option<i64> {
        self.buildings.get(building)?.changed_since(span, seen)
    }

    /// The building's energy in the window starting at `start`; `None`
    /// when it holds no reading.
    pub fn energy(&self, building: &str, span: WindowSpan, tz: Tz, start: i64) -> Option<Agg> {
        let b = self.buildings.get(building)?;
        match span {
            WindowSpan::Quarter => b.quarters.get(&start).copied(),
            WindowSpan::Hour => b.hourly.get(&start).copied(),
            WindowSpan::Day => b.daily.get(&local_date(tz, start)).copied(),
        }
    }

    /// Energy of the same window `weeks_back` local weeks earlier (same
    /// local weekday and clock time), for baselines.
    pub fn weeks_earlier(
        &self,
        building: &str,
        span: WindowSpan,
        tz: Tz,
        start: i64,
        weeks_back: u32,
    ) -> Option<Agg> {
        let local = chrono::DateTime::from_timestamp_millis(start)?
            .with_timezone(&tz)
            .naive_local();
        let earlier = local - chrono::Duration::weeks(i64::from(weeks_back));
        let at = chrono::TimeZone::from_local_datetime(&tz, &earlier)
            .earliest()?
            .timestamp_millis();
        self.energy(building, span, tz, span.start_of(tz, at))
    }
}
