//! `/api/v1/tenants/{t}/buildings` and `/api/v1/buildings/{b}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use wattline_storage::{Building, BuildingId, BuildingPatch, NewBuilding, TenantId};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, PathParams, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBuilding {
    pub(super) id: BuildingId,
    pub(super) name: String,
    pub(super) floor_area_m2: Option<f64>,
    pub(super) timezone: Option<String>,
}

impl CreateBuilding {
    /// The catalog's new building, of `tenant_id`.
    pub(super) fn into_new(self, tenant_id: TenantId) -> NewBuilding {
        NewBuilding {
            id: self.id,
            tenant_id,
            name: self.name,
            floor_area_m2: self.floor_area_m2,
            timezone: self.timezone,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBuilding {
    name: Option<String>,
    /// Absent: keep; `null`: clear; a number: set.
    #[serde(default, deserialize_with = "present")]
    floor_area_m2: Option<Option<f64>>,
    timezone: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

#[derive(Serialize)]
pub(super) struct BuildingOut {
    id: BuildingId,
    name: String,
    tenant_id: TenantId,
    floor_area_m2: Option<f64>,
    timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor_count: Option<usize>,
}

impl BuildingOut {
    fn new(b: &Building, sensor_count: Option<usize>) -> Self {
        Self {
            id: b.id.clone(),
            name: b.name.clone(),
            tenant_id: b.tenant_id.clone(),
            floor_area_m2: b.floor_area_m2,
            timezone: b.timezone.name().to_owned(),
            sensor_count,
        }
    }
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<BuildingOut>)> {
    caller.check_tenant(&tenant)?;
    let body: CreateBuilding = body.parse()?;
    let tenant_id = TenantId::parse(&tenant)?;
    let catalog = state.catalog.clone();
    let b = blocking(move || catalog.create_building(body.into_new(tenant_id))).await?;
    Ok((StatusCode::CREATED, Json(BuildingOut::new(&b, None))))
}

/// The tenant's buildings with their active sensor counts, from one pass
/// over the in-memory catalog.
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
) -> ApiResult<Json<Vec<BuildingOut>>> {
    caller.check_tenant(&tenant)?;
    let view = state.catalog.view();
    if view.tenant(&tenant).is_none() {
        return Err(crate::error::ApiError::not_found("tenant", &tenant));
    }
    Ok(Json(
        view.buildings_with_active_sensor_counts(&tenant)
            .map(|(b, n)| BuildingOut::new(b, Some(n)))
            .collect(),
    ))
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<BuildingOut>> {
    let b = caller.visible_building(state.catalog.view().building(&id), &id)?;
    Ok(Json(BuildingOut::new(&b, None)))
}

pub(super) async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    body: JsonBody,
) -> ApiResult<Json<BuildingOut>> {
    let b = caller.visible_building(state.catalog.view().building(&id), &id)?;
    let body: PatchBuilding = body.parse()?;
    let old_zone = b.timezone;
    let catalog = state.catalog.clone();
    let b = blocking(move || {
        catalog.update_building(
            &b.id,
            BuildingPatch {
                name: body.name,
                floor_area_m2: body.floor_area_m2,
                timezone: body.timezone,
            },
        )
    })
    .await?;
    if b.timezone != old_zone {
        // Days and months follow the new zone: rebuild them before
        // answering, so the next /energy request already does. (A building
        // rebuilt within the last minute is rebuilt by the rollup worker
        // once it is over; the catalog's zone is what counts, so nothing
        // is lost if this fails or the daemon stops now.)
        let store = state.store()?.clone();
        let id = b.id.to_string();
        blocking(move || store.rebuild_building_rollups(&id)).await?;
    }
    Ok(Json(BuildingOut::new(&b, None)))
}

pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    let b = caller.visible_building(state.catalog.view().building(&id), &id)?;
    let (catalog, alerts) = (state.catalog.clone(), state.alerts.clone());
    // Its rules go with it (a later building of the same id, maybe of
    // another tenant, starts without them); its events stay.
    blocking(move || {
        catalog.delete_building(&b.id)?;
        alerts.delete_rules_of(b.id.as_str())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
