//! `POST /api/v1/tenants/{t}/bulk`: a tenant's buildings and sensors in
//! one request and one commit, all or none. Provisioning a site of
//! thousands of meters one request at a time costs a commit (an fsync)
//! each; this costs one.
//!
//! Bodies: JSON `{"buildings": [...], "sensors": [...]}` with the fields of
//! the single-object routes, or CSV with a header: `building_id,name` and
//! optionally `floor_area_m2`, `timezone` (buildings), or
//! `sensor_id,building_id` and optionally `kind`, `unit`, `is_active`
//! (sensors). Other CSV columns are ignored, except a `tenant_id` that
//! names another tenant, which is refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use wattline_storage::{BuildingId, MeterType, NewSensor, SensorId, TenantId};

use super::buildings::CreateBuilding;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParams, QueryParams, blocking, parse_json, read_body};

/// Largest body: 200,000 sensors of CSV, or about 150,000 of JSON, fit.
const MAX_BODY: usize = 16 << 20;
/// Most objects in one request.
const MAX_OBJECTS: usize = 200_000;

/// One bulk request parses and commits at a time: a large body costs
/// memory and a catalog commit holds the catalog's lock; others wait.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Bulk {
    #[serde(default)]
    buildings: Vec<CreateBuilding>,
    #[serde(default)]
    sensors: Vec<BulkSensor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkSensor {
    id: SensorId,
    building_id: BuildingId,
    kind: Option<String>,
    unit: Option<String>,
    is_active: Option<bool>,
    meter_type: Option<MeterType>,
    register_max: Option<f64>,
    max_gap_s: Option<i64>,
    max_kw: Option<f64>,
    interval_s: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkParams {
    #[serde(default)]
    existing: Existing,
}

/// What an id the tenant already has means: a conflict (409, nothing
/// stored), or something to leave as it is (loading an export again).
#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Existing {
    #[default]
    Conflict,
    Skip,
}

#[derive(Serialize)]
pub(super) struct Created {
    buildings: usize,
    sensors: usize,
}

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(tenant): PathParams<String>,
    QueryParams(params): QueryParams<BulkParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Created>)> {
    // Rights first: a caller without them learns nothing from the body.
    caller.check_tenant(&tenant)?;
    let _turn = ONE_AT_A_TIME
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopped", "shutting down"))?;
    let bytes = read_body(body, MAX_BODY).await?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/csv"));
    let path_tenant = tenant.clone();
    let bulk = tokio::task::spawn_blocking(move || {
        if csv {
            parse_csv(&bytes, &path_tenant)
        } else {
            parse_json::<Bulk>(&bytes)
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let count = bulk.buildings.len() + bulk.sensors.len();
    if count == 0 {
        return Err(ApiError::bad_request(
            "invalid_argument",
            "no buildings or sensors in the body",
        ));
    }
    if count > MAX_OBJECTS {
        return Err(ApiError::payload_too_large(format!(
            "{count} objects in one request; at most {MAX_OBJECTS}"
        )));
    }
    let tenant_id = TenantId::parse(&tenant)?;
    let buildings = bulk
        .buildings
        .into_iter()
        .map(|b| b.into_new(tenant_id.clone()))
        .collect();
    let sensors = bulk
        .sensors
        .into_iter()
        .map(|s| NewSensor {
            id: s.id,
            building_id: s.building_id,
            kind: s.kind,
            unit: s.unit,
            is_active: s.is_active,
            meter: super::sensors::meter_of(
                s.meter_type,
                s.register_max,
                s.max_gap_s,
                s.max_kw,
                s.interval_s,
            ),
        })
        .collect();
    let catalog = state.catalog.clone();
    let skip = params.existing == Existing::Skip;
    let (b, s) =
        blocking(move || catalog.create_many(&tenant_id, buildings, sensors, skip)).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            buildings: b.len(),
            sensors: s.len(),
        }),
    ))
}

