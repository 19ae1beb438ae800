//! `/api/v1/keys`: admin-only key management. The secret is shown once, in
//! the answer to its creation.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use wattline_storage::{ApiKey, KeyId, NewApiKey, Role, TenantId};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{JsonBody, PathParams, blocking};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKey {
    role: Role,
    tenant_id: Option<TenantId>,
    name: String,
}

#[derive(Serialize)]
pub(super) struct KeyOut {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    role: Role,
    tenant_id: Option<TenantId>,
    name: String,
}

impl KeyOut {
    fn new(k: &ApiKey, secret: Option<String>) -> Self {
        Self {
            id: k.id.0.clone(),
            key: secret,
            role: k.role,
            tenant_id: k.tenant_id.clone(),
            name: k.name.clone(),
        }
    }
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<KeyOut>)> {
    caller.require_admin()?;
    let body: CreateKey = body.parse()?;
    let catalog = state.catalog.clone();
    let (key, secret) = blocking(move || {
        catalog.create_key(NewApiKey {
            name: body.name,
            role: body.role,
            tenant_id: body.tenant_id,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(KeyOut::new(&key, Some(secret)))))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<KeyOut>>> {
    caller.require_admin()?;
    let view = state.catalog.view();
    Ok(Json(view.keys().map(|k| KeyOut::new(k, None)).collect()))
}

pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let catalog = state.catalog.clone();
    blocking(move || catalog.revoke_key(&KeyId(id))).await?;
    Ok(StatusCode::NO_CONTENT)
}
