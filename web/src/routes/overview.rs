//! What the dashboard opens with: `GET /api/v1/me` (who the key is) and
//! `GET /api/v1/tenants/{t}/overview` (every building of the tenant with
//! its sensors, today's and this month's energy in its local calendar,
//! open alerts and data freshness), each answered in one pass over
//! memory, never a request per building.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use wattline_storage::{Role, format_local, kwh_sum};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParams, blocking};

#[derive(Serialize)]
pub(super) struct Me {
    key_id: String,
    name: String,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
}

pub(super) async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        key_id: caller.key.id.to_string(),
        name: caller.key.name.clone(),
        role: caller.key.role,
        tenant_id: caller.key.tenant_id.as_ref().map(|t| t.to_string()),
    })
}

#[derive(Serialize)]
pub(super) struct BuildingRow {
    id: String,
    name: String,
    timezone: String,
    floor_area_m2: Option<f64>,
    /// Active sensors.
    sensor_count: usize,
    today_kwh: f64,
    month_kwh: f64,
    /// This month's energy per m2, when the floor area is known.
    month_kwh_per_m2: Option<f64>,
    /// Alert episodes still firing.
    open_alerts: usize,
    /// The newest reading of any of its sensors, in its local time.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reading: Option<String>,
    /// Seconds since that reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_reading_age_s: Option<i64>,
}

#[derive(Serialize, Default)]
pub(super) struct Totals {
    sensor_count: usize,
    today_kwh: f64,
    month_kwh: f64,
    open_alerts: usize,
}

#[derive(Serialize)]
pub(super) struct Overview {
    tenant_id: String,
    at: String,
    buildings: Vec<BuildingRow>,
    total: Totals,
}

pub(super) async fn overview(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
) -> ApiResult<Json<Overview>> {
    caller.check_tenant(&tenant)?;
    let store = state.store()?;
    let now = wattline_storage::now_ms();
    let alerts = state.alerts.clone();
    let of = tenant.clone();
    let open = blocking(move || Ok(alerts.open_episodes_by_building(&of))).await?;
    let view = state.catalog.view();
    if view.tenant(&tenant).is_none() {
        return Err(ApiError::not_found("tenant", &tenant));
    }
    let buildings: Vec<_> = view.buildings_of(&tenant).collect();
    let zones: Vec<(&str, chrono_tz::Tz)> = buildings
        .iter()
        .map(|b| (b.id.as_str(), b.timezone.tz()))
        .collect();
    let energy = store.rollups().today_and_month(&zones, now);
    let newest = store.last_seen().reader();
    let mut total = Totals::default();
    let rows = buildings
        .iter()
        .zip(energy)
        .map(|(b, (today, month))| {
            let tz = b.timezone.tz();
            let mut sensor_count = 0;
            let mut last: Option<i64> = None;
            for s in view.sensors_of(b.id.as_str()) {
                sensor_count += usize::from(s.is_active);
                last = last.max(newest.get(s.key));
            }
            let month_kwh = month.map_or(0.0, |a| a.kwh);
            let row = BuildingRow {
                id: b.id.to_string(),
                name: b.name.clone(),
                timezone: b.timezone.name().to_owned(),
                floor_area_m2: b.floor_area_m2,
                sensor_count,
                today_kwh: today.map_or(0.0, |a| a.kwh),
                month_kwh,
                month_kwh_per_m2: b.floor_area_m2.filter(|a| *a > 0.0).map(|a| month_kwh / a),
                open_alerts: open.get(b.id.as_str()).copied().unwrap_or(0),
                last_reading: last.map(|t| format_local(tz, t)),
                last_reading_age_s: last.map(|t| (now - t).max(0) / 1000),
            };
            total.sensor_count += row.sensor_count;
            total.today_kwh = kwh_sum([total.today_kwh, row.today_kwh]);
            total.month_kwh = kwh_sum([total.month_kwh, row.month_kwh]);
            total.open_alerts += row.open_alerts;
            row
        })
        .collect();
    Ok(Json(Overview {
        tenant_id: tenant,
        at: format_local(chrono_tz::UTC, now),
        buildings: rows,
        total,
    }))
}
