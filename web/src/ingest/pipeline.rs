//! The ingestion pipeline both write endpoints share: batch limits, the
//! per-key rate limit, validation against the catalog and the time
//! window, then a durable append. Nothing is answered 2xx before the
//! write-ahead commit.

use std::time::{Duration, Instant};

use wattline_storage::ReadingBatch;

use super::Item;
use super::Rejection;
use super::validate::{TimeWindow, check_items};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Checks and stores a parsed batch; returns how many readings were stored
/// and the rejected ones (only non-empty with `partial`).
pub(crate) async fn store_items(
    state: &AppState,
    caller: &Caller,
    items: Vec<Item>,
    partial: bool,
) -> ApiResult<(usize, Vec<Rejection>)> {
    let cfg = &state.config;
    let store = state.store()?;
    if items.len() > cfg.max_batch_readings {
        // Parsers stop one past the limit, so the count is a lower bound.
        return Err(ApiError::payload_too_large(format!(
            "the batch holds more than {} readings, the most allowed (ingest.max_batch_readings)",
            cfg.max_batch_readings
        )));
    }
    if items.is_empty() {
        return Err(invalid_readings("the batch holds no readings", vec![]));
    }
    if let Err(wait) = state
        .key_limiter
        .check(&caller.key.id, items.len() as u64, Instant::now())
    {
        metrics::counter!("wattline_rate_limited_total", "limit" => "key").increment(1);
        return Err(ApiError::rate_limited(
            format!(
                "this key may write {} readings per second (ingest.rate_limit_per_key)",
                cfg.rate_limit_per_key
            ),
            wait.as_secs_f64().ceil() as u64,
        ));
    }

    let now_ms = wattline_storage::now_ms();
    let window = TimeWindow {
        oldest_ms: now_ms.saturating_sub(millis(cfg.retention_raw)),
        newest_ms: now_ms.saturating_add(millis(cfg.max_future)),
    };
    let tenant = match caller.key.role {
        wattline_storage::Role::Admin => None,
        _ => caller.key.tenant_id.as_ref().map(|t| t.as_str()),
    };
    let checked = check_items(items, tenant, &state.catalog.view(), window);
    metrics::counter!("wattline_readings_rejected_total").increment(checked.rejected.len() as u64);
    if checked.readings.is_empty() || (!checked.rejected.is_empty() && !partial) {
        let n = checked.rejected.len();
        return Err(invalid_readings(
            &format!("{n} invalid reading(s); nothing of the batch was stored"),
            checked.rejected,
        ));
    }
    let accepted = checked.readings.len();
    store
        .append(ReadingBatch {
            readings: checked.readings,
        })
        .await?;
    metrics::counter!("wattline_readings_ingested_total").increment(accepted as u64);
    Ok((accepted, checked.rejected))
}

fn invalid_readings(message: &str, details: Vec<Rejection>) -> ApiError {
    ApiError::bad_request("invalid_readings", message).with_details(details)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
