//! PostgreSQL idioms that clients send and the engine does not plan,
//! rewritten in the parsed statement before planning (PostgreSQL sessions
//! only):
//!
//! - an unqualified `pg_catalog` table (`FROM pg_extension`), which
//!   PostgreSQL always searches first: qualified;
//! - `information_schema.columns`: the view with PostgreSQL's type names
//!   (`double precision`, not the engine's `Float64`), which tools pick
//!   columns by ([`crate::pg_attribute`]);
//! - casts to object id types (`'pg_class'::regclass` in JDBC's table
//!   listing): a named relation becomes its oid, any other value a
//!   `BIGINT`; `current_schemas(true)[1]` becomes `'pg_catalog'`;
//! - `IN (subquery)` where the subquery only lists the schemas of the
//!   search path, walking `string_to_array(current_setting('search_path'),
//!   ',')` with `generate_series` (Grafana's table list; list functions
//!   the engine leaves out as unbounded): the one schema searched,
//!   `IN (SELECT 'public')`.
//!
//! `EXPLAIN` shows the statement as rewritten.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    self, CastKind, DataType as SqlType, Expr, Query, SetExpr, Statement, TableFactor, Value,
    VisitMut, VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{QueryError, Result};
use crate::guard::TABLES;
use crate::pg_catalog::{PG_TABLES, table_oid};

/// Rewrites `statement` as described in the module doc.
pub(crate) fn rewrite(statement: &mut DfStatement) -> Result<()> {
    let statement = match statement {
        DfStatement::Statement(statement) => statement,
        DfStatement::Explain(explain) => return rewrite(&mut explain.statement),
        _ => return Ok(()),
    };
    let mut ctes = CteNames::default();
    let _ = statement.as_mut().visit(&mut ctes);
    if let ControlFlow::Break(e) = statement.as_mut().visit(&mut FromItems { ctes: ctes.0 }) {
        return Err(e);
    }
    rewrite_expressions(statement)
}

/// The names of the statement's common table expressions, anywhere in it
/// (a CTE shadows a catalog table of its name, as in PostgreSQL).
#[derive(Default)]
struct CteNames(Vec<String>);

impl VisitorMut for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0.extend(with.cte_tables.iter().map(|cte| {
                let name = &cte.alias.name;
                if name.quote_style.is_some() {
                    name.value.clone()
                } else {
                    name.value.to_ascii_lowercase()
                }
            }));
        }
        ControlFlow::Continue(())
    }
}

/// Qualifies an unqualified `pg_catalog` table (unless a CTE of the
/// statement has its name) and reads `information_schema.columns` from
/// the PostgreSQL-typed view.
struct FromItems {
    ctes: Vec<String>,
}