/// Buildings or sensors from CSV, told apart by the header.
fn parse_csv(bytes: &[u8], tenant: &str) -> ApiResult<Bulk> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut header: HashMap<String, usize> = HashMap::new();
    for (i, h) in reader
        .headers()
        .map_err(|e| bad(1, e.to_string()))?
        .iter()
        .enumerate()
    {
        if header.insert(h.to_owned(), i).is_some() {
            return Err(bad(1, format!("the header names {h} twice")));
        }
    }
    let is_sensors = header.contains_key("sensor_id");
    let required: &[&str] = if is_sensors {
        &["sensor_id", "building_id"]
    } else {
        &["building_id", "name"]
    };
    if let Some(missing) = required.iter().find(|c| !header.contains_key(**c)) {
        return Err(bad(
            1,
            format!(
                "the header has no {missing} column (buildings: building_id,name[,floor_area_m2][,timezone]; sensors: sensor_id,building_id[,kind][,unit][,is_active][,meter_type][,register_max][,max_gap_s][,max_kw][,interval_s])"
            ),
        ));
    }
    let mut bulk = Bulk::default();
    let mut lines = LineCounter {
        bytes,
        counted_to: 0,
        newlines: 0,
    };
    for record in reader.records() {
        let record = record.map_err(|e| bad(lines.at(e.position()), e.to_string()))?;
        let line = lines.at(record.position());
        if bulk.buildings.len() + bulk.sensors.len() >= MAX_OBJECTS {
            return Err(ApiError::payload_too_large(format!(
                "more than {MAX_OBJECTS} objects in one request"
            )));
        }
        let field = |name: &str| {
            header
                .get(name)
                .and_then(|i| record.get(*i))
                .filter(|v| !v.is_empty())
        };
        if let Some(t) = field("tenant_id")
            && t != tenant
        {
            return Err(bad(line, format!("tenant_id {t:?} is not {tenant:?}")));
        }
        let id = |name: &str| field(name).unwrap_or_default().to_owned();
        if is_sensors {
            bulk.sensors.push(BulkSensor {
                id: SensorId::parse(&id("sensor_id")).map_err(|e| bad(line, e.to_string()))?,
                building_id: BuildingId::parse(&id("building_id"))
                    .map_err(|e| bad(line, e.to_string()))?,
                kind: field("kind").map(str::to_owned),
                unit: field("unit").map(str::to_owned),
                is_active: field("is_active")
                    .map(|v| {
                        flag(v).ok_or_else(|| {
                            bad(line, format!("is_active {v:?} is not true or false"))
                        })
                    })
                    .transpose()?,
                meter_type: field("meter_type")
                    .map(|v| {
                        serde_json::from_value(serde_json::Value::String(v.to_owned())).map_err(
                            |_| {
                                bad(
                                    line,
                                    format!(
                                        "meter_type {v:?} is not interval, cumulative or power"
                                    ),
                                )
                            },
                        )
                    })
                    .transpose()?,
                register_max: number(field("register_max"), "register_max", line)?,
                max_gap_s: number(field("max_gap_s"), "max_gap_s", line)?,
                max_kw: number(field("max_kw"), "max_kw", line)?,
                interval_s: number(field("interval_s"), "interval_s", line)?,
            });
        } else {
            bulk.buildings.push(CreateBuilding {
                id: BuildingId::parse(&id("building_id")).map_err(|e| bad(line, e.to_string()))?,
                name: id("name"),
                floor_area_m2: number(field("floor_area_m2"), "floor_area_m2", line)?,
                timezone: field("timezone").map(str::to_owned),
            });
        }
    }
    Ok(bulk)
}

fn bad(line: u64, msg: String) -> ApiError {
    ApiError::bad_request("invalid_csv", format!("line {line}: {msg}"))
}

/// The number in a CSV field, if there is one.
fn number<T: std::str::FromStr>(v: Option<&str>, name: &str, line: u64) -> ApiResult<Option<T>> {
    v.map(|v| {
        v.parse()
            .map_err(|_| bad(line, format!("{name} {v:?} is not a number")))
    })
    .transpose()
}

/// A spreadsheet's yes or no: true/false, 1/0, yes/no, any case.
fn flag(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Line numbers of records from their byte offsets, counted once through
/// the body (the reader's own line count skips blank lines).
struct LineCounter<'a> {
    bytes: &'a [u8],
    counted_to: usize,
    newlines: u64,
}

impl LineCounter<'_> {
    fn at(&mut self, position: Option<&csv::Position>) -> u64 {
        let Some(p) = position else {
            return 0;
        };
        let mut at = usize::try_from(p.byte())
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        // A record's position is where the reader began: before the blank
        // lines it skipped.
        while at < self.bytes.len() && matches!(self.bytes[at], b'\n' | b'\r') {
            at += 1;
        }
        if at > self.counted_to {
            let seen = &self.bytes[self.counted_to..at];
            self.newlines += seen.iter().filter(|b| **b == b'\n').count() as u64;
            self.counted_to = at;
        }
        self.newlines + 1
    }
}
