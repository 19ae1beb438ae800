//! The few `pg_catalog` tables and functions PostgreSQL tools read to list
//! tables (psql's `\dt`, drivers' metadata calls), for PostgreSQL sessions.
//!
//! They describe wattline's tables only, the same list for every tenant
//! (no rows, no ids): `pg_namespace`, `pg_class`, `pg_am`, `pg_database`,
//! `pg_attribute` and `pg_type` (see [`crate::pg_attribute`]), an empty
//! `pg_description`, `pg_attrdef` and `pg_extension` (no TimescaleDB, for
//! Grafana), `pg_get_expr`, plus `pg_catalog.pg_table_is_visible(oid)` and
//! `pg_catalog.pg_get_userbyid(oid)`. Column details are in
//! `information_schema.columns`. The casts to object id types drivers
//! write are rewritten before planning ([`crate::pg_rewrite`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::error::{QueryError, Result};
use crate::guard::TABLES;
use crate::pg_attribute::{ColumnsOf, ColumnsView};
use crate::postgres::DATABASE;

/// PostgreSQL's own oids for its schemas; wattline's tables count from
/// the first oid PostgreSQL gives user objects.
pub(crate) const PG_CATALOG_OID: i64 = 11;
const PUBLIC_OID: i64 = 2200;
const INFORMATION_SCHEMA_OID: i64 = 13_000;
const FIRST_TABLE_OID: i64 = 16_384;
const OWNER_OID: i64 = 10;
const HEAP_AM_OID: i64 = 2;

/// The `pg_catalog` tables registered here, which PostgreSQL finds without
/// their schema's name.
pub(crate) const PG_TABLES: [&str; 9] = [
    "pg_namespace",
    "pg_class",
    "pg_am",
    "pg_type",
    "pg_attrdef",
    "pg_description",
    "pg_extension",
    "pg_database",
    "pg_attribute",
];

/// The oid of wattline's table number `i` (in [`TABLES`]).
pub(crate) fn table_oid(i: usize) -> i64 {
    FIRST_TABLE_OID + i as i64
}

pub(crate) fn register(ctx: &SessionContext) -> Result<()> {
    let catalog = ctx
        .catalog(DATABASE)
        .ok_or_else(|| QueryError::Internal("the session has no wattline catalog".into()))?;
    catalog.register_schema("pg_catalog", Arc::new(MemorySchemaProvider::new()))?;
    let ids = |n: usize, first: i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            (0..n as i64).map(|i| first + i),
        ))
    };
    let text = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let int = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    let n = TABLES.len();
    let tables: [(&str, Vec<(&str, ArrayRef)>); 8] = [
        (
            "pg_namespace",
            vec![
                (
                    "oid",
                    int(vec![PG_CATALOG_OID, PUBLIC_OID, INFORMATION_SCHEMA_OID]),
                ),
                (
                    "nspname",
                    text(vec!["pg_catalog", "public", "information_schema"]),
                ),
                ("nspowner", int(vec![OWNER_OID; 3])),
            ],
        ),
        (
            "pg_class",
            vec![
                ("oid", ids(n, FIRST_TABLE_OID)),
                ("relname", text(TABLES.to_vec())),
                ("relnamespace", int(vec![PUBLIC_OID; n])),
                ("relkind", text(vec!["r"; n])),
                ("relowner", int(vec![OWNER_OID; n])),
                ("relam", int(vec![HEAP_AM_OID; n])),
            ],
        ),
        (
            "pg_am",
            vec![
                ("oid", int(vec![HEAP_AM_OID])),
                ("amname", text(vec!["heap"])),
            ],
        ),
        ("pg_type", crate::pg_attribute::pg_type()),
        // No column has a default.
        (
            "pg_attrdef",
            vec![
                ("adrelid", int(vec![])),
                ("adnum", int(vec![])),
                ("adbin", text(vec![])),
            ],
        ),
        // No comments on anything (JDBC's getTables joins it).
        (
            "pg_description",
            vec![
                ("objoid", int(vec![])),
                ("classoid", int(vec![])),
                ("objsubid", int(vec![])),
                ("description", text(vec![])),
            ],
        ),
        // No extensions (Grafana asks for TimescaleDB's version).
        (
            "pg_extension",
            vec![
                ("oid", int(vec![])),
                ("extname", text(vec![])),
                ("extversion", text(vec![])),
            ],
        ),
        (
            "pg_database",
            vec![
                ("oid", int(vec![FIRST_TABLE_OID - 1])),
                ("datname", text(vec![DATABASE])),
                ("encoding", int(vec![6])),
            ],
        ),
    ];
    for (name, columns) in tables {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(c, a)| Field::new(*c, a.data_type().clone(), false))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())
                .map_err(|e| QueryError::Internal(format!("pg_catalog.{name}: {e}")))?;
        let table = MemTable::try_new(schema, vec![vec![batch]])?;
        ctx.register_table(format!("pg_catalog.{name}"), Arc::new(table))?;
    }
    for (name, of) in [
        ("pg_attribute", ColumnsOf::PgAttribute),
        ("information_schema_columns", ColumnsOf::InformationSchema),
    ] {
        ctx.register_table(format!("pg_catalog.{name}"), ColumnsView::new(&catalog, of))?;
    }
    // The schemas a session searches (JDBC's getSchemas).
    let searched = ScalarValue::List(ScalarValue::new_list_nullable(
        &["pg_catalog", "public"].map(|s| ScalarValue::Utf8(Some(s.into()))),
        &DataType::Utf8,
    ));
    ctx.register_udf(create_udf(
        "pg_catalog.current_schemas",
        vec![DataType::Boolean],
        searched.data_type(),
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(searched.clone()))),
    ));
    // A column default's text: there are none.
    ctx.register_udf(create_udf(
        "pg_catalog.pg_get_expr",
        vec![DataType::Utf8, DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    for (name, value) in [
        (
            "pg_catalog.pg_table_is_visible",
            ScalarValue::Boolean(Some(true)),
        ),
        (
            "pg_catalog.pg_get_userbyid",
            ScalarValue::Utf8(Some(DATABASE.into())),
        ),
    ] {
        let return_type = value.data_type();
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            return_type,
            Volatility::Immutable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
        ));
    }
    Ok(())
}
