//! What the PostgreSQL front end asks of the engine, beyond what HTTP does:
//!
//! - a statement's parameter and result types before it runs (the extended
//!   protocol's Parse and Describe), and a run with bound parameters;
//! - in its sessions, the catalog views clients read to list tables
//!   (`information_schema`: wattline's table and column names, the same
//!   for every tenant, no rows) and the functions drivers and tools call
//!   when they connect (`version()`, `current_database()`, ...).
//!
//! Every statement is planned in a fresh session of the caller's scope, so
//! a prepared statement run later reads the data as it is then.

use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::cast::as_string_array;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::error::{QueryError, Result};
use crate::query_engine::{Dialect, QueryEngine, QueryOutput};
use crate::scope::Scope;

/// The version clients are told: the PostgreSQL protocol and features
/// this server answers like (drivers parse the leading number).
pub const SERVER_VERSION: &str = "16.0";

/// The standard settings a session runs with, as `(name, value)`: what
/// `SHOW` and `current_setting(name)` answer.
pub const SETTINGS: &[(&str, &str)] = &[
    ("server_version", SERVER_VERSION),
    ("server_version_num", "160000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("timezone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("search_path", "public"),
    ("max_identifier_length", "63"),
    ("intervalstyle", "postgres"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("is_superuser", "off"),
];

/// The one database a connection sees.
pub const DATABASE: &str = "wattline";

/// A statement's shape, known before it runs.
#[derive(Debug, Clone)]
pub struct Described {
    /// The columns of its answer.
    pub schema: SchemaRef,
    /// The types of `$1`, `$2`, ... in order; `None` where the query does
    /// not tell (as in `SELECT $1`).
    pub params: Vec<Option<DataType>>,
}

impl QueryEngine {
    /// Plans `sql` as a PostgreSQL client's statement, without running it.
    pub async fn describe_postgres(&self, sql: &str, scope: &Scope) -> Result<Described> {
        let plan = self.plan_sql(sql, scope, Dialect::Postgres).await?;
        let mut types = plan.get_parameter_types()?;
        let mut params = Vec::with_capacity(types.len());
        for i in 1..=types.len() {
            let Some(ty) = types.remove(&format!("${i}")) else {
                return Err(QueryError::InvalidSql(format!(
                    "parameters must be numbered $1 to ${} without gaps (${i} is missing)",
                    params.len() + types.len() + 1
                )));
            };
            params.push(ty);
        }
        Ok(Described {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            params,
        })
    }

    /// Runs `sql` as a PostgreSQL client's statement with `params` bound to
    /// `$1`, `$2`, ... (each already of the type [`Self::describe_postgres`]
    /// gave, where it gave one).
    pub async fn sql_postgres(
        &self,
        sql: &str,
        scope: &Scope,
        params: Vec<ScalarValue>,
    ) -> Result<QueryOutput> {
        let params = (!params.is_empty()).then(|| ParamValues::from(params));
        self.run_sql(sql, scope, Dialect::Postgres, params).await
    }
}

/// The session functions of PostgreSQL that clients call on connecting.
pub(crate) fn register_functions(ctx: &SessionContext, scope: &Scope) {
    let user = scope.restricted_to().unwrap_or("admin").to_owned();
    let version = format!(
        "PostgreSQL {SERVER_VERSION} (wattline {})",
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in [
        ("version", version),
        ("current_database", DATABASE.to_owned()),
        ("current_catalog", DATABASE.to_owned()),
        ("current_schema", "public".to_owned()),
        ("current_user", user.clone()),
        ("session_user", user.clone()),
        ("user", user),
    ] {
        let value = ScalarValue::Utf8(Some(value));
        ctx.register_udf(create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
        ));
    }
    for (name, f) in [
        ("current_setting", setting as fn(&str) -> Result<String>),
        ("quote_ident", quote_ident),
    ] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args| text_function(args, f)),
        ));
    }
}

