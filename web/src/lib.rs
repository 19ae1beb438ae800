//! wattline's HTTP API.
//!
//! The daemon hands this crate ready-built handles (catalog, reading store)
//! and settings; the crate answers HTTP with them. It opens no files:
//! everything durable goes through `wattline-storage`.
//!
//! - `server`: the accept loop (connection limits, header and idle
//!   timeouts, graceful shutdown).
//! - `routes`: one module per endpoint family; handlers parse, authorise,
//!   call one function and map its result.
//! - `ingest`: the four body formats, reading validation and the
//!   ingestion pipeline (limits, rate limit, durable append).
//! - `auth`: keys, roles and tenant scoping.
//! - `error`: the JSON error shape and the single error-to-status mapping.
//! - `middleware`: request timeout, per-route metrics, per-address limit.
//! - `alert_json`: rules and events as the API and webhooks show them.
//! - `sql_output`: query answers as JSON, CSV, Arrow IPC or Parquet.

mod alert_json;
mod auth;
mod error;
mod extract;
mod ingest;
mod middleware;
mod rate_limit;
mod routes;
mod server;
mod sql_output;

pub use alert_json::EventOut;
pub use ingest::{RawReading, check_readings};
pub use server::serve;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use wattline_query::QueryEngine;
use wattline_storage::{AlertStore, Catalog, KeyId, ReadingStore, ReportStore};

use crate::error::{ApiError, ApiResult};
use crate::rate_limit::RateLimiter;

/// Settings the HTTP layer enforces (validated by the daemon's config).
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub request_timeout: Duration,
    /// `query.timeout`: query routes wait for it (see the request timeout).
    pub query_timeout: Duration,
    /// Connections open at once (`server.max_connections`).
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub max_batch_readings: usize,
    pub max_future: Duration,
    pub rate_limit_per_key: u64,
    pub rate_limit_per_ip: u64,
    pub retention_raw: Duration,
    pub query_max_rows: usize,
    pub metrics_require_auth: bool,
    /// `reports.cache_ttl`: identical report requests share a job.
    pub reports_cache_ttl: Duration,
}

/// What exists once recovery is done.
struct Ready {
    store: Arc<ReadingStore>,
    engine: Arc<QueryEngine>,
}

/// Everything a request handler can reach.
pub struct AppState {
    pub catalog: Arc<Catalog>,
    pub alerts: Arc<AlertStore>,
    pub reports: Arc<ReportStore>,
    /// Set once recovery has replayed the write-ahead; until then `/readyz`
    /// answers 503 and so does every route that needs readings.
    ready: OnceLock<Ready>,
    pub config: WebConfig,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) key_limiter: RateLimiter<KeyId>,
    pub(crate) ip_limiter: RateLimiter<IpAddr>,
}

impl AppState {
    pub fn new(
        catalog: Arc<Catalog>,
        alerts: Arc<AlertStore>,
        reports: Arc<ReportStore>,
        config: WebConfig,
        metrics: PrometheusHandle,
    ) -> Self {
        Self {
            catalog,
            alerts,
            reports,
            ready: OnceLock::new(),
            key_limiter: RateLimiter::new(config.rate_limit_per_key),
            ip_limiter: RateLimiter::new(config.rate_limit_per_ip),
            config,
            metrics,
        }
    }

    /// Makes the recovered store available: the appliance is ready.
    pub fn set_ready(&self, store: Arc<ReadingStore>, engine: Arc<QueryEngine>) {
        let _ = self.ready.set(Ready { store, engine });
    }

    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some()
    }

    /// The reading store, or 503 while recovery is still running.
    pub fn store(&self) -> ApiResult<&Arc<ReadingStore>> {
        self.ready().map(|r| &r.store)
    }

    /// The query engine, or 503 while recovery is still running.
    pub fn engine(&self) -> ApiResult<&Arc<QueryEngine>> {
        self.ready().map(|r| &r.engine)
    }

    fn ready(&self) -> ApiResult<&Ready> {
        self.ready.get().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "recovering the write-ahead; retry shortly",
            )
        })
    }
}
