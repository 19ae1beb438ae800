//! The few `pg_catalog` tables and functions PostgreSQL tools read to list
//! tables (psql's `\dt`, drivers' metadata calls), for PostgreSQL sessions.
//!
//! They describe wattline's tables only, the same list for every tenant
//! (no rows, no ids): `pg_namespace`, `pg_class`, `pg_am`, `pg_database`,
//! `pg_attribute` and `pg_type` (see [`crate::pg_attribute`]), an empty
//! `pg_description` and `pg_attrdef`, `pg_get_expr`,
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
pub(crate) const PG_CATALOG_OID: i64 = 11;
const PUBLIC_OID: i64 = 2200;
const INFORMATION_SCHEMA_OID: i64 = 13_000;
const FIRST_TABLE_OID: i64 = 16_384;
const OWNER_OID: i64 = 10;
const HEAP_AM_OID: i64 = 2;

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
    let tables: [(&str, Vec<(&str, ArrayRef)>); 7] = [
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
    ctx.register_table(
        "pg_catalog.pg_attribute",
        crate::pg_attribute::PgAttribute::new(&catalog),
    )?;
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

/// The oid a `regclass` literal names, read as PostgreSQL reads it:
/// `[schema.]name`, each part folded to lower case unless double-quoted;
/// a catalog relation in `pg_catalog`, a wattline table in `public` (as
/// in `pg_class`).
fn relation_oid(literal: &str) -> Option<i64> {
    let parts: Vec<String> = literal
        .split('.')
        .map(
            |p| match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.to_owned(),
                None => p.to_ascii_lowercase(),
            },
        )
        .collect();
    let (schema, name) = match parts.as_slice() {
        [name] => (None, name.as_str()),
        [schema, name] => (Some(schema.as_str()), name.as_str()),
        _ => return None,
    };
    if let (None | Some("pg_catalog"), Some((_, oid))) =
        (schema, CATALOG_OIDS.iter().find(|(n, _)| *n == name))
    {
        return Some(*oid);
    }
    if !matches!(schema, None | Some("public")) {
        return None;
    }
    TABLES.iter().position(|t| *t == name).map(table_oid)
}

/// Whether `e` is `[pg_catalog.]current_schemas(true)[1]`.
fn first_searched_schema(e: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    use datafusion::sql::sqlparser::ast::Expr;
    let Expr::CompoundFieldAccess { root, access_chain } = e else {
        return false;
    };
    let mut root = root.as_ref();
    while let Expr::Nested(inner) = root {
        root = inner;
    }
    let call = root.to_string().to_ascii_lowercase().replace(' ', "");
    matches!(root, Expr::Function(_))
        && matches!(
            call.as_str(),
            "current_schemas(true)" | "pg_catalog.current_schemas(true)"
        )
        && access_chain.len() == 1
        && access_chain[0].to_string() == "[1]"
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
        // `current_schemas(true)[1]` (JDBC's getSchemas): the first
        // schema searched, without the list functions the engine leaves
        // out.
        if first_searched_schema(e) {
            *e = Expr::value(ast::Value::SingleQuotedString("pg_catalog".into()));
            return ControlFlow::Continue(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> Result<String> {
        let mut statements = DFParser::parse_sql(sql)?;
        let mut statement = statements
            .pop_front()
            .ok_or_else(|| QueryError::InvalidSql("no statement".into()))?;
        rewrite_object_ids(&mut statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn object_id_casts_become_what_the_engine_plans() -> Result<()> {
        assert_eq!(
            rewritten("SELECT 1 WHERE 5 = 'pg_class'::regclass")?,
            "SELECT 1 WHERE 5 = 1259"
        );
        let readings = table_oid(TABLES.iter().position(|t| *t == "readings").unwrap_or(0));
        assert_eq!(
            rewritten("SELECT 'public.readings'::regclass")?,
            format!("SELECT {readings}")
        );
        assert_eq!(
            rewritten("SELECT oid::regclass FROM t")?,
            "SELECT oid::BIGINT FROM t"
        );
        assert_eq!(
            rewritten("SELECT CAST(x AS oid) FROM t")?,
            "SELECT CAST(x AS BIGINT) FROM t"
        );
        assert_eq!(
            rewritten("SELECT (pg_catalog.current_schemas(true))[1]")?,
            "SELECT 'pg_catalog'"
        );
        assert_eq!(rewritten("SELECT a::text FROM t")?, "SELECT a::TEXT FROM t");
        // Names as PostgreSQL reads them.
        for name in ["Readings", "\"readings\"", "public.readings"] {
            assert_eq!(
                rewritten(&format!("SELECT '{name}'::regclass"))?,
                format!("SELECT {readings}")
            );
        }
        for name in ["\"Readings\"", "pg_catalog.readings", "x.public.readings"] {
            let refused = rewritten(&format!("SELECT '{name}'::regclass"));
            assert!(refused.is_err(), "{name}: {refused:?}");
        }
        // Only that call: an array column of a like name is left alone.
        assert_eq!(
            rewritten("SELECT current_schemastrue[1] FROM t")?,
            "SELECT current_schemastrue[1] FROM t"
        );
        let unknown = rewritten("SELECT 'nosuch'::regclass");
        assert!(matches!(unknown, Err(QueryError::InvalidSql(m)) if m.contains("nosuch")));
        Ok(())
    }
}
