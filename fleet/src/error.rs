//! Fleet publishing errors.

/// What can go wrong while publishing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fleet configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("delta table: {0}")]
    Delta(#[from] deltalake_core::DeltaTableError),
    #[error("local store: {0}")]
    Storage(#[from] wattline_storage::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("commit to {table} gave up after {attempts} attempts: {last}")]
    CommitContended {
        table: &'static str,
        attempts: u32,
        last: String,
    },
    #[error(
        "{table}: site {site}'s files changed while a commit was prepared; prepared again next round"
    )]
    Stale { table: &'static str, site: String },
    #[error(
        "site {site} was last published from another data directory (feed {owner:016x}; this one is \
         {mine:016x}): give this appliance its own fleet.site, or, if it replaces the appliance \
         that published the site and that one is stopped for good, set \
         fleet.take_over = \"{owner:016x}\""
    )]
    SiteTaken { site: String, owner: u64, mine: u64 },
    #[error("background task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
