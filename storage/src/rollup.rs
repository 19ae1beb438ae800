//! Rollups: energy per sensor-hour and per building hour, local day and
//! local month, kept equal to the sum of the raw readings, also after late
//! data and corrections.
//!
//! - [`calendar`]: buckets in a building's IANA time zone.
//! - [`marks`]: which (day, sensor) pairs changed, recorded with the batch.
//! - [`engine`]: the small idempotent steps that recompute exactly those.
//! - [`files`]: the rollup tables as Parquet under `chunks/rollups/`.

pub mod calendar;
mod engine;
pub mod files;
pub(crate) mod marks;
#[cfg(test)]
mod tests;
mod zones;

pub use engine::{Agg, Resolution, Rollups};
pub use files::{RollupRow, RollupTable};
