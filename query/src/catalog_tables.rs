//! The `tenants`, `buildings` and `sensors` tables: small in-memory tables
//! built from the catalog for each query, holding only the scope's rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use wattline_storage::CatalogView;

use crate::scope::Scope;

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> DfResult<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

pub(crate) fn tenants(view: &CatalogView<'_>, scope: &Scope) -> DfResult<Arc<MemTable>> {
    let rows: Vec<_> = view
        .tenants()
        .filter(|t| scope.sees(t.id.as_str()))
        .collect();
    table(
        vec![
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
        ],
        vec![
            strings(rows.iter().map(|t| t.id.as_str())),
            strings(rows.iter().map(|t| t.name.as_str())),
        ],
    )
}

pub(crate) fn buildings(view: &CatalogView<'_>, scope: &Scope) -> DfResult<Arc<MemTable>> {
    let rows: Vec<_> = match scope.restricted_to() {
        Some(t) => view.buildings_of(t).collect(),
        None => view
            .tenants()
            .flat_map(|t| view.buildings_of(t.id.as_str()))
            .collect(),
    };
    table(
        vec![
            Field::new("building_id", DataType::Utf8, false),
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("floor_area_m2", DataType::Float64, true),
            Field::new("timezone", DataType::Utf8, false),
        ],
        vec![
            strings(rows.iter().map(|b| b.id.as_str())),
            strings(rows.iter().map(|b| b.tenant_id.as_str())),
            strings(rows.iter().map(|b| b.name.as_str())),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|b| b.floor_area_m2),
            )),
            strings(rows.iter().map(|b| b.timezone.as_str())),
        ],
    )
}

pub(crate) fn sensors(view: &CatalogView<'_>, scope: &Scope) -> DfResult<Arc<MemTable>> {
    let mut rows: Vec<_> = view
        .sensors()
        .filter(|s| scope.sees(s.tenant_id.as_str()))
        .collect();
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    table(
        vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("building_id", DataType::Utf8, false),
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("unit", DataType::Utf8, false),
            Field::new("is_active", DataType::Boolean, false),
        ],
        vec![
            strings(rows.iter().map(|s| s.id.as_str())),
            strings(rows.iter().map(|s| s.building_id.as_str())),
            strings(rows.iter().map(|s| s.tenant_id.as_str())),
            strings(rows.iter().map(|s| s.kind.as_str())),
            strings(rows.iter().map(|s| s.unit.as_str())),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|s| Some(s.is_active)),
            )),
        ],
    )
}
