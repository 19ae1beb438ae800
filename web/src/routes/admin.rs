//! `/api/v1/admin/*`: operations on the whole appliance (admin keys).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::blocking;

#[derive(Serialize)]
pub(super) struct FlushAnswer {
    /// Readings moved from memory to chunk files.
    flushed_readings: u64,
    chunks_written: usize,
    /// Days whose files were merged into one.
    days_compacted: usize,
    /// UTC days whose rollups were brought up to date.
    rollup_days: usize,
}

/// Persists everything in memory, merges every day's files into one, so
/// that each reading is in `chunks/readings/` exactly once, and brings the
/// rollups (in `chunks/rollups/`) up to date.
pub(super) async fn flush(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<FlushAnswer>> {
    caller.require_admin()?;
    let store = state.store()?.clone();
    let answer = blocking(move || {
        let flushed = store.flush()?;
        let days = store.compact(true)?;
        let rollup_days = store.catch_up_rollups()?;
        Ok(FlushAnswer {
            flushed_readings: flushed.readings,
            chunks_written: flushed.chunks_written,
            days_compacted: days,
            rollup_days,
        })
    })
    .await?;
    Ok(Json(answer))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupBody {
    /// Absolute path on the appliance; must not exist or be empty.
    dir: String,
}

#[derive(Serialize)]
pub(super) struct BackupAnswer {
    dir: String,
    chunks: usize,
    chunk_bytes: u64,
}

/// Writes a consistent copy of the data directory to `dir` (used by
/// `wattline backup`).
pub(super) async fn backup(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: crate::extract::JsonBody,
) -> ApiResult<Json<BackupAnswer>> {
    caller.require_admin()?;
    let body: BackupBody = body.parse()?;
    let dir = std::path::PathBuf::from(&body.dir);
    if !dir.is_absolute() {
        return Err(ApiError::bad_request(
            "invalid_argument",
            "dir must be an absolute path on the appliance",
        ));
    }
    let store = state.store()?.clone();
    let alerts = state.alerts.clone();
    let report = blocking(move || {
        let report = store.backup(&dir)?;
        alerts.backup_to(&dir.join("alerts.redb"))?;
        Ok(report)
    })
    .await?;
    Ok(Json(BackupAnswer {
        dir: body.dir,
        chunks: report.chunks,
        chunk_bytes: report.chunk_bytes,
    }))
}
