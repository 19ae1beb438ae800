//! The query crate's errors. The web crate maps them to statuses.

use std::time::Duration;

use datafusion::error::DataFusionError;

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Syntax errors, unknown tables or columns, type errors.
    #[error("{0}")]
    InvalidSql(String),

    /// Anything but one read-only query.
    #[error("{0}")]
    NotReadOnly(String),

    #[error("the query ran longer than {0:?} (query.timeout) and was cancelled")]
    Timeout(Duration),

    #[error("the query needs more memory than query.memory_limit allows: {0}")]
    MemoryLimit(String),

    /// A failure while running a valid plan (a division by zero, a bad cast).
    #[error("the query failed: {0}")]
    Execution(String),

    #[error("storage: {0}")]
    Storage(#[from] wattline_storage::Error),

    /// Stored data could not be read (a chunk file, a rollup partition).
    /// The detail names files: the web crate logs it and tells the client
    /// only that reading failed.
    #[error("reading stored data failed: {0}")]
    ReadFailed(String),

    /// The query is too large or too deeply nested to plan safely.
    #[error("{0}")]
    TooComplex(String),

    #[error("internal query error: {0}")]
    Internal(String),
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        let err = match storage_error(err) {
            Ok(storage) => return QueryError::Storage(storage),
            Err(err) => err,
        };
        let message = err.message().to_string();
        // Planning errors (an unknown column, a type mismatch) know where
        // in the query they are only through their diagnostic.
        let span = err
            .diagnostic()
            .and_then(|d| d.span)
            .filter(|s| s.start.line > 0);
        match err.find_root() {
            DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::ParquetError(_) => QueryError::ReadFailed(message),
            DataFusionError::ArrowError(e, _)
                if matches!(
                    e.as_ref(),
                    arrow::error::ArrowError::IoError(..)
                        | arrow::error::ArrowError::ParquetError(_)
                        | arrow::error::ArrowError::ExternalError(_)
                ) =>
            {
                QueryError::ReadFailed(message)
            }
            DataFusionError::SQL(parse, _) => QueryError::InvalidSql(parse.to_string()),
            DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::InvalidSql(match span {
                Some(s) if !message.contains("Line:") => {
                    format!(
                        "{message} at Line: {}, Column: {}",
                        s.start.line, s.start.column
                    )
                }
                _ => message,
            }),
            DataFusionError::ResourcesExhausted(_) => QueryError::MemoryLimit(message),
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                QueryError::Execution(message)
            }
            _ => QueryError::Internal(message),
        }
    }
}

/// Where in a query an error is: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlPosition {
    pub line: u64,
    pub column: u64,
}

impl QueryError {
    /// The position an invalid query's message names (`Line: L, Column:
    /// C`, as the parser and the planner's diagnostics put it), if any.
    pub fn position(&self) -> Option<SqlPosition> {
        let QueryError::InvalidSql(message) = self else {
            return None;
        };
        let at = message.rfind("Line: ")?;
        let (line, rest) = message[at + 6..].split_once(", Column: ")?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        Some(SqlPosition {
            line: line.parse().ok()?,
            column: rest[..digits].parse().ok()?,
        })
    }
}

/// The storage error a table provider wrapped, if that is what `err` is,
/// so it keeps its meaning (disk full, a missing chunk) across DataFusion.
fn storage_error(
    err: DataFusionError,
) -> std::result::Result<wattline_storage::Error, DataFusionError> {
    match err {
        DataFusionError::Context(context, inner) => {
            storage_error(*inner).map_err(|e| DataFusionError::Context(context, Box::new(e)))
        }
        DataFusionError::External(boxed) => match boxed.downcast::<wattline_storage::Error>() {
            Ok(storage) => Ok(*storage),
            Err(other) => Err(DataFusionError::External(other)),
        },
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_storage_error_keeps_its_kind() {
        let wrapped = DataFusionError::Context(
            "scan".into(),
            Box::new(DataFusionError::External(Box::new(
                wattline_storage::Error::StorageFull,
            ))),
        );
        assert!(matches!(
            QueryError::from(wrapped),
            QueryError::Storage(wattline_storage::Error::StorageFull)
        ));
    }

    #[test]
    fn file_errors_are_read_failures_and_plan_errors_invalid_sql() {
        let io = DataFusionError::IoError(std::io::Error::other("/data/chunks/x.parquet"));
        assert!(matches!(QueryError::from(io), QueryError::ReadFailed(_)));
        let plan = DataFusionError::Plan("no such column".into());
        assert!(matches!(QueryError::from(plan), QueryError::InvalidSql(_)));
    }
}
