//! wattline's read side: Apache DataFusion over the storage engine.
//!
//! - [`QueryEngine`] runs read-only SQL (and the raw-readings lookup)
//!   within a [`Scope`]: one tenant's rows, or all for admins.
//! - The `readings` table unions hot memtables and cold chunk files,
//!   deduplicated newest-first, pruning by time, sensor and building.
//! - `tenants`, `buildings` and `sensors` are built from the in-memory
//!   catalog per query; `building_hourly`, `building_daily` and
//!   `building_monthly` from the in-memory rollups; `sensor_hourly` reads
//!   its Parquet partitions.
//! - `readings` and `sensor_hourly` read shared files through
//!   `scoped_scan`, the tenant wall: a plan leaf that keeps the caller's
//!   rows before any expression of the query sees one.
//! - The read-only guard (`guard`) checks the logical plan, not the SQL
//!   text; `complexity` caps SQL size and nesting before parsing;
//!   `join_budget` bounds join output and `bounded_functions` the strings
//!   functions build.
//! - `quarter_hours`: a building's 15-minute energy from raw readings.
//! - `postgres`: what PostgreSQL clients need besides (statement types
//!   before running, bound parameters, catalog views, session functions).

mod alert_tables;
mod bounded_functions;
mod catalog_tables;
mod complexity;
mod derived_readings;
mod error;
mod filters;
#[cfg(test)]
mod fuzz_tests;
mod gaps_table;
mod guard;
mod join_budget;
mod lazy_table;
#[cfg(test)]
mod partition_scan_tests;
mod pg_attribute;
mod pg_catalog;
mod pg_rewrite;
mod pinned_scan;
mod postgres;
mod quarter_hours;
mod query_engine;
mod query_runtimes;
mod readings_table;
pub mod report;
mod rollup_tables;
mod scan_sensors;
mod scope;
mod scoped_scan;
#[cfg(test)]
mod test_fixture;

pub use error::{QueryError, Result, SqlPosition};
pub use pg_attribute::type_oid as pg_type_oid;
pub use postgres::{DATABASE, Described, SERVER_VERSION, SETTINGS};
pub use query_engine::{QueryEngine, QueryLimits, QueryOutput, SensorReadings};
pub use scope::Scope;
