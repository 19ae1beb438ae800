//! Fleet publishing: each site's data as Delta Lake tables on
//! S3-compatible storage, so that an existing distributed engine (Trino,
//! Spark, Athena, ClickHouse, DuckDB) answers questions across all sites.
//!
//! - [`config`]: the `[fleet]` settings (site, bucket, credentials).
//! - [`s3`]: the object store, built here rather than through delta-rs's
//!   AWS crate (which brings the AWS SDK and another `time`).
//! - [`datasets`]: the four tables (raw readings, sensor hours, building
//!   days and months), their schemas and the local rows of one unit.
//! - [`table`]: one Delta table: created if missing, the site's files,
//!   commits retried with jitter when another site committed first;
//!   `markers` follows the site's transaction markers through its log.
//! - [`publisher`]: the loop that turns the store's change feed into
//!   commits, idempotent by the Delta transaction marker it carries.
//! - [`maintain`]: checkpoints and vacuum, run by `wattline fleet maintain`
//!   only, never by every appliance.
//!
//! Every table is shared by all sites and partitioned by `site` and
//! `month`; an appliance writes and removes only files of its own site.

pub mod config;
pub mod datasets;
mod error;
pub mod maintain;
mod markers;
pub mod publisher;
pub mod s3;
mod site_file;
pub mod table;

pub use config::FleetConfig;
/// The Delta library, for callers building their own commits.
pub use deltalake_core;
pub use error::{Error, Result};
pub use publisher::Publisher;
