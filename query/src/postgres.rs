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
        ("quote_ident", |s: &str| Ok(quote_ident(s))),
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
        ColumnarValue::Scalar(ScalarValue::Utf8(v)) => {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(apply(v.as_deref())?)))
        }
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
    let name = name.to_ascii_lowercase();
    SETTINGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| (*v).to_owned())
        .ok_or_else(|| {
            QueryError::InvalidSql(format!("unrecognized configuration parameter \"{name}\""))
        })
}

/// `quote_ident(s)`: `s` as an identifier, double-quoted unless it is a
/// plain lower-case one (key words are not told apart: wattline's names
/// are none).
fn quote_ident(s: &str) -> String {
    let plain = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_identifiers_read_as_postgresql_reads_them() -> Result<()> {
        assert_eq!(setting("server_version_num")?, "160000");
        assert_eq!(setting("Search_Path")?, "public");
        assert!(
            matches!(setting("b1"), Err(QueryError::InvalidSql(m)) if m.contains("\"b1\""))
        );
        assert_eq!(quote_ident("readings"), "readings");
        assert_eq!(quote_ident("_a1"), "_a1");
        assert_eq!(quote_ident("Readings"), "\"Readings\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident(""), "\"\"");
        Ok(())
    }
}
