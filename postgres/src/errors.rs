//! Query errors as PostgreSQL errors, with the SQLSTATE clients act on.

use pgwire::error::{ErrorInfo, PgWireError};
use wattline_query::QueryError;

/// `err` as the client sees it. Failures reading stored data name files:
/// they are logged here and the client is told only that reading failed.
pub(crate) fn query_error(err: QueryError) -> PgWireError {
    let message = err.to_string();
    let code = match &err {
        QueryError::InvalidSql(m) => invalid_sql_code(m),
        QueryError::NotReadOnly(_) => "25006",
        QueryError::TooComplex(_) => "54001",
        QueryError::Timeout(_) => "57014",
        QueryError::MemoryLimit(_) => "53200",
        QueryError::Execution(_) => "22000",
        QueryError::Storage(_) | QueryError::ReadFailed(_) => {
            tracing::error!(error = %message, "reading stored data failed");
            return error(
                "58030",
                "stored data could not be read; the daemon's log has the details, retry later"
                    .into(),
            );
        }
        _ => {
            tracing::error!(error = %message, "query failed");
            return error(
                "XX000",
                "internal error; the daemon's log has the details".into(),
            );
        }
    };
    error(code, message)
}

/// Syntax errors, unknown tables and unknown columns apart, as tools
/// (and people reading `psql`'s codes) tell them apart.
fn invalid_sql_code(message: &str) -> &'static str {
    if (message.contains("not found") && message.contains("table"))
        || (message.starts_with("relation ") && message.ends_with("does not exist"))
    {
        "42P01"
    } else if message.contains("No field named") {
        "42703"
    } else if message.contains("Invalid function") {
        "42883"
    } else {
        "42601"
    }
}

pub(crate) fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_codes_clients_act_on_and_no_file_names() {
        let code = |e: QueryError| query_error(e).code().to_owned();
        assert_eq!(
            code(QueryError::InvalidSql("table 'x' not found".into())),
            "42P01"
        );
        assert_eq!(
            code(QueryError::InvalidSql(
                "relation \"x\" does not exist".into()
            )),
            "42P01"
        );
        assert_eq!(
            code(QueryError::InvalidSql("No field named y".into())),
            "42703"
        );
        assert_eq!(code(QueryError::InvalidSql("Expected: )".into())), "42601");
        assert_eq!(code(QueryError::NotReadOnly("no".into())), "25006");
        assert_eq!(
            code(QueryError::Timeout(std::time::Duration::from_secs(1))),
            "57014"
        );
        let read = query_error(QueryError::ReadFailed(
            "/var/lib/wattline/chunks/a.parquet".into(),
        ));
        let info = ErrorInfo::from(read);
        assert!(!info.message.contains("/var/lib"), "{}", info.message);
    }
}
