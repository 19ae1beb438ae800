//! `POST /api/v1/write`: InfluxDB line protocol, answered as InfluxDB does
//! (204, no body) so Telegraf and meter gateways work unchanged. InfluxDB's
//! own query parameters (`db`, `org`, `bucket`, ...) are accepted and
//! ignored.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{QueryParams, read_body};
use crate::ingest::line_protocol::{Precision, parse_lines};

use crate::ingest::pipeline::store_items;
use wattline_storage::now_ms;

#[derive(Deserialize)]
pub(super) struct WriteParams {
    precision: Option<String>,
    #[serde(default)]
    partial: bool,
}

pub(super) async fn ingest(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(params): QueryParams<WriteParams>,
    body: Body,
) -> ApiResult<StatusCode> {
    let precision = Precision::parse(params.precision.as_deref().unwrap_or("ns"))
        .map_err(|msg| ApiError::bad_request("invalid_query", msg))?;
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    let items = parse_lines(&bytes, precision, now_ms(), state.config.max_batch_readings)
        .map_err(|msg| ApiError::bad_request("invalid_body", msg))?;
    store_items(&state, &caller, items, params.partial).await?;
    Ok(StatusCode::NO_CONTENT)
}
