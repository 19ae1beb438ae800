//! The route table. One module per endpoint family.

mod admin;
mod alerts;
mod buildings;
mod bulk;
mod dashboard;
mod energy;
mod health;
mod keys;
mod overview;
mod readings;
mod reports;
mod sensors;
mod sql;
mod tariffs;
mod tenants;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

use crate::AppState;
use crate::error::ApiError;
use crate::middleware::{limit_per_ip, no_store_api, record_latency, request_timeout};

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let ip_limit = from_fn_with_state(state.clone(), limit_per_ip);
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/favicon.ico", get(dashboard::no_icon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/keys", post(keys::create).get(keys::list))
        .route("/api/v1/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/api/v1/me", get(overview::me))
        .route("/api/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/api/v1/tenants/{t}/overview", get(overview::overview))
        .route("/api/v1/tenants/{t}/bulk", post(bulk::create))
        .route(
            "/api/v1/tenants/{t}/tariffs",
            post(tariffs::create).get(tariffs::list),
        )
        .route(
            "/api/v1/tenants/{t}/tariffs/{id}",
            axum::routing::delete(tariffs::delete),
        )
        .route(
            "/api/v1/tenants/{t}/buildings",
            post(buildings::create).get(buildings::list),
        )
        .route(
            "/api/v1/buildings/{b}",
            get(buildings::show)
                .patch(buildings::update)
                .delete(buildings::delete),
        )
        .route("/api/v1/buildings/{b}/energy", get(energy::energy))
        .route(
            "/api/v1/buildings/{b}/alerts",
            post(alerts::create).get(alerts::list),
        )
        .route("/api/v1/buildings/{b}/alert-events", get(alerts::events))
        .route(
            "/api/v1/alerts/{id}",
            get(alerts::show)
                .patch(alerts::update)
                .delete(alerts::delete),
        )
        .route(
            "/api/v1/buildings/{b}/sensors",
            post(sensors::create).get(sensors::list),
        )
        .route(
            "/api/v1/sensors/{s}",
            get(sensors::show).patch(sensors::update),
        )
        .route("/api/v1/sensors/{s}/readings", get(readings::list))
        .route(
            "/api/v1/readings",
            post(readings::ingest).route_layer(ip_limit.clone()),
        )
        .route("/api/v1/write", post(write::ingest).route_layer(ip_limit))
        .route("/api/v1/reports", post(reports::create))
        .route("/api/v1/reports/{id}", get(reports::show))
        .route("/api/v1/reports/{id}/result", get(reports::result))
        .route("/api/v1/sql", post(sql::query))
        .route("/api/v1/admin/flush", post(admin::flush))
        .route("/api/v1/admin/backup", post(admin::backup))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn(no_store_api))
        .layer(from_fn(record_latency))
        .layer(from_fn_with_state(state.clone(), request_timeout))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
