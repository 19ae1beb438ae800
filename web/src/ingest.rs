//! Ingestion: request bodies in four formats become one list of parsed
//! items, which [`validate`] turns into a storage batch plus rejections.
//!
//! Every format keeps each reading's position (`index` among the batch's
//! readings, `line` for line-oriented formats) so that an error can name
//! exactly which reading was bad.

pub(crate) mod csv;
#[cfg(test)]
mod fuzz_tests;
pub(crate) mod json;
pub(crate) mod line_protocol;
pub(crate) mod pipeline;
pub(crate) mod timestamp;
pub(crate) mod validate;

use serde::Serialize;

/// A reading as the client wrote it, not yet checked against the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReading {
    pub sensor_id: String,
    pub ts_ms: i64,
    pub value_kwh: f64,
}

/// One reading of the body: parsed, or the reason it could not be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// 1-based line for CSV, NDJSON and line protocol.
    pub line: Option<usize>,
    pub reading: Result<RawReading, String>,
}

/// A refused reading, as listed in `details` or `rejected`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Rejection {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub error: String,
}

/// Checks readings that arrive by another way than an HTTP request (MQTT)
/// exactly as a request's are (the sensor exists and belongs to `tenant`
/// if one is given, is active, the value is finite and plausible, the
/// time within `[oldest_ms, newest_ms]`). Returns the storage readings and,
/// for the others, their position and the reason.
pub fn check_readings(
    readings: Vec<RawReading>,
    tenant: Option<&str>,
    view: &wattline_storage::CatalogView<'_>,
    oldest_ms: i64,
    newest_ms: i64,
) -> (Vec<wattline_storage::Reading>, Vec<(usize, String)>) {
    let items = readings
        .into_iter()
        .map(|r| Item {
            line: None,
            reading: Ok(r),
        })
        .collect();
    let window = validate::TimeWindow {
        oldest_ms,
        newest_ms,
    };
    let checked = validate::check_items(items, tenant, view, window);
    let rejected = checked
        .rejected
        .into_iter()
        .map(|r| (r.index, r.error))
        .collect();
    (checked.readings, rejected)
}
