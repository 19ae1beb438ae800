//! `/api/v1/tenants`: admin-only.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use wattline_storage::{Tenant, TenantId};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    id: TenantId,
    name: String,
}

#[derive(Serialize)]
pub(super) struct TenantOut {
    id: TenantId,
    name: String,
}

impl From<&Tenant> for TenantOut {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
        }
    }
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<TenantOut>)> {
    caller.require_admin()?;
    let body: CreateTenant = body.parse()?;
    let catalog = state.catalog.clone();
    let tenant = blocking(move || catalog.create_tenant(body.id, body.name)).await?;
    Ok((StatusCode::CREATED, Json(TenantOut::from(&tenant))))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<TenantOut>>> {
    caller.require_admin()?;
    Ok(Json(
        state
            .catalog
            .view()
            .tenants()
            .map(TenantOut::from)
            .collect(),
    ))
}
