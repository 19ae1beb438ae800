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
            | DataFusionError::NotImplemented(_) => QueryError::InvalidSql(message),
            DataFusionError::ResourcesExhausted(_) => QueryError::MemoryLimit(message),
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                QueryError::Execution(message)
            }
            _ => QueryError::Internal(message),
        }
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
