//! `/api/v1/buildings/{b}/sensors` and `/api/v1/sensors/{s}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use wattline_storage::{BuildingId, Meter, MeterType, NewSensor, Sensor, SensorId};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, PathParams, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateSensor {
    id: SensorId,
    kind: Option<String>,
    unit: Option<String>,
    is_active: Option<bool>,
    meter_type: Option<MeterType>,
    register_max: Option<f64>,
    max_gap_s: Option<i64>,
    max_kw: Option<f64>,
    interval_s: Option<i64>,
}

/// A sensor's meter settings from the API's fields (defaults for those
/// left out; checked by the catalog).
pub(super) fn meter_of(
    meter_type: Option<MeterType>,
    register_max: Option<f64>,
    max_gap_s: Option<i64>,
    max_kw: Option<f64>,
    interval_s: Option<i64>,
) -> Meter {
    let default = Meter::default();
    Meter {
        meter_type: meter_type.unwrap_or(default.meter_type),
        register_max,
        max_gap_ms: max_gap_s.map_or(default.max_gap_ms, |s| s.saturating_mul(1000)),
        max_kw,
        interval_s: interval_s.unwrap_or(default.interval_s),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchSensor {
    is_active: bool,
}

#[derive(Serialize)]
pub(super) struct SensorOut {
    id: SensorId,
    building_id: BuildingId,
    kind: String,
    unit: String,
    is_active: bool,
    meter_type: MeterType,
    #[serde(skip_serializing_if = "Option::is_none")]
    register_max: Option<f64>,
    /// For cumulative and power meters.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_gap_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_kw: Option<f64>,
    interval_s: i64,
    /// Its newest reading's time (UTC), in the list only.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reading: Option<String>,
}

impl From<&Sensor> for SensorOut {
    fn from(s: &Sensor) -> Self {
        Self {
            id: s.id.clone(),
            building_id: s.building_id.clone(),
            kind: s.kind.clone(),
            unit: s.unit.clone(),
            is_active: s.is_active,
            meter_type: s.meter.meter_type,
            register_max: s.meter.register_max,
            max_gap_s: (!s.meter.is_interval()).then_some(s.meter.max_gap_ms / 1000),
            max_kw: s.meter.max_kw,
            interval_s: s.meter.interval_s,
            last_reading: None,
        }
    }
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(building): PathParams<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<SensorOut>)> {
    let b = caller.visible_building(state.catalog.view().building(&building), &building)?;
    let body: CreateSensor = body.parse()?;
    let catalog = state.catalog.clone();
    let s = blocking(move || {
        catalog.create_sensor(NewSensor {
            id: body.id,
            building_id: b.id,
            kind: body.kind,
            unit: body.unit,
            is_active: body.is_active,
            meter: meter_of(
                body.meter_type,
                body.register_max,
                body.max_gap_s,
                body.max_kw,
                body.interval_s,
            ),
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(SensorOut::from(&s))))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(building): PathParams<String>,
) -> ApiResult<Json<Vec<SensorOut>>> {
    let view = state.catalog.view();
    caller.visible_building(view.building(&building), &building)?;
    let newest = state.store().ok().map(|s| s.last_seen().reader());
    Ok(Json(
        view.sensors_of(&building)
            .map(|s| SensorOut {
                last_reading: newest
                    .as_ref()
                    .and_then(|n| n.get(s.key))
                    .map(|t| wattline_storage::format_local(chrono_tz::UTC, t)),
                ..SensorOut::from(s)
            })
            .collect(),
    ))
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<SensorOut>> {
    let s = caller.visible_sensor(state.catalog.view().sensor(&id), &id)?;
    Ok(Json(SensorOut::from(&s)))
}

pub(super) async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    body: JsonBody,
) -> ApiResult<Json<SensorOut>> {
    let s = caller.visible_sensor(state.catalog.view().sensor(&id), &id)?;
    let body: PatchSensor = body.parse()?;
    let catalog = state.catalog.clone();
    let s = blocking(move || catalog.set_sensor_active(&s.id, body.is_active)).await?;
    Ok(Json(SensorOut::from(&s)))
}
