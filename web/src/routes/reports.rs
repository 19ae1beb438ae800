//! Reports (`/api/v1/reports`): a request answers 202 with a job at once;
//! the daemon's report workers render it; the result is fetched when
//! done. Another tenant's building or report answers 404 like a missing
//! one.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use wattline_storage::{Building, JobStatus, ReportFormat, ReportJob, ReportRequest, format_local};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, PathParams, blocking};

use super::energy::parse_bound;

/// The longest period one report covers (five years of rollups).
const MAX_PERIOD_DAYS: i64 = 5 * 366;
const MAX_FORECAST_DAYS: u32 = 90;
const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateReport {
    building_id: String,
    start: String,
    end: String,
    format: String,
    forecast_days: Option<u32>,
}

#[derive(Serialize)]
pub(super) struct JobOut {
    id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_url: Option<String>,
    building_id: String,
    format: ReportFormat,
    start: String,
    end: String,
    forecast_days: u32,
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished: Option<String>,
}

fn local_date(tz: chrono_tz::Tz, ms: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

fn utc(ms: i64) -> String {
    format_local(chrono_tz::UTC, ms)
}

impl From<&ReportJob> for JobOut {
    fn from(j: &ReportJob) -> Self {
        Self {
            id: j.id.clone(),
            status: j.status.name(),
            error: j.error.clone(),
            result_url: (j.status == JobStatus::Done)
                .then(|| format!("/api/v1/reports/{}/result", j.id)),
            building_id: j.request.building_id.to_string(),
            format: j.request.format,
            start: utc(j.request.start_ms),
            end: utc(j.request.end_ms),
            forecast_days: j.request.forecast_days,
            created: utc(j.created_ms),
            started: j.started_ms.map(utc),
            finished: j.finished_ms.map(utc),
        }
    }
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<JobOut>)> {
    caller.require_manager()?;
    let body: CreateReport = body.parse()?;
    let b = caller.visible_building(
        state.catalog.view().building(&body.building_id),
        &body.building_id,
    )?;
    let request = validated(body, b)?;
    let reports = state.reports.clone();
    let ttl = i64::try_from(state.config.reports_cache_ttl.as_millis()).unwrap_or(i64::MAX);
    let (job, _) =
        blocking(move || reports.submit(request, wattline_storage::now_ms(), ttl)).await?;
    Ok((StatusCode::ACCEPTED, Json(JobOut::from(&job))))
}

/// The request as the job store takes it, or what is wrong with it.
fn validated(body: CreateReport, b: Building) -> ApiResult<ReportRequest> {
    let tz = b.timezone.tz();
    let start = within_years("start", parse_bound("start", &body.start, tz)?)?;
    let end = within_years("end", parse_bound("end", &body.end, tz)?)?;
    if start >= end {
        return Err(ApiError::bad_request(
            "invalid_argument",
            "start must be before end",
        ));
    }
    if end - start > MAX_PERIOD_DAYS * DAY_MS {
        return Err(ApiError::bad_request(
            "invalid_argument",
            format!("a report covers at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    let mut first = local_date(tz, start);
    if wattline_storage::day_start(tz, first) < start {
        first += chrono::Duration::days(1);
    }
    if wattline_storage::day_start(tz, first + chrono::Duration::days(1)) > end {
        return Err(ApiError::bad_request(
            "invalid_argument",
            "the period holds no whole local day of the building; a report covers local days",
        ));
    }
    let format = ReportFormat::parse(&body.format).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_argument",
            format!(
                "format {:?} is not one of \"pdf\", \"csv\", \"json\"",
                body.format
            ),
        )
    })?;
    let forecast_days = body.forecast_days.unwrap_or(7);
    if forecast_days > MAX_FORECAST_DAYS {
        return Err(ApiError::bad_request(
            "invalid_argument",
            format!("forecast_days is at most {MAX_FORECAST_DAYS}"),
        ));
    }
    Ok(ReportRequest {
        tenant_id: b.tenant_id,
        building_id: b.id,
        start_ms: start,
        end_ms: end,
        format,
        forecast_days,
    })
}

/// Years a report's bounds may lie in (what the calendar arithmetic of a
/// report handles; anything else is a mistake).
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

fn within_years(name: &str, ms: i64) -> ApiResult<i64> {
    let year = chrono::DateTime::from_timestamp_millis(ms).map(|t| chrono::Datelike::year(&t));
    match year {
        Some(y) if YEARS.contains(&y) => Ok(ms),
        _ => Err(ApiError::bad_request(
            "invalid_argument",
            format!(
                "{name} must lie in the years {} to {}",
                YEARS.start(),
                YEARS.end()
            ),
        )),
    }
}

/// The job if the caller manages its tenant; 404 otherwise.
fn visible_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ReportJob> {
    caller.require_manager()?;
    state
        .reports
        .job(id)
        .filter(|j| caller.sees_tenant(j.request.tenant_id.as_str()))
        .ok_or_else(|| ApiError::not_found("report", id))
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<JobOut>> {
    Ok(Json(JobOut::from(&visible_job(&state, &caller, &id)?)))
}

pub(super) async fn result(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Response> {
    let job = visible_job(&state, &caller, &id)?;
    if job.status != JobStatus::Done {
        let message = match &job.error {
            Some(e) => format!("report {id} failed: {e}"),
            None => format!("report {id} is {}; fetch it once done", job.status.name()),
        };
        return Err(
            ApiError::new(StatusCode::CONFLICT, "report_not_ready", message)
                .with_details(serde_json::json!({ "status": job.status.name() })),
        );
    }
    let reports = state.reports.clone();
    let format = job.request.format;
    let name = format!(
        "wattline-{}-{}.{}",
        job.request.building_id,
        job.id,
        format.extension()
    );
    let bytes = blocking(move || reports.result(&job)).await?;
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from(bytes))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}