impl VisitorMut for FromItems {
    type Break = QueryError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<QueryError> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        // The name's parts as PostgreSQL reads them.
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|part| match part {
                ast::ObjectNamePart::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
                ast::ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
                other => other.to_string(),
            })
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let ident = |s: &str| ast::ObjectNamePart::Identifier(ast::Ident::new(s));
        match parts.as_slice() {
            [table] if PG_TABLES.contains(table) && !self.ctes.iter().any(|c| c == table) => {
                name.0.insert(0, ident("pg_catalog"))
            }
            ["information_schema", "columns"]
            | [crate::postgres::DATABASE, "information_schema", "columns"] => {
                name.0 = vec![ident("pg_catalog"), ident("information_schema_columns")];
                alias.get_or_insert_with(|| ast::TableAlias {
                    explicit: true,
                    name: ast::Ident::new("columns"),
                    columns: Vec::new(),
                    at: None,
                });
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether `query` lists the schemas of the search path as Grafana's
/// table list does, and nothing else: one value per element of
/// `string_to_array(current_setting('search_path'), ',')`, indexed by a
/// `generate_series` over its bounds, with no other clause.
fn walks_the_search_path(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let text = |s: String| -> String {
        s.to_ascii_lowercase()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    };
    let function = |factor: &TableFactor| match factor {
        TableFactor::Table {
            name,
            args: Some(args),
            alias: Some(_),
            ..
        } if args.settings.is_none() => Some((
            text(name.to_string()),
            text(
                args.args
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        )),
        _ => None,
    };
    let plain = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && select.distinct.is_none()
        && select.projection.len() == 1
        && select.selection.is_none()
        && select.having.is_none()
        && select.qualify.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        && select.from.iter().all(|from| from.joins.is_empty());
    let [series, path] = select.from.as_slice() else {
        return false;
    };
    let search_path = "current_setting('search_path')";
    plain
        && matches!(function(&series.relation), Some((name, args))
            if name == "generate_series" && args.contains(search_path))
        && function(&path.relation)
            == Some(("string_to_array".into(), format!("{search_path},','")))
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
fn first_searched_schema(e: &Expr) -> bool {
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

/// Rewrites the expressions: casts to PostgreSQL's object id types,
/// which the engine has not (`'<relation>'::regclass` to the relation's
/// oid, other casts to `regclass`, `oid`, `regtype`, `regproc` or
/// `regnamespace` to `BIGINT`) and `current_schemas(true)[1]`.
fn rewrite_expressions(statement: &mut Statement) -> Result<()> {
    let flow = visit_expressions_mut(statement, |e| {
        if let Expr::InSubquery { subquery, .. } = e
            && walks_the_search_path(subquery)
        {
            match Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 'public'") {
                Ok(parsed) => {
                    if let Some(Statement::Query(public)) = parsed.into_iter().next() {
                        *subquery = public;
                    }
                }
                Err(err) => return ControlFlow::Break(QueryError::Internal(err.to_string())),
            }
            return ControlFlow::Continue(());
        }
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
        rewrite(&mut statement)?;
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

    #[test]
    fn catalog_tables_are_found_as_postgresql_finds_them() -> Result<()> {
        assert_eq!(
            rewritten("SELECT extversion FROM pg_extension")?,
            "SELECT extversion FROM pg_catalog.pg_extension"
        );
        assert_eq!(
            rewritten("SELECT 1 FROM PG_CLASS c JOIN \"pg_type\" t ON true")?,
            "SELECT 1 FROM pg_catalog.PG_CLASS c JOIN pg_catalog.\"pg_type\" t ON true"
        );
        // Not a catalog table of that name, or a name in another schema.
        for kept in [
            "SELECT 1 FROM \"PG_CLASS\"",
            "SELECT 1 FROM public.pg_class",
            "SELECT 1 FROM readings",
        ] {
            assert_eq!(rewritten(kept)?, kept);
        }
        assert_eq!(
            rewritten("SELECT data_type FROM information_schema.columns")?,
            "SELECT data_type FROM pg_catalog.information_schema_columns AS columns"
        );
        assert_eq!(
            rewritten("SELECT c.data_type FROM wattline.INFORMATION_SCHEMA.columns c")?,
            "SELECT c.data_type FROM pg_catalog.information_schema_columns c"
        );
        assert_eq!(
            rewritten("SELECT table_name FROM information_schema.tables")?,
            "SELECT table_name FROM information_schema.tables"
        );
        Ok(())
    }

    #[test]
    fn a_walk_of_the_search_path_is_its_one_schema() -> Result<()> {
        let grafana = "SELECT t FROM x WHERE s IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' \
             THEN user ELSE trim(s[i]) END FROM generate_series(array_lower(string_to_array(\
             current_setting('search_path'), ','), 1), array_upper(string_to_array(\
             current_setting('search_path'), ','), 1)) AS i, \
             string_to_array(current_setting ( 'search_path' ),',') s)";
        assert_eq!(
            rewritten(grafana)?,
            "SELECT t FROM x WHERE s IN (SELECT 'public')"
        );
        // Anything more, or less, is left to the engine.
        let walk = "FROM generate_series(1, array_upper(string_to_array(\
                    current_setting('search_path'), ','), 1)) AS i, \
                    string_to_array(current_setting('search_path'), ',') AS s";
        for kept in [
            "SELECT * FROM generate_series(1, 3) AS i".to_owned(),
            "SELECT count(*) FROM readings, generate_series(1, \
             length(current_setting('search_path'))) AS g"
                .to_owned(),
            format!("SELECT s[i] {walk}"),
            format!("SELECT 1 WHERE 'x' IN (SELECT s[i] {walk} WHERE false)"),
            format!("SELECT 1 WHERE 'x' IN (SELECT s[i], i {walk})"),
            format!("SELECT 1 WHERE 'x' IN (SELECT s[i] {walk} LIMIT 0)"),
        ] {
            let kept = rewritten(&kept)?;
            assert!(!kept.contains("'public'"), "{kept}");
        }
        assert_eq!(
            rewritten(&format!("SELECT 1 WHERE 'x' IN (SELECT s[i] {walk})"))?,
            "SELECT 1 WHERE 'x' IN (SELECT 'public')"
        );
        Ok(())
    }

    #[test]
    fn ctes_shadow_catalog_tables_and_explain_is_rewritten() -> Result<()> {
        for kept in [
            "WITH pg_class AS (SELECT 1) SELECT * FROM pg_class",
            "SELECT * FROM (WITH \"pg_type\" AS (SELECT 1) SELECT * FROM pg_type) AS t",
        ] {
            assert_eq!(rewritten(kept)?, kept);
        }
        assert_eq!(
            rewritten("EXPLAIN SELECT * FROM pg_extension")?,
            "EXPLAIN SELECT * FROM pg_catalog.pg_extension"
        );
        Ok(())
    }
}
