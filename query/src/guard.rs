//! Read-only enforcement, on the logical plan rather than the SQL text.
//!
//! DataFusion would otherwise run DDL (`CREATE EXTERNAL TABLE ... LOCATION`
//! reads any local file), DML, `COPY ... TO` (writes files) and `SET`.
//! Planning a statement does not run it, so the plan is checked before
//! anything executes: only a query (or a plain `EXPLAIN` of one) passes,
//! and every table it scans must be one of wattline's.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;

use crate::error::{QueryError, Result};

/// The tables a query may read.
pub(crate) const TABLES: &[&str] = &[
    "tenants",
    "buildings",
    "sensors",
    "readings",
    "sensor_hourly",
    "building_quarterly",
    "building_hourly",
    "building_daily",
    "building_monthly",
    "building_yearly",
    "sensor_gaps",
    "alert_rules",
    "alert_events",
];

/// Checks `plan`; `catalog_views` lets it read `information_schema` and
/// `pg_catalog` too (sessions of PostgreSQL clients, whose tools list
/// tables through them).
pub(crate) fn check_read_only(plan: &LogicalPlan, catalog_views: bool) -> Result<()> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            QueryError::NotReadOnly(format!(
                "only read-only queries are allowed: {}",
                e.message()
            ))
        })?;
    let mut problem = None;
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Analyze(_) => {
                problem = Some("EXPLAIN ANALYZE runs the query; use EXPLAIN".to_string());
            }
            LogicalPlan::Copy(_) | LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) => {
                problem = Some("only read-only queries are allowed".to_string());
            }
            LogicalPlan::Extension(_) => {
                problem = Some("this statement is not allowed".to_string());
            }
            LogicalPlan::TableScan(scan)
                if !(TABLES.contains(&scan.table_name.table())
                    || catalog_views
                        && matches!(
                            scan.table_name.schema(),
                            Some("information_schema" | "pg_catalog")
                        )) =>
            {
                problem = Some(format!("table {} cannot be read here", scan.table_name));
            }
            _ => {}
        }
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })
    .map_err(QueryError::from)?;
    match problem {
        Some(p) => Err(QueryError::NotReadOnly(p)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A session with an empty `readings` table and a foreign `secrets`.
    fn session() -> SessionContext {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        for name in ["readings", "secrets"] {
            let table = MemTable::try_new(schema.clone(), vec![vec![]]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        ctx
    }

    async fn check(sql: &str) -> Result<()> {
        let plan = session().state().create_logical_plan(sql).await?;
        check_read_only(&plan, false)
    }

    #[tokio::test]
    async fn queries_of_wattline_tables_pass() {
        for sql in [
            "SELECT count(*) FROM readings",
            "WITH r AS (SELECT v FROM readings) SELECT * FROM r WHERE v IN (SELECT v FROM readings)",
            "EXPLAIN SELECT v FROM readings",
            "SELECT 1",
        ] {
            check(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[tokio::test]
    async fn catalog_views_are_read_only_in_postgres_sessions() {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_information_schema(true),
        );
        let plan = ctx
            .state()
            .create_logical_plan("SELECT table_name FROM information_schema.tables")
            .await
            .unwrap();
        assert!(check_read_only(&plan, true).is_ok());
        assert!(matches!(
            check_read_only(&plan, false),
            Err(QueryError::NotReadOnly(_))
        ));
    }

    #[tokio::test]
    async fn writes_statements_analyze_and_foreign_tables_are_refused() {
        for sql in [
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW w AS SELECT * FROM readings",
            "DROP TABLE readings",
            "INSERT INTO readings VALUES (1)",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "SET datafusion.execution.batch_size = 1",
            "EXPLAIN ANALYZE SELECT * FROM readings",
            "SELECT * FROM secrets",
            "SELECT * FROM readings WHERE v IN (SELECT v FROM secrets)",
        ] {
            assert!(
                matches!(check(sql).await, Err(QueryError::NotReadOnly(_))),
                "{sql} passed"
            );
        }
    }
}
