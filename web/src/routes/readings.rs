//! `POST /api/v1/readings` (JSON, NDJSON, CSV) and
//! `GET /api/v1/sensors/{s}/readings`.
//!
//! [`store_items`] is the ingestion pipeline both write endpoints share:
//! batch limits, the per-key rate limit, validation, then a durable append.
//! Nothing is answered 2xx before the write-ahead commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use wattline_storage::{ReadingBatch, TimeRange};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParams, QueryParams, read_body};
use crate::ingest::timestamp::{format_utc, parse_text_ms};
use crate::ingest::validate::{TimeWindow, check_items};
use crate::ingest::{Item, Rejection, csv, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IngestParams {
    #[serde(default)]
    partial: bool,
}

#[derive(Serialize)]
pub(super) struct IngestAnswer {
    accepted: usize,
    rejected: Vec<Rejection>,
}

pub(super) async fn ingest(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(params): QueryParams<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<IngestAnswer>)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let parse: fn(&[u8], usize) -> Result<Vec<Item>, String> = match content_type.as_str() {
        "application/json" => json::parse_document,
        "application/x-ndjson" | "application/ndjson" => json::parse_ndjson,
        "text/csv" => csv::parse_csv,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {other:?} is not accepted; send application/json, \
                     application/x-ndjson or text/csv"
                ),
            ));
        }
    };
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    let items = parse(&bytes, state.config.max_batch_readings)
        .map_err(|msg| ApiError::bad_request("invalid_body", msg))?;
    let (accepted, rejected) = store_items(&state, &caller, items, params.partial).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestAnswer { accepted, rejected }),
    ))
}

/// Checks and stores a parsed batch; returns how many readings were stored
/// and the rejected ones (only non-empty with `partial`).
pub(super) async fn store_items(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RangeParams {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Point {
    ts: String,
    value_kwh: f64,
}

#[derive(Serialize)]
pub(super) struct SensorReadingsOut {
    sensor_id: String,
    readings: Vec<Point>,
    truncated: bool,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(params): QueryParams<RangeParams>,
) -> ApiResult<Json<SensorReadingsOut>> {
    let sensor = caller.visible_sensor(state.catalog.view().sensor(&id), &id)?;
    let bound = |name: &str, v: &Option<String>, default: i64| -> ApiResult<i64> {
        v.as_deref().map_or(Ok(default), |s| {
            parse_text_ms(s)
                .map_err(|e| ApiError::bad_request("invalid_query", format!("{name}: {e}")))
        })
    };
    let range = TimeRange {
        start_ms: bound("start", &params.start, i64::MIN)?,
        end_ms: bound("end", &params.end, i64::MAX)?,
    };
    if range.start_ms > range.end_ms {
        return Err(ApiError::bad_request(
            "invalid_query",
            "start must not be after end",
        ));
    }
    let got = state
        .engine()?
        .sensor_readings(
            sensor.id.as_str(),
            &sensor.tenant_id,
            range,
            state.config.query_max_rows,
        )
        .await?;
    Ok(Json(SensorReadingsOut {
        sensor_id: sensor.id.to_string(),
        readings: got
            .points
            .into_iter()
            .map(|(t, v)| Point {
                ts: format_utc(t),
                value_kwh: v,
            })
            .collect(),
        truncated: got.truncated,
    }))
}
