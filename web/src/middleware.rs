//! Layers every request passes through: the whole-request timeout (including
//! reading the body) and per-route latency metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// Routes that run a query, whose own timeout (`query.timeout`, answered
/// 408 by the engine) must be able to fire before the request's.
const QUERY_ROUTES: &[&str] = &["/api/v1/sql", "/api/v1/buildings/{b}/energy"];

/// Work that copies or writes much at once (admin maintenance, a bulk
/// catalog commit): it takes as long as it needs (an hour at most), since
/// cutting the answer short would leave the caller guessing while the
/// work goes on and then commits.
const MAINTENANCE_ROUTES: &[&str] = &[
    "/api/v1/admin/backup",
    "/api/v1/admin/flush",
    "/api/v1/tenants/{t}/bulk",
];

/// Answers 408 when the request (body included) takes longer than
/// `server.request_timeout`; on query routes, not before `query.timeout`
/// plus a second has passed; on maintenance routes, after an hour.
pub(crate) async fn request_timeout(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut limit = state.config.request_timeout;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if route.is_some_and(|p| QUERY_ROUTES.contains(&p))
        && let Ok(engine) = state.engine()
    {
        limit = limit.max(engine.limits().timeout + std::time::Duration::from_secs(1));
    }
    if route.is_some_and(|p| MAINTENANCE_ROUTES.contains(&p)) {
        limit = limit.max(std::time::Duration::from_secs(3600));
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {limit:?} (server.request_timeout)"),
        )
        .into_response(),
    }
}

/// Records `wattline_http_request_duration_seconds{method,route,status}`.
/// Labels never carry a client's string: the route is the matched pattern
/// (`/api/v1/sensors/{s}`) or `unmatched`, the method one of the standard
/// ones or `other`, so label cardinality stays bounded.
pub(crate) async fn record_latency(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let res = next.run(req).await;
    metrics::histogram!(
        "wattline_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => res.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    res
}

/// API answers are one caller's data: no browser or proxy keeps them
/// (a shared computer's cache after sign-out).
pub(crate) async fn no_store_api(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    if api {
        res.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    res
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Per-client-address request limit (`ingest.rate_limit_per_ip`), applied to
/// the ingestion routes before authentication.
pub(crate) async fn limit_per_ip(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    match state.ip_limiter.check(&addr.ip(), 1, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            metrics::counter!("wattline_rate_limited_total", "limit" => "ip").increment(1);
            ApiError::rate_limited(
                format!(
                    "more than {} requests per second from {} (ingest.rate_limit_per_ip)",
                    state.config.rate_limit_per_ip,
                    addr.ip()
                ),
                wait.as_secs_f64().ceil() as u64,
            )
            .into_response()
        }
    }
}
