//! The `tenants`, `buildings` and `sensors` tables: built from the
//! in-memory catalog when a query scans them, holding only the scope's
//! rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result as DfResult;
use wattline_storage::{Catalog, CatalogView};

use crate::lazy_table::LazyTable;

use crate::scope::Scope;

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// The three catalog tables of `scope`, as lazily built tables.
pub(crate) fn register(
    ctx: &datafusion::prelude::SessionContext,
    catalog: &Arc<Catalog>,
    scope: &Scope,
) -> DfResult<()> {
    type Builder = fn(&CatalogView<'_>, &Scope) -> DfResult<RecordBatch>;
    // The schemas are fixed: the catalog is read when a query scans.
    for (name, schema, build) in [
        ("tenants", tenants_schema(), tenants as Builder),
        ("buildings", buildings_schema(), buildings),
        ("sensors", sensors_schema(), sensors),
    ] {
        let (catalog, scope) = (catalog.clone(), scope.clone());
        ctx.register_table(
            name,
            LazyTable::new(schema, move |_| build(&catalog.view(), &scope)),
        )?;
    }
    Ok(())
}

fn tenants_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ]))
}

fn tenants(view: &CatalogView<'_>, scope: &Scope) -> DfResult<RecordBatch> {
    let rows: Vec<_> = view
        .tenants()
        .filter(|t| scope.sees(t.id.as_str()))
        .collect();
    Ok(RecordBatch::try_new(
        tenants_schema(),
        vec![
            strings(rows.iter().map(|t| t.id.as_str())),
            strings(rows.iter().map(|t| t.name.as_str())),
        ],
    )?)
}

fn buildings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("building_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("floor_area_m2", DataType::Float64, true),
        Field::new("timezone", DataType::Utf8, false),
    ]))
}

fn buildings(view: &CatalogView<'_>, scope: &Scope) -> DfResult<RecordBatch> {
    let rows: Vec<_> = match scope.restricted_to() {
        Some(t) => view.buildings_of(t).collect(),
        None => view
            .tenants()
            .flat_map(|t| view.buildings_of(t.id.as_str()))
            .collect(),
    };
    Ok(RecordBatch::try_new(
        buildings_schema(),
        vec![
            strings(rows.iter().map(|b| b.id.as_str())),
            strings(rows.iter().map(|b| b.tenant_id.as_str())),
            strings(rows.iter().map(|b| b.name.as_str())),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|b| b.floor_area_m2),
            )),
            strings(rows.iter().map(|b| b.timezone.name())),
        ],
    )?)
}

fn sensors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("building_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("is_active", DataType::Boolean, false),
        Field::new("meter_type", DataType::Utf8, false),
    ]))
}

fn sensors(view: &CatalogView<'_>, scope: &Scope) -> DfResult<RecordBatch> {
    let mut rows: Vec<_> = view
        .sensors()
        .filter(|s| scope.sees(s.tenant_id.as_str()))
        .collect();
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    Ok(RecordBatch::try_new(
        sensors_schema(),
        vec![
            strings(rows.iter().map(|s| s.id.as_str())),
            strings(rows.iter().map(|s| s.building_id.as_str())),
            strings(rows.iter().map(|s| s.tenant_id.as_str())),
            strings(rows.iter().map(|s| s.kind.as_str())),
            strings(rows.iter().map(|s| s.unit.as_str())),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|s| Some(s.is_active)),
            )),
            strings(rows.iter().map(|s| s.meter.meter_type.name())),
        ],
    )?)
}
