//! The storage crate's error type. The web crate maps each variant to an HTTP
//! status in one place.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot open {path}: another wattline process is using this data directory")]
    DataDirInUse { path: PathBuf },

    #[error("cannot open database {path}: {source}")]
    OpenDatabase {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    #[error("{action} failed: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the disk is full: the write was not stored; free space in the data directory")]
    StorageFull,

    #[error("database operation failed: {0}")]
    Database(#[source] Box<redb::Error>),

    #[error("committing to the write-ahead failed: {0}; nothing of the batch was stored")]
    WalCommit(String),

    #[error("the write-ahead has stopped; the daemon is shutting down")]
    WalClosed,

    /// Writes are refused until background work catches up.
    #[error("ingestion is paused: {0}; retry later")]
    Overloaded(String),

    /// A write-ahead commit failed in a way that leaves its outcome unknown
    /// (an fsync error): nothing more is acknowledged and the daemon exits,
    /// so recovery replays from what is durable.
    #[error(
        "the write-ahead failed and the daemon is stopping; it replays the write-ahead when restarted"
    )]
    Stopped,

    #[error("write-ahead record {seq} is unreadable: {reason}")]
    WalCorrupt { seq: u64, reason: String },

    #[error("chunk file {path} could not be written or read: {reason}")]
    ChunkUnreadable { path: PathBuf, reason: String },

    #[error("the manifest names chunk file {path}, which is missing; restore it from a backup")]
    ChunkMissing { path: PathBuf },

    #[error("catalog record {key} in table {table} is unreadable: {reason}")]
    CatalogCorrupt {
        table: &'static str,
        key: String,
        reason: String,
    },

    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: &'static str, id: String },

    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },

    #[error("building {0:?} still has sensors; a building can only be deleted once it has none")]
    BuildingHasSensors(String),

    #[error("unknown time zone {0:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\"")]
    InvalidTimezone(String),

    #[error("{0}")]
    InvalidArgument(String),

    /// A tenant asked for more work than it may have waiting.
    #[error("{0}")]
    TooMuchPending(String),
}

/// True for an I/O error that means "no space left on the device".
/// (ENOSPC, or EDQUOT: a quota is a full disk for this process.)
fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28 | 122))
}

impl From<redb::Error> for Error {
    fn from(err: redb::Error) -> Self {
        match &err {
            redb::Error::Io(io) if is_disk_full(io) => Error::StorageFull,
            _ => Error::Database(Box::new(err)),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(err: $t) -> Self {
                Error::from(redb::Error::from(err))
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError
);

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        if is_disk_full(&source) {
            return Error::StorageFull;
        }
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// A failed Parquet write: a full disk stays [`Error::StorageFull`].
    pub(crate) fn parquet_write(
        path: &std::path::Path,
        err: parquet::errors::ParquetError,
    ) -> Self {
        if let parquet::errors::ParquetError::External(inner) = &err
            && let Some(io) = inner.downcast_ref::<std::io::Error>()
            && is_disk_full(io)
        {
            return Error::StorageFull;
        }
        Error::ChunkUnreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        }
    }

    pub(crate) fn open(path: PathBuf, source: redb::DatabaseError) -> Self {
        match source {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::DataDirInUse { path },
            // Reopening after an error may repair, which writes.
            redb::DatabaseError::Storage(redb::StorageError::Io(ref io)) if is_disk_full(io) => {
                Error::StorageFull
            }
            source => Error::OpenDatabase { path, source },
        }
    }
}
