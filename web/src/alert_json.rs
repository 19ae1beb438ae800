//! Alert rules and events as the API, the webhook and the SQL answer
//! them: instants as RFC 3339 in UTC.

use serde::Serialize;
use wattline_storage::{AlertEvent, AlertRule, RuleKind};

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An event object (also the body of a webhook POST).
#[derive(Debug, Serialize)]
pub struct EventOut {
    pub event_id: u64,
    pub rule_id: String,
    pub building_id: String,
    pub tenant_id: String,
    pub kind: &'static str,
    pub window_start: String,
    pub window_end: String,
    pub measured_kwh: f64,
    pub threshold_kwh: f64,
    pub at: String,
    /// Offline rules: the silent meter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
}

impl From<&AlertEvent> for EventOut {
    fn from(e: &AlertEvent) -> Self {
        Self {
            event_id: e.event_id,
            rule_id: e.rule_id.clone(),
            building_id: e.building_id.to_string(),
            tenant_id: e.tenant_id.to_string(),
            kind: e.kind.name(),
            window_start: rfc3339(e.window_start),
            window_end: rfc3339(e.window_end),
            measured_kwh: e.measured_kwh,
            threshold_kwh: e.threshold_kwh,
            at: rfc3339(e.at),
            sensor_id: e.sensor_id.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RuleOut {
    id: String,
    building_id: String,
    tenant_id: String,
    kind: RuleKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold_kwh: Option<f64>,
    window: &'static str,
    emails: Vec<String>,
    webhook_url: Option<String>,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    weeks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent: Option<f64>,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    silent_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sensor_id: Option<String>,
}

impl From<&AlertRule> for RuleOut {
    fn from(r: &AlertRule) -> Self {
        Self {
            id: r.id.clone(),
            building_id: r.building_id.to_string(),
            tenant_id: r.tenant_id.to_string(),
            kind: r.kind,
            threshold_kwh: r.threshold_kwh,
            window: r.window.name(),
            emails: r.emails.clone(),
            webhook_url: r.webhook_url.clone(),
            enabled: r.enabled,
            weeks: r.weeks,
            percent: r.percent,
            silent_for: r.silent_for.clone().map(String::from),
            sensor_id: r.sensor_id.as_ref().map(|s| s.to_string()),
        }
    }
}
