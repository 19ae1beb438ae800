//! The API's error answer, and the one place where errors become statuses.
//!
//! Every error the application sends is `{"error":{"code","message"}}` with
//! `details` where the contract says so.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The answer for objects that do not exist *and* for objects of another
    /// tenant: a tenant must not learn which of the two it was.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} {id:?} not found"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    pub fn with_details(mut self, details: impl Serialize) -> Self {
        self.details = serde_json::to_value(details).ok();
        self
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        })
        .unwrap_or_default();
        let mut res = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<wattline_storage::Error> for ApiError {
    fn from(err: wattline_storage::Error) -> Self {
        use wattline_storage::Error as E;
        let message = err.to_string();
        match err {
            E::AlreadyExists { .. } => Self::new(StatusCode::CONFLICT, "already_exists", message),
            E::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::BuildingHasSensors(_) => {
                Self::new(StatusCode::CONFLICT, "building_has_sensors", message)
            }
            E::InvalidTimezone(_) => Self::bad_request("invalid_timezone", message),
            E::InvalidArgument(_) => Self::bad_request("invalid_argument", message),
            E::StorageFull => Self::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", message),
            E::WalClosed => Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
            E::Overloaded(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message),
            E::TooMuchPending(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_pending", message)
            }
            E::Stopped => Self::new(StatusCode::SERVICE_UNAVAILABLE, "stopped", message),
            E::ChunkUnreadable { .. } | E::ChunkMissing { .. } | E::Io { .. } => {
                Self::unavailable(&message)
            }
            _ => Self::internal(&message),
        }
    }
}

impl ApiError {
    /// 500 without detail: the detail (paths, ids) goes to the log only.
    fn internal(detail: &str) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the daemon's log has the details",
        )
    }

    /// 503 for stored data that could not be read, detail logged only.
    fn unavailable(detail: &str) -> Self {
        tracing::error!(error = %detail, "reading stored data failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "stored data could not be read; the daemon's log has the details, retry later",
        )
    }
}

impl From<wattline_query::QueryError> for ApiError {
    fn from(err: wattline_query::QueryError) -> Self {
        use wattline_query::QueryError as Q;
        let message = err.to_string();
        let position = err.position();
        match err {
            Q::InvalidSql(_) => Self {
                details: position.map(|p| json!({"line": p.line, "column": p.column})),
                ..Self::bad_request("invalid_sql", message)
            },
            Q::NotReadOnly(_) => Self::bad_request("read_only", message),
            Q::TooComplex(_) => Self::bad_request("query_too_complex", message),
            Q::Timeout(_) => Self::new(StatusCode::REQUEST_TIMEOUT, "query_timeout", message),
            Q::MemoryLimit(_) => Self::bad_request("memory_limit", message),
            Q::Execution(_) => Self::bad_request("query_failed", message),
            Q::Storage(e) => Self::from(e),
            Q::ReadFailed(_) => Self::unavailable(&message),
            _ => Self::internal(&message),
        }
    }
}

impl From<wattline_storage::IdError> for ApiError {
    fn from(err: wattline_storage::IdError) -> Self {
        Self::bad_request("invalid_id", err.to_string())
    }
}
