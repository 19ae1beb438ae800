//! `/api/v1/admin/*`: operations on the whole appliance (admin keys).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

#[derive(Serialize)]
pub(super) struct FlushAnswer {
    /// Readings moved from memory to chunk files.
    flushed_readings: u64,
    chunks_written: usize,
    /// Days whose files were merged into one.
    days_compacted: usize,
}

/// Persists everything in memory and merges every day's files into one, so
/// that each reading is in `chunks/readings/` exactly once.
pub(super) async fn flush(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<FlushAnswer>> {
    caller.require_admin()?;
    let store = state.store()?.clone();
    let answer = tokio::task::spawn_blocking(move || -> wattline_storage::Result<FlushAnswer> {
        let flushed = store.flush()?;
        let days = store.compact(true)?;
        Ok(FlushAnswer {
            flushed_readings: flushed.readings,
            chunks_written: flushed.chunks_written,
            days_compacted: days,
        })
    })
    .await
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("flush task failed: {e}"),
        )
    })??;
    Ok(Json(answer))
}
