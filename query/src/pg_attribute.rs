//! `pg_catalog.pg_attribute`, `pg_catalog.pg_type` and
//! `information_schema.columns`: the columns of wattline's tables and
//! their types as PostgreSQL describes them, which drivers and tools read
//! to list a table's columns (JDBC's `getColumns`, and with it DBeaver's
//! table views; Grafana's query builder, which offers time and number
//! columns by their type names). Like the rest of `pg_catalog`, they
//! describe table shapes only, the same for every tenant. `pg_attrdef`
//! (no column has a default) is empty.
//!
//! The engine's own `information_schema.columns` names Arrow types
//! (`Float64`); PostgreSQL sessions read this one instead, named
//! `pg_catalog.information_schema_columns` (see [`crate::pg_rewrite`]).

use std::sync::{Arc, Weak};

use arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::guard::TABLES;

/// The types columns are sent as (see the front end's encoding): oid,
/// name, length (-1: variable), SQL name (`information_schema`'s
/// `data_type`).
const TYPES: [(i64, &str, i64, &str); 11] = [
    (16, "bool", 1, "boolean"),
    (17, "bytea", -1, "bytea"),
    (20, "int8", 8, "bigint"),
    (21, "int2", 2, "smallint"),
    (23, "int4", 4, "integer"),
    (25, "text", -1, "text"),
    (700, "float4", 4, "real"),
    (701, "float8", 8, "double precision"),
    (1082, "date", 4, "date"),
    (1114, "timestamp", 8, "timestamp without time zone"),
    (1184, "timestamptz", 8, "timestamp with time zone"),
];

/// The PostgreSQL type a column of `ty` is sent as (the front end's
/// encoding; its tests check the two agree).
pub fn type_oid(ty: &DataType) -> i64 {
    match ty {
        DataType::Boolean => 16,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => 17,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => 20,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        _ => 25,
    }
}

/// `pg_type`: the types above, in `pg_catalog`.
pub(crate) fn pg_type() -> Vec<(&'static str, ArrayRef)> {
    let n = TYPES.len();
    let int = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    vec![
        ("oid", int(TYPES.iter().map(|t| t.0).collect())),
        (
            "typname",
            Arc::new(StringArray::from_iter_values(TYPES.iter().map(|t| t.1))),
        ),
        (
            "typnamespace",
            int(vec![super::pg_catalog::PG_CATALOG_OID; n]),
        ),
        ("typlen", int(TYPES.iter().map(|t| t.2).collect())),
        ("typtype", Arc::new(StringArray::from(vec!["b"; n]))),
        ("typnotnull", Arc::new(BooleanArray::from(vec![false; n]))),
        ("typtypmod", int(vec![-1; n])),
        ("typbasetype", int(vec![0; n])),
        ("typelem", int(vec![0; n])),
        ("typrelid", int(vec![0; n])),
    ]
}

/// Which view of the columns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ColumnsOf {
    /// `pg_catalog.pg_attribute`.
    PgAttribute,
    /// `information_schema.columns`.
    InformationSchema,
}

/// A view of the session's tables' columns, built when scanned from
/// their schemas.
pub(crate) struct ColumnsView {
    /// Weak: the catalog holds this table (a strong reference would keep
    /// the session's tables, and the data snapshots they hold, forever).
    catalog: Weak<dyn CatalogProvider>,
    of: ColumnsOf,
    schema: SchemaRef,
}

/// One column of one of wattline's tables.
struct Column {
    table: usize,
    name: String,
    position: i64,
    type_oid: i64,
    nullable: bool,
    /// Fractional digits of seconds, for times.
    datetime_precision: Option<i32>,
}

impl Column {
    /// `numeric_precision`, `numeric_precision_radix`, `numeric_scale` as
    /// PostgreSQL gives them for its number types (bits of binary types).
    fn numeric(&self) -> (Option<i32>, Option<i32>, Option<i32>) {
        match self.type_oid {
            20 => (Some(64), Some(2), Some(0)),
            21 => (Some(16), Some(2), Some(0)),
            23 => (Some(32), Some(2), Some(0)),
            700 => (Some(24), Some(2), None),
            701 => (Some(53), Some(2), None),
            _ => (None, None, None),
        }
    }

    fn pg_type(&self) -> (i64, &'static str, i64, &'static str) {
        TYPES
            .iter()
            .find(|t| t.0 == self.type_oid)
            .copied()
            .unwrap_or(TYPES[5])
    }
}

