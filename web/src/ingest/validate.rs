//! Checks parsed readings against the catalog and the time window, and
//! turns the good ones into storage readings.

use wattline_storage::{CatalogView, Reading};

use super::{Item, Rejection};

/// The largest magnitude of one reading, kWh (a terawatt-hour).
const MAX_KWH: f64 = 1e9;

/// The window of acceptable timestamps, fixed per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWindow {
    /// Oldest accepted `ts` (now minus `retention.raw`).
    pub oldest_ms: i64,
    /// Newest accepted `ts` (now plus `ingest.max_future`).
    pub newest_ms: i64,
}

/// Valid readings, and the others with their reasons.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub readings: Vec<Reading>,
    pub rejected: Vec<Rejection>,
}

/// Validates every item. `tenant` is the caller's tenant, `None` for admin
/// keys (which may write to any sensor). A sensor of another tenant gets
/// the same message as an unknown one.
pub(crate) fn check_items(
    items: Vec<Item>,
    tenant: Option<&str>,
    view: &CatalogView<'_>,
    window: TimeWindow,
) -> Checked {
    let mut out = Checked {
        readings: Vec::with_capacity(items.len()),
        rejected: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        let checked = item.reading.and_then(|r| {
            let sensor = view
                .sensor(&r.sensor_id)
                .filter(|s| tenant.is_none_or(|t| s.tenant_id.as_str() == t))
                .ok_or_else(|| format!("unknown sensor {:?}", r.sensor_id))?;
            if !sensor.is_active {
                return Err(format!(
                    "sensor {:?} is inactive and accepts no new readings",
                    r.sensor_id
                ));
            }
            if !r.value_kwh.is_finite() {
                return Err(format!(
                    "value_kwh must be a finite number, not {}",
                    r.value_kwh
                ));
            }
            // Sums are exact in milliwatt-hours up to 9 TWh; no reading
            // of a meter comes near a terawatt-hour.
            if r.value_kwh.abs() > MAX_KWH {
                return Err(format!(
                    "value_kwh {} is beyond ±{MAX_KWH:e} kWh for one reading",
                    r.value_kwh
                ));
            }
            if r.ts_ms < window.oldest_ms {
                return Err(format!(
                    "ts {} is older than the raw retention period allows",
                    super::timestamp::format_utc(r.ts_ms)
                ));
            }
            if r.ts_ms > window.newest_ms {
                return Err(format!(
                    "ts {} is further in the future than ingest.max_future allows",
                    super::timestamp::format_utc(r.ts_ms)
                ));
            }
            Ok(Reading {
                sensor: sensor.key,
                ts_ms: r.ts_ms,
                value_kwh: r.value_kwh,
            })
        });
        match checked {
            Ok(reading) => out.readings.push(reading),
            Err(error) => out.rejected.push(Rejection {
                index,
                line: item.line,
                error,
            }),
        }
    }
    out
}
