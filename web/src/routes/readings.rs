//! `POST /api/v1/readings` (JSON, NDJSON, CSV) and
//! `GET /api/v1/sensors/{s}/readings`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use wattline_storage::TimeRange;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParams, QueryParams, read_body};
use crate::ingest::pipeline::store_items;
use crate::ingest::timestamp::{format_utc, parse_text_ms};
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