impl ColumnsView {
    pub(crate) fn new(catalog: &Arc<dyn CatalogProvider>, of: ColumnsOf) -> Arc<Self> {
        let int = |n: &str| Field::new(n, DataType::Int64, false);
        let text = |n: &str| Field::new(n, DataType::Utf8, false);
        let flag = |n: &str| Field::new(n, DataType::Boolean, false);
        let fields = match of {
            ColumnsOf::PgAttribute => vec![
                int("attrelid"),
                text("attname"),
                int("atttypid"),
                int("attlen"),
                int("attnum"),
                int("atttypmod"),
                flag("attnotnull"),
                flag("attisdropped"),
                flag("atthasdef"),
                text("attidentity"),
                text("attgenerated"),
            ],
            ColumnsOf::InformationSchema => {
                let maybe = |n: &str, t: DataType| Field::new(n, t, true);
                vec![
                    text("table_catalog"),
                    text("table_schema"),
                    text("table_name"),
                    text("column_name"),
                    Field::new("ordinal_position", DataType::Int32, false),
                    maybe("column_default", DataType::Utf8),
                    text("is_nullable"),
                    text("data_type"),
                    maybe("character_maximum_length", DataType::Int32),
                    maybe("character_octet_length", DataType::Int32),
                    maybe("numeric_precision", DataType::Int32),
                    maybe("numeric_precision_radix", DataType::Int32),
                    maybe("numeric_scale", DataType::Int32),
                    maybe("datetime_precision", DataType::Int32),
                    maybe("interval_type", DataType::Utf8),
                    text("udt_catalog"),
                    text("udt_schema"),
                    text("udt_name"),
                    text("is_updatable"),
                ]
            }
        };
        Arc::new(Self {
            catalog: Arc::downgrade(catalog),
            of,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The columns of wattline's tables in this session, in table order.
    async fn columns(&self) -> DfResult<Vec<Column>> {
        let mut columns = Vec::new();
        let public = self.catalog.upgrade().and_then(|c| c.schema("public"));
        let Some(public) = public else {
            return Ok(columns);
        };
        for (table, name) in TABLES.iter().enumerate() {
            let Some(provider) = public.table(name).await? else {
                continue;
            };
            for (n, field) in provider.schema().fields().iter().enumerate() {
                columns.push(Column {
                    table,
                    name: field.name().clone(),
                    position: n as i64 + 1,
                    type_oid: type_oid(field.data_type()),
                    nullable: field.is_nullable(),
                    datetime_precision: match field.data_type() {
                        DataType::Timestamp(unit, _) => Some(match unit {
                            TimeUnit::Second => 0,
                            TimeUnit::Millisecond => 3,
                            TimeUnit::Microsecond => 6,
                            TimeUnit::Nanosecond => 9,
                        }),
                        DataType::Date32 | DataType::Date64 => Some(0),
                        _ => None,
                    },
                });
            }
        }
        Ok(columns)
    }

    async fn rows(&self) -> DfResult<RecordBatch> {
        let columns = self.columns().await?;
        let n = columns.len();
        let int = |f: &dyn Fn(&Column) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(columns.iter().map(f)))
        };
        let text = |f: &dyn Fn(&Column) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(columns.iter().map(f)))
        };
        let flag = |f: &dyn Fn(&Column) -> bool| -> ArrayRef {
            Arc::new(BooleanArray::from_iter(columns.iter().map(|c| Some(f(c)))))
        };
        let arrays: Vec<ArrayRef> = match self.of {
            ColumnsOf::PgAttribute => vec![
                int(&|c| super::pg_catalog::table_oid(c.table)),
                text(&|c| &c.name),
                int(&|c| c.type_oid),
                int(&|c| c.pg_type().2),
                int(&|c| c.position),
                int(&|_| -1),
                flag(&|c| !c.nullable),
                flag(&|_| false),
                flag(&|_| false),
                text(&|_| ""),
                text(&|_| ""),
            ],
            ColumnsOf::InformationSchema => {
                let int4 = |f: &dyn Fn(&Column) -> Option<i32>| -> ArrayRef {
                    Arc::new(Int32Array::from_iter(columns.iter().map(f)))
                };
                vec![
                    text(&|_| crate::postgres::DATABASE),
                    text(&|_| "public"),
                    text(&|c| TABLES[c.table]),
                    text(&|c| &c.name),
                    int4(&|c| Some(c.position as i32)),
                    Arc::new(StringArray::new_null(n)),
                    text(&|c| if c.nullable { "YES" } else { "NO" }),
                    text(&|c| c.pg_type().3),
                    int4(&|_| None),
                    // Text without a length limit: PostgreSQL's 1 GB.
                    int4(&|c| (c.type_oid == 25).then_some(1 << 30)),
                    int4(&|c| c.numeric().0),
                    int4(&|c| c.numeric().1),
                    int4(&|c| c.numeric().2),
                    int4(&|c| c.datetime_precision),
                    Arc::new(StringArray::new_null(n)),
                    text(&|_| crate::postgres::DATABASE),
                    text(&|_| "pg_catalog"),
                    text(&|c| c.pg_type().1),
                    text(&|_| "NO"),
                ]
            }
        };
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

impl std::fmt::Debug for ColumnsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnsView")
            .field("of", &self.of)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for ColumnsView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.rows().await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};

    #[test]
    fn the_table_does_not_keep_its_catalog_alive() -> DfResult<()> {
        let catalog: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        catalog.register_schema("pg_catalog", schema.clone())?;
        schema.register_table(
            "pg_attribute".into(),
            ColumnsView::new(&catalog, ColumnsOf::PgAttribute),
        )?;
        let weak = Arc::downgrade(&catalog);
        drop((catalog, schema));
        assert!(weak.upgrade().is_none());
        Ok(())
    }
}
