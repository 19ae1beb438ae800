//! `POST /api/v1/sql`: one read-only query, confined to the caller's
//! tenant (admin keys see everything).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use wattline_query::Scope;
use wattline_storage::Role;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryParams};
use crate::sql_output::{Format, respond};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SqlBody {
    sql: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SqlParams {
    format: Option<String>,
}

pub(super) async fn query(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(params): QueryParams<SqlParams>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    caller.require_manager()?;
    let body: SqlBody = body.parse()?;
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let scope = match (caller.key.role, &caller.key.tenant_id) {
        (Role::Admin, _) => Scope::all(),
        (_, Some(t)) => Scope::tenant(t.clone()),
        (_, None) => return Err(ApiError::forbidden("this key belongs to no tenant")),
    };
    if body.sql.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_sql", "the query is empty"));
    }
    let output = state.engine()?.sql(&body.sql, &scope).await?;
    metrics::counter!("wattline_queries_total").increment(1);
    respond(&output, format)
}
