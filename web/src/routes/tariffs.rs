//! `/api/v1/tenants/{t}/tariffs[/{id}]`: time-of-use
//! tariffs, which put a cost on the rollups' days and months. A tariff is
//! never edited in place: a new one with a later `effective_from` takes
//! over, and deleting one re-costs the days it priced.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use wattline_storage::{BuildingId, Period, Tariff, TenantId};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, PathParams, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTariff {
    id: String,
    building_id: Option<BuildingId>,
    currency: String,
    effective_from: String,
    price_per_kwh: f64,
    #[serde(default)]
    periods: Vec<Period>,
    demand_charge_per_kw: Option<f64>,
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Tariff>)> {
    caller.check_tenant(&tenant)?;
    let body: CreateTariff = body.parse()?;
    // Tariff ids follow the rules of every other id.
    wattline_storage::BuildingId::parse(&body.id)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("id: {e}")))?;
    let effective_from =
        NaiveDate::parse_from_str(&body.effective_from, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(
                "invalid_request",
                "effective_from must be a local date YYYY-MM-DD",
            )
        })?;
    let tariff = Tariff {
        id: body.id,
        tenant_id: TenantId::parse(&tenant)?,
        building_id: body.building_id,
        currency: body.currency,
        effective_from,
        price_per_kwh: body.price_per_kwh,
        periods: body.periods,
        demand_charge_per_kw: body.demand_charge_per_kw,
    };
    let catalog = state.catalog.clone();
    let t = blocking(move || catalog.create_tariff(tariff)).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
) -> ApiResult<Json<Vec<Tariff>>> {
    caller.check_tenant(&tenant)?;
    let view = state.catalog.view();
    if view.tenant(&tenant).is_none() {
        return Err(ApiError::not_found("tenant", &tenant));
    }
    Ok(Json(view.tariffs_of(&tenant).cloned().collect()))
}

pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.check_tenant(&tenant)?;
    let tenant = TenantId::parse(&tenant)?;
    let catalog = state.catalog.clone();
    blocking(move || catalog.delete_tariff(&tenant, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
