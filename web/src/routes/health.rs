//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;

pub(super) async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    if state.store()?.fatal().is_some() {
        return Err(wattline_storage::Error::Stopped.into());
    }
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

pub(super) async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if state.config.metrics_require_auth {
        let mut parts = axum::http::Request::new(()).into_parts().0;
        parts.headers = headers;
        let caller =
            <Caller as axum::extract::FromRequestParts<_>>::from_request_parts(&mut parts, &state)
                .await?;
        caller.require_admin()?;
    }
    state.metrics.run_upkeep();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response())
}
