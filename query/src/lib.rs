//! wattline's read side.
//!
//! Readers ask for data by sensor and time; this crate decides where it
//! lives. Today every reading is in the hot buffer of
//! [`wattline_storage::ReadingStore`]; the raw-readings path is written as a
//! merge of ordered sources (older tiers first, the hot buffer last) so that
//! cold chunk files join it as one more source, with the newer tier winning
//! on a duplicate `(sensor, ts)`.

mod raw;

pub use raw::{SensorReadings, merge_newest_wins, sensor_readings};
