//! Alert rules (`/api/v1/buildings/{b}/alerts`, `/api/v1/alerts/{id}`)
//! and events (`/api/v1/buildings/{b}/alert-events`). Another tenant's
//! building or rule answers 404 like a missing one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use wattline_storage::{AlertRule, NewRule, RuleKind, RulePatch, Silence, WindowSpan};

use crate::AppState;
use crate::alert_json::{EventOut, RuleOut};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, PathParams, QueryParams, blocking};
use crate::ingest::timestamp::parse_text_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRule {
    #[serde(default = "threshold")]
    kind: RuleKind,
    threshold_kwh: Option<f64>,
    #[serde(default = "quarter")]
    window: WindowSpan,
    #[serde(default)]
    emails: Vec<String>,
    webhook_url: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    weeks: Option<u32>,
    percent: Option<f64>,
    #[serde(rename = "for")]
    silent_for: Option<Silence>,
    sensor_id: Option<String>,
}

fn threshold() -> RuleKind {
    RuleKind::Threshold
}
fn quarter() -> WindowSpan {
    WindowSpan::Quarter
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchRule {
    threshold_kwh: Option<f64>,
    window: Option<WindowSpan>,
    emails: Option<Vec<String>>,
    /// Absent: keep; `null`: remove; a URL: set.
    #[serde(default, deserialize_with = "present")]
    webhook_url: Option<Option<String>>,
    enabled: Option<bool>,
    weeks: Option<u32>,
    percent: Option<f64>,
    #[serde(rename = "for")]
    silent_for: Option<Silence>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventParams {
    start: Option<String>,
    end: Option<String>,
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<RuleOut>)> {
    let b = caller.visible_building(state.catalog.view().building(&id), &id)?;
    let body: CreateRule = body.parse()?;
    let sensor_id = match &body.sensor_id {
        None => None,
        Some(s) => match state.catalog.view().sensor(s) {
            Some(sensor) if sensor.building_id == b.id => Some(sensor.id.clone()),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_argument",
                    format!("sensor_id: building {} has no sensor {s:?}", b.id),
                ));
            }
        },
    };
    let alerts = state.alerts.clone();
    let rule = blocking(move || {
        alerts.create_rule(NewRule {
            building_id: b.id,
            tenant_id: b.tenant_id,
            kind: body.kind,
            threshold_kwh: body.threshold_kwh,
            window: body.window,
            emails: body.emails,
            webhook_url: body.webhook_url,
            enabled: body.enabled,
            weeks: body.weeks,
            percent: body.percent,
            silent_for: body.silent_for,
            sensor_id,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(RuleOut::from(&rule))))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Vec<RuleOut>>> {
    let b = caller.visible_building(state.catalog.view().building(&id), &id)?;
    Ok(Json(
        state
            .alerts
            .rules_of(b.id.as_str(), b.tenant_id.as_str())
            .iter()
            .map(RuleOut::from)
            .collect(),
    ))
}

/// The rule if the caller manages its tenant; 404 otherwise.
fn visible_rule(state: &AppState, caller: &Caller, id: &str) -> ApiResult<AlertRule> {
    caller.require_manager()?;
    state
        .alerts
        .rule(id)
        .filter(|r| caller.sees_tenant(r.tenant_id.as_str()))
        .ok_or_else(|| ApiError::not_found("alert rule", id))
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<RuleOut>> {
    let rule = visible_rule(&state, &caller, &id)?;
    Ok(Json(RuleOut::from(&rule)))
}

pub(super) async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    body: JsonBody,
) -> ApiResult<Json<RuleOut>> {
    let rule = visible_rule(&state, &caller, &id)?;
    let body: PatchRule = body.parse()?;
    let alerts = state.alerts.clone();
    let rule = blocking(move || {
        alerts.update_rule(
            &rule.id,
            RulePatch {
                threshold_kwh: body.threshold_kwh,
                window: body.window,
                emails: body.emails,
                webhook_url: body.webhook_url,
                enabled: body.enabled,
                weeks: body.weeks,
                percent: body.percent,
                silent_for: body.silent_for,
            },
        )
    })
    .await?;
    Ok(Json(RuleOut::from(&rule)))
}

pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    let rule = visible_rule(&state, &caller, &id)?;
    let alerts = state.alerts.clone();
    blocking(move || alerts.delete_rule(&rule.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The building's events whose window starts in `[start, end)` (default:
/// everything), oldest first, at most `query.max_rows`.
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(params): QueryParams<EventParams>,
) -> ApiResult<Json<Vec<EventOut>>> {
    let b = caller.visible_building(state.catalog.view().building(&id), &id)?;
    let bound = |name: &str, v: &Option<String>, default: i64| -> ApiResult<i64> {
        match v {
            None => Ok(default),
            Some(t) => parse_text_ms(t)
                .map_err(|e| ApiError::bad_request("invalid_query", format!("{name}: {e}"))),
        }
    };
    let start = bound("start", &params.start, i64::MIN)?;
    let end = bound("end", &params.end, i64::MAX)?;
    let alerts = state.alerts.clone();
    let limit = state.config.query_max_rows;
    let events =
        blocking(move || alerts.events_of(b.id.as_str(), b.tenant_id.as_str(), start, end, limit))
            .await?;
    Ok(Json(events.iter().map(EventOut::from).collect()))
}
