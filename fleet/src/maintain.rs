//! `wattline fleet maintain`: table maintenance, run by one operator for
//! the whole fleet (never by every appliance, whose commits would then
//! race each other's checkpoints).
//!
//! Per table: a checkpoint of the log (readers then skip replaying every
//! commit), then a full vacuum: files no commit refers to any more, older
//! than the retention period, are deleted. That covers both files removed
//! by republishing and retention, and uploads a crash left without a
//! commit.

use std::time::Duration;

use object_store::ObjectStore;
use std::sync::Arc;

use crate::config::FleetConfig;
use crate::datasets::Dataset;
use crate::error::{Error, Result};
use crate::table::FleetTable;

/// What maintenance did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintained {
    pub table: &'static str,
    pub version: i64,
    pub files_deleted: usize,
}

/// Checkpoints and vacuums every table of the fleet. `retention` keeps
/// unreferenced files that long (a reader may still be reading a removed
/// file; Delta's default is 7 days).
pub async fn maintain(config: &FleetConfig, retention: Duration) -> Result<Vec<Maintained>> {
    config.validate()?;
    let bucket: Arc<dyn ObjectStore> = crate::s3::bucket_store(config)?;
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| Error::Config(format!("retention: {e}")))?;
    let mut out = Vec::new();
    for dataset in Dataset::ALL {
        let table = FleetTable::open(&bucket, config, dataset).await?;
        let version = table.version().unwrap_or(0);
        let delta = table.into_delta();
        deltalake_core::checkpoints::create_checkpoint(&delta, None).await?;
        let (_, metrics) = delta
            .vacuum()
            .with_mode(deltalake_core::operations::vacuum::VacuumMode::Full)
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await?;
        out.push(Maintained {
            table: dataset.name(),
            version,
            files_deleted: metrics.files_deleted.len(),
        });
    }
    Ok(out)
}
