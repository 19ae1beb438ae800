//! `GET /api/v1/buildings/{b}/energy`: a building's energy per 15 minutes
//! (from raw readings), local hour, local day or local month (from the
//! rollups, so a year of months is as quick as a day of hours).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use wattline_storage::TimeRange;
use wattline_storage::{Agg, Resolution, bucket_end, coverage, day_start, format_local};

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
    #[serde(default)]
    resolution: EnergyResolution,
}

/// The buckets of an energy series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum EnergyResolution {
    /// 15-minute clock intervals, from the raw readings.
    #[serde(rename = "15m")]
    Quarter,
    /// Local hours, days and months, from the rollups.
    #[default]
    Hour,
    Day,
    Month,
}

impl EnergyResolution {
    /// How far back the series reaches when `start` is not given.
    fn default_span_ms(self) -> i64 {
        const DAY: i64 = 86_400_000;
        match self {
            Self::Quarter => DAY,
            Self::Hour => 7 * DAY,
            Self::Day => 31 * DAY,
            Self::Month => 366 * DAY,
        }
    }
}

#[derive(Serialize)]
pub(super) struct Point {
    ts: String,
    kwh: f64,
    peak_kwh: f64,
    readings: i64,
    /// Peak demand (kW), days and months.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_kw: Option<f64>,
    /// Under the building's tariff, days and months (months with the
    /// demand charge).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
    /// Readings received over those the active sensors should have sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<f64>,
    /// Readings not counted as implausible (`max_kw`).
    #[serde(skip_serializing_if = "is_zero")]
    quarantined: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub(super) struct EnergyAnswer {
    building_id: String,
    resolution: EnergyResolution,
    timezone: String,
    unit: &'static str,
    /// The currency of `cost`, when the tenant has tariffs.
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    points: Vec<Point>,
}

/// An RFC 3339 instant, epoch milliseconds, or a local date `YYYY-MM-DD`
/// (its first instant in the building's zone).
pub(super) fn parse_bound(name: &str, text: &str, tz: Tz) -> ApiResult<i64> {
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
    let tz = building.timezone.tz();
    let resolution = params.resolution;
    let end = match &params.end {
        Some(e) => parse_bound("end", e, tz)?,
        None => wattline_storage::now_ms() + 1,
    };
    let start = match &params.start {
        Some(s) => parse_bound("start", s, tz)?,
        None => end - resolution.default_span_ms(),
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
    let rollups = |r: Resolution| -> ApiResult<Vec<(i64, Agg)>> {
        Ok(state
            .store()?
            .rollups()
            .series(building.id.as_str(), tz, r, range))
    };
    let series = match resolution {
        EnergyResolution::Quarter => {
            state
                .engine()?
                .quarter_hours(&building.id, &building.tenant_id, range)
                .await?
        }
        EnergyResolution::Hour => rollups(Resolution::Hour)?,
        EnergyResolution::Day => rollups(Resolution::Day)?,
        EnergyResolution::Month => rollups(Resolution::Month)?,
    };
    let per_hour = state.catalog.view().expected_per_hour(building.id.as_str());
    let span = |t: i64| match resolution {
        EnergyResolution::Quarter => 900_000,
        EnergyResolution::Hour => bucket_end(tz, Resolution::Hour, t) - t,
        EnergyResolution::Day => bucket_end(tz, Resolution::Day, t) - t,
        EnergyResolution::Month => bucket_end(tz, Resolution::Month, t) - t,
    };
    Ok(Json(EnergyAnswer {
        building_id: building.id.to_string(),
        resolution,
        timezone: building.timezone.name().to_owned(),
        unit: "kWh",
        currency: state
            .catalog
            .view()
            .tariffs_of(building.tenant_id.as_str())
            .next()
            .map(|t| t.currency.clone()),
        points: series
            .into_iter()
            .map(|(t, a)| Point {
                ts: format_local(tz, t),
                kwh: a.kwh,
                peak_kwh: a.peak_kwh,
                readings: a.readings,
                peak_kw: a.peak_kw,
                cost: a.cost,
                coverage: coverage(a.readings, per_hour, span(t)),
                quarantined: a.quarantined,
            })
            .collect(),
    }))
}
