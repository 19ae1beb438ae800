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

    #[error("internal query error: {0}")]
    Internal(String),
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        let message = err.message().to_string();
        match err.find_root() {
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
