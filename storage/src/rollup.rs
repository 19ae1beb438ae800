//! Rollups: energy per sensor-hour and per building hour, local day and
//! local month, kept equal to the sum of the raw readings, also after late
//! data and corrections.
//!
//! - [`calendar`]: buckets in a building's IANA time zone.
//! - [`rollups`]: the building tables in memory and their files; [`steps`]
//!   recompute exactly what changed ([`reach`]: the hours and quarters a
//!   day's readings can change), [`zone_rebuild`] after a time zone
//!   change, [`reads`] serve them, [`retention`] drops old buckets.
//! - [`demand`]: peak demand and cost of days, from the quarters;
//!   [`recost`] after a tariff change.
//! - [`derived`]: the interval energy of cumulative and power meters.
//! - [`quarters`]: recent 15-minute building totals, for alert windows.
//! - [`windows`]: clock-aligned windows read in one pass (alert rules).
//! - [`zones`]: which time zone each building's rollups follow.
//! - [`files`]: the rollup tables as Parquet under `chunks/rollups/`;
//!   [`pinned`]: one version of each file for a query.

pub(crate) mod calendar;
pub(crate) mod changes;
#[cfg(test)]
mod cost_tests;
mod demand;
mod derived;
pub(crate) mod files;
#[cfg(test)]
mod meter_tests;
mod pinned;
mod quarters;
mod reach;
mod reads;
mod recost;
mod retention;
mod rollups;
mod steps;
#[cfg(test)]
mod tests;
mod windows;
mod zone_rebuild;
mod zones;

pub use changes::DayChange;
pub use files::{RollupRow, RollupTable, to_batch as rollup_batch};
pub use pinned::{PinnedPartition, PinnedPartitions};
pub use quarters::QUARTER_DAYS;
pub use rollups::{Agg, Resolution, Rollups, from_days};
pub use windows::{WindowReader, WindowSpan};
