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

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::error::{QueryError, Result};
use crate::query_engine::{Dialect, QueryEngine, QueryOutput};
use crate::scope::Scope;

/// The version clients are told: the PostgreSQL protocol and features
/// this server answers like (drivers parse the leading number).
pub const SERVER_VERSION: &str = "16.0";

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
}
