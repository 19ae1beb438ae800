//! The few `pg_catalog` tables and functions PostgreSQL tools read to list
//! tables (psql's `\dt`, drivers' metadata calls), for PostgreSQL sessions.
//!
//! They describe wattline's tables only, the same list for every tenant
//! (no rows, no ids): `pg_namespace`, `pg_class`, `pg_am`, `pg_database`,
//! an empty `pg_description`,
//! plus `pg_catalog.pg_table_is_visible(oid)` and
//! `pg_catalog.pg_get_userbyid(oid)`. Column details are in
//! `information_schema.columns`. Object id types in casts, as drivers
//! write them (`'pg_class'::regclass` in JDBC's table listing), are
//! rewritten before planning: a named relation becomes its oid, any
//! other value a `BIGINT`.

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
use crate::postgres::DATABASE;

/// PostgreSQL's own oids for its schemas; wattline's tables count from
/// the first oid PostgreSQL gives user objects.
const PG_CATALOG_OID: i64 = 11;
const PUBLIC_OID: i64 = 2200;
const INFORMATION_SCHEMA_OID: i64 = 13_000;
const FIRST_TABLE_OID: i64 = 16_384;
const OWNER_OID: i64 = 10;
const HEAP_AM_OID: i64 = 2;

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
    let tables: [(&str, Vec<(&str, ArrayRef)>); 5] = [
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

/// PostgreSQL's oids of the catalog relations drivers name in casts.
const CATALOG_OIDS: [(&str, i64); 8] = [
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_database", 1262),
    ("pg_am", 2601),
    ("pg_description", 2609),
    ("pg_namespace", 2615),
];

/// The oid a `regclass` literal names: a catalog relation's, or a
/// wattline table's (as in `pg_class`).
fn relation_oid(name: &str) -> Option<i64> {
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    if let Some((_, oid)) = CATALOG_OIDS.iter().find(|(n, _)| *n == name) {
        return Some(*oid);
    }
    let name = name.strip_prefix("public.").unwrap_or(name);
    TABLES
        .iter()
        .position(|t| *t == name)
        .map(|i| FIRST_TABLE_OID + i as i64)
}

/// Rewrites casts to PostgreSQL's object id types, which the engine has
/// not: `'<relation>'::regclass` to the relation's oid, other casts to
/// `regclass`, `oid`, `regtype`, `regproc` or `regnamespace` to `BIGINT`.
pub(crate) fn rewrite_object_ids(statement: &mut datafusion::sql::parser::Statement) -> Result<()> {
    use datafusion::sql::parser::Statement as DfStatement;
    use datafusion::sql::sqlparser::ast::{
        self, CastKind, DataType as SqlType, Expr, Value, visit_expressions_mut,
    };
    use std::ops::ControlFlow;
    let DfStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let flow = visit_expressions_mut(statement.as_mut(), |e| {
        let Expr::Cast {
            kind: CastKind::DoubleColon | CastKind::Cast,
            expr,
            data_type,
            ..
        } = e
        else {
            return ControlFlow::Continue(());
        };
        let id_type = match data_type {
            SqlType::Regclass => true,
            SqlType::Custom(name, args) if args.is_empty() => {
                let name = name.to_string().to_ascii_lowercase();
                matches!(
                    name.as_str(),
                    "oid" | "regtype" | "regproc" | "regnamespace" | "regclass"
                )
            }
            _ => false,
        };
        if !id_type {
            return ControlFlow::Continue(());
        }
        let regclass = matches!(data_type, SqlType::Regclass)
            || data_type.to_string().eq_ignore_ascii_case("regclass");
        if let (true, Expr::Value(v)) = (regclass, expr.as_ref())
            && let Value::SingleQuotedString(name) = &v.value
        {
            let Some(oid) = relation_oid(name) else {
                return ControlFlow::Break(QueryError::InvalidSql(format!(
                    "relation \"{name}\" does not exist"
                )));
            };
            *e = Expr::value(ast::Value::Number(oid.to_string(), false));
            return ControlFlow::Continue(());
        }
        *data_type = SqlType::BigInt(None);
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}
