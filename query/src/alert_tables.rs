//! The `alert_rules` and `alert_events` tables: built from the alert
//! store when a query scans them, holding only the scope's rows (like the
//! catalog tables, no other tenant's row ever reaches a user expression).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::prelude::SessionContext;
use wattline_storage::{AlertStore, RuleKind};

use crate::lazy_table::LazyTable;
use crate::scope::Scope;

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Registers both tables for `scope`.
pub(crate) fn register(
    ctx: &SessionContext,
    alerts: &Arc<AlertStore>,
    scope: &Scope,
) -> DfResult<()> {
    type Builder = fn(&AlertStore, &Scope) -> DfResult<RecordBatch>;
    // The schemas are fixed: no store read until a query scans a table.
    for (name, schema, build) in [
        ("alert_rules", rules_schema(), rules as Builder),
        ("alert_events", events_schema(), events),
    ] {
        let (alerts, scope) = (alerts.clone(), scope.clone());
        ctx.register_table(
            name,
            LazyTable::new(schema, move |_| build(&alerts, &scope)),
        )?;
    }
    Ok(())
}

fn rules_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rule_id", DataType::Utf8, false),
        Field::new("building_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("threshold_kwh", DataType::Float64, true),
        Field::new("window", DataType::Utf8, false),
        Field::new(
            "emails",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        Field::new("webhook_url", DataType::Utf8, true),
        Field::new("enabled", DataType::Boolean, false),
    ]))
}

fn rules(alerts: &AlertStore, scope: &Scope) -> DfResult<RecordBatch> {
    let rows = alerts.rules_where(|t| scope.sees(t));
    let mut emails = ListBuilder::new(StringBuilder::new());
    for r in &rows {
        for e in &r.emails {
            emails.values().append_value(e);
        }
        emails.append(true);
    }
    let kind = |k: RuleKind| match k {
        RuleKind::Threshold => "threshold",
        RuleKind::Baseline => "baseline",
        RuleKind::Offline => "offline",
    };
    let schema = rules_schema();
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.id.as_str())),
        strings(rows.iter().map(|r| r.building_id.as_str())),
        strings(rows.iter().map(|r| r.tenant_id.as_str())),
        strings(rows.iter().map(|r| kind(r.kind))),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.threshold_kwh),
        )),
        strings(rows.iter().map(|r| r.window.name())),
        Arc::new(emails.finish()),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.webhook_url.as_deref()),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.enabled)),
        )),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::UInt64, false),
        Field::new("rule_id", DataType::Utf8, false),
        Field::new("building_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("window_start", utc_ms(), false),
        Field::new("window_end", utc_ms(), false),
        Field::new("measured_kwh", DataType::Float64, false),
        Field::new("threshold_kwh", DataType::Float64, false),
        Field::new("at", utc_ms(), false),
        Field::new("sensor_id", DataType::Utf8, true),
    ]))
}

fn events(alerts: &AlertStore, scope: &Scope) -> DfResult<RecordBatch> {
    let rows = alerts
        .events_where(|t| scope.sees(t))
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let schema = events_schema();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|e| e.event_id),
        )),
        strings(rows.iter().map(|e| e.rule_id.as_str())),
        strings(rows.iter().map(|e| e.building_id.as_str())),
        strings(rows.iter().map(|e| e.tenant_id.as_str())),
        strings(rows.iter().map(|e| e.kind.name())),
        timestamps(rows.iter().map(|e| e.window_start)),
        timestamps(rows.iter().map(|e| e.window_end)),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|e| e.measured_kwh),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|e| e.threshold_kwh),
        )),
        timestamps(rows.iter().map(|e| e.at)),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|e| e.sensor_id.as_deref()),
        )),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
