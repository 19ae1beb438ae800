//! `GET /api/v1/buildings/{b}/energy`: a building's energy per 15 minutes
//! (from raw readings), local hour, local day or local month (from the
//! rollups, so a year of months is as quick as a day of hours).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use wattline_query::Scope;
use wattline_storage::TimeRange;
use wattline_storage::rollup::calendar::{day_start, format_local};
use wattline_storage::rollup::{Agg, Resolution};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParams, QueryParams};
use crate::ingest::timestamp::parse_text_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnergyParams {
    start: Option<String>,
    end: Option<String>,
    resolution: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Point {
    ts: String,
    kwh: f64,
    peak_kwh: f64,
    readings: i64,
}

#[derive(Serialize)]
pub(super) struct EnergyAnswer {
    building_id: String,
    resolution: &'static str,
    timezone: String,
    unit: &'static str,
    points: Vec<Point>,
}

/// How far back the series reaches when `start` is not given.
fn default_span_ms(resolution: &str) -> i64 {
    const DAY: i64 = 86_400_000;
    match resolution {
        "15m" => DAY,
        "hour" => 7 * DAY,
        "day" => 31 * DAY,
        _ => 366 * DAY,
    }
}

/// An RFC 3339 instant, epoch milliseconds, or a local date `YYYY-MM-DD`
/// (its first instant in the building's zone).
fn parse_bound(name: &str, text: &str, tz: Tz) -> ApiResult<i64> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day_start(tz, date));
    }
    parse_text_ms(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_query",
            format!("{name}: {e}; or give a local date YYYY-MM-DD"),
        )
    })
}

pub(super) async fn energy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(params): QueryParams<EnergyParams>,
) -> ApiResult<Json<EnergyAnswer>> {
    let building = caller.visible_building(state.catalog.view().building(&id), &id)?;
    let tz: Tz = building.timezone.parse().unwrap_or(Tz::UTC);
    let resolution: &'static str = match params.resolution.as_deref().unwrap_or("hour") {
        "15m" => "15m",
        "hour" => "hour",
        "day" => "day",
        "month" => "month",
        other => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("resolution {other:?} is not one of 15m, hour, day, month"),
            ));
        }
    };
    let end = match &params.end {
        Some(e) => parse_bound("end", e, tz)?,
        None => wattline_storage::now_ms() + 1,
    };
    let start = match &params.start {
        Some(s) => parse_bound("start", s, tz)?,
        None => end - default_span_ms(resolution),
    };
    if start > end {
        return Err(ApiError::bad_request(
            "invalid_query",
            "start must not be after end",
        ));
    }
    let range = TimeRange {
        start_ms: start,
        end_ms: end,
    };
    let series: Vec<(i64, Agg)> = match resolution {
        "15m" => quarters(&state, building.id.as_str(), &building.tenant_id, range).await?,
        "hour" => {
            state
                .store()?
                .rollups()
                .series(building.id.as_str(), tz, Resolution::Hour, range)
        }
        "day" => state
            .store()?
            .rollups()
            .series(building.id.as_str(), tz, Resolution::Day, range),
        _ => state
            .store()?
            .rollups()
            .series(building.id.as_str(), tz, Resolution::Month, range),
    };
    Ok(Json(EnergyAnswer {
        building_id: building.id.to_string(),
        resolution,
        timezone: building.timezone.clone(),
        unit: "kWh",
        points: series
            .into_iter()
            .map(|(t, a)| Point {
                ts: format_local(tz, t),
                kwh: a.kwh,
                peak_kwh: a.peak_kwh,
                readings: a.readings,
            })
            .collect(),
    }))
}

/// 15-minute clock intervals from the raw readings (every real UTC offset
/// is a multiple of 15 minutes, so UTC quarters are local quarters).
async fn quarters(
    state: &AppState,
    building: &str,
    tenant: &wattline_storage::TenantId,
    range: TimeRange,
) -> ApiResult<Vec<(i64, Agg)>> {
    // Building ids are limited to A-Za-z0-9_.:- and cannot break the quoting.
    let sql = format!(
        "SELECT date_bin(INTERVAL '15 minutes', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS q, \
         sum(value_kwh), max(value_kwh), count(*) FROM readings \
         WHERE building_id = '{building}' AND ts >= to_timestamp_millis({}) AND ts < to_timestamp_millis({}) \
         GROUP BY q ORDER BY q",
        range.start_ms.max(-8_000_000_000_000),
        range.end_ms.min(8_000_000_000_000)
    );
    // Scoped to the building's tenant: it shares that tenant's query slots.
    let out = state
        .engine()?
        .sql(&sql, &Scope::tenant(tenant.clone()))
        .await?;
    let mut points = Vec::new();
    let as_type = |a: &ArrayRef, t: &DataType| cast(a, t).ok();
    let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
    for b in &out.batches {
        let (ts, kwh, peak, n) = (
            as_type(b.column(0), &ms),
            as_type(b.column(1), &DataType::Float64),
            as_type(b.column(2), &DataType::Float64),
            as_type(b.column(3), &DataType::Int64),
        );
        let ts = ts
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<TimestampMillisecondArray>());
        let kwh = kwh
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>());
        let peak = peak
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>());
        let n = n
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<Int64Array>());
        let (Some(ts), Some(kwh), Some(peak), Some(n)) = (ts, kwh, peak, n) else {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "15-minute energy has an unexpected schema",
            ));
        };
        for i in 0..b.num_rows() {
            points.push((
                ts.value(i),
                Agg {
                    kwh: kwh.value(i),
                    peak_kwh: peak.value(i),
                    readings: n.value(i),
                },
            ));
        }
    }
    Ok(points)
}