/// Applies `f` to each non-null text of a one-argument call.
fn text_function(
    args: &[ColumnarValue],
    f: fn(&str) -> Result<String>,
) -> datafusion::error::Result<ColumnarValue> {
    let Some(arg) = args.first() else {
        return Err(datafusion::error::DataFusionError::Plan(
            "one argument expected".into(),
        ));
    };
    let apply = |v: Option<&str>| {
        v.map(f)
            .transpose()
            .map_err(|e| datafusion::error::DataFusionError::Execution(e.to_string()))
    };
    match arg {
        ColumnarValue::Scalar(ScalarValue::Utf8(v)) => Ok(ColumnarValue::Scalar(
            ScalarValue::Utf8(apply(v.as_deref())?),
        )),
        ColumnarValue::Array(array) => {
            let texts = as_string_array(array)?;
            let out = (0..texts.len())
                .map(|i| apply((!texts.is_null(i)).then(|| texts.value(i))))
                .collect::<datafusion::error::Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
        other => Err(datafusion::error::DataFusionError::Plan(format!(
            "a text argument expected, not {}",
            other.data_type()
        ))),
    }
}

/// `current_setting(name)`: a standard setting's value (names are read
/// without regard to case, as PostgreSQL reads them).
fn setting(name: &str) -> Result<String> {
    SETTINGS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| (*v).to_owned())
        .ok_or_else(|| {
            QueryError::InvalidSql(format!("unrecognized configuration parameter \"{name}\""))
        })
}

/// The longest text `quote_ident` takes: identifiers are at most 63
/// bytes in PostgreSQL, and a bound keeps nested calls (each may double
/// its input) from building unbounded text.
const QUOTE_IDENT_MAX: usize = 1024;

/// PostgreSQL's key words that are not unreserved (reserved, and those
/// allowed only as column or only as function and type names), which
/// `quote_ident` quotes.
const KEY_WORDS: &str = "\
    all analyse analyze and any array as asc asymmetric authorization between bigint \
    binary bit boolean both case cast char character check coalesce collate collation \
    column concurrently constraint create cross current_catalog current_date \
    current_role current_schema current_time current_timestamp current_user dec decimal \
    default deferrable desc distinct do else end except exists extract false fetch float \
    for foreign freeze from full grant greatest group grouping having ilike in initially \
    inner inout int integer intersect interval into is isnull join json lateral leading \
    least left like limit localtime localtimestamp national natural nchar none normalize \
    not notnull null nullif numeric offset on only or order out outer overlaps overlay \
    placing position precision primary real references returning right row select \
    session_user setof similar smallint some substring symmetric system_user table \
    tablesample then time timestamp to trailing treat trim true union unique user using \
    values varchar variadic verbose when where window with";

/// `quote_ident(s)`: `s` as an identifier, double-quoted unless it is a
/// plain lower-case one that is no key word.
fn quote_ident(s: &str) -> Result<String> {
    if s.len() > QUOTE_IDENT_MAX {
        return Err(QueryError::InvalidSql(format!(
            "quote_ident takes at most {QUOTE_IDENT_MAX} bytes, not {}",
            s.len()
        )));
    }
    let plain = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !KEY_WORDS.split_ascii_whitespace().any(|k| k == s);
    Ok(if plain {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_identifiers_read_as_postgresql_reads_them() -> Result<()> {
        assert_eq!(setting("server_version_num")?, "160000");
        assert_eq!(setting("Search_Path")?, "public");
        assert!(
            matches!(setting("No_Such"), Err(QueryError::InvalidSql(m)) if m.contains("\"No_Such\""))
        );
        assert_eq!(quote_ident("readings")?, "readings");
        assert_eq!(quote_ident("_a1")?, "_a1");
        assert_eq!(quote_ident("value")?, "value");
        assert_eq!(quote_ident("window")?, "\"window\"");
        assert_eq!(quote_ident("Readings")?, "\"Readings\"");
        assert_eq!(quote_ident("1a")?, "\"1a\"");
        assert_eq!(quote_ident("a\"b")?, "\"a\"\"b\"");
        assert_eq!(quote_ident("")?, "\"\"");
        // Nested calls cannot build unbounded text.
        let quotes = "\"".repeat(600);
        let once = quote_ident(&quotes)?;
        assert_eq!(once.len(), 1202);
        assert!(quote_ident(&once).is_err());
        Ok(())
    }
}
