//! Request extractors whose failures answer in the API's JSON error shape
//! (axum's own answer with plain text).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Reads a whole body, refusing more than `limit` bytes with 413.
pub(crate) async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(
            ApiError::payload_too_large(format!("the body is larger than {limit} bytes")),
        ),
        Err(err) => Err(ApiError::bad_request(
            "unreadable_body",
            format!("could not read the request body: {err}"),
        )),
    }
}

/// Parses `bytes` as JSON into `T`; a syntax error, a wrong type or an
/// unknown field is a 400 naming the problem.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))
}

/// A JSON request body, read (up to `ingest.max_body_bytes`) but not yet
/// parsed: handlers check the caller's rights first, so a caller without
/// them learns nothing from validation errors.
pub(crate) struct JsonBody(Bytes);

impl JsonBody {
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> ApiResult<T> {
        parse_json(&self.0)
    }
}

impl FromRequest<Arc<AppState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> ApiResult<Self> {
        read_body(req.into_body(), state.config.max_body_bytes)
            .await
            .map(JsonBody)
    }
}

/// Query parameters, with a JSON 400 for bad ones.
pub(crate) struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<AppState>> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// Path parameters, with a JSON 400 for bad ones.
pub(crate) struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<AppState>> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Runs blocking storage work (catalog writes, flush, backup) off the
/// async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> wattline_storage::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("storage task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}
