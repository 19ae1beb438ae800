//! wattline's storage engine.
//!
//! Everything that touches the data directory lives here, and nothing here
//! knows about HTTP or SQL:
//!
//! - [`Catalog`]: tenants, buildings, sensors and API keys, persisted in
//!   `meta.redb` and mirrored in memory so that no request pays a disk lookup
//!   for metadata.
//! - [`ReadingStore`]: the readings. A validated [`ReadingBatch`] is
//!   appended to the write-ahead (`wal.redb`) by a single writer thread that
//!   groups concurrent batches into one fsynced commit (group commit), then
//!   applied to the active [`Memtable`], and only then acknowledged. A flush
//!   writes memtables out as zstd Parquet chunk files and trims the
//!   write-ahead in the same manifest commit; compaction merges a day's
//!   files; retention drops old ones. On open, the manifest is loaded and
//!   the write-ahead replayed before the store is handed out.
//!
//! Modules, bottom-up (each uses only those above it in this list):
//! `ids`, `error`, `sync` (the poisoned-lock policy), `table_copy`, `faults` (test fail
//! points), `reading`, `tree` (fsync of folders, durable copies),
//! `catalog`, `memtable`, `chunk` (Parquet chunk files), `tiers`
//! (memtables and chunks, snapshots), `wal` (codec, database handle and
//! fsync guard, dirty marks, writer thread), `manifest`, `rollup`, `alerts`
//! (rules, evaluation, outbox), `reports` (report jobs and their result
//! files), and `store`, which wires them into [`ReadingStore`].
//!
//! Data directory layout:
//!
//! ```text
//! <data-dir>/meta.redb                 catalog (tenants, buildings, sensors, key hashes)
//! <data-dir>/alerts.redb               alert rules, episode state, events, delivery outbox
//! <data-dir>/reports.redb              report jobs
//! <data-dir>/reports/                  report results (<job id>.pdf|csv|json)
//! <data-dir>/wal.redb                  write-ahead (sequence -> batch) and chunk manifest
//! <data-dir>/chunks/readings/day=D/    raw readings of UTC day D, Parquet
//! <data-dir>/chunks/open/              readers' hard links of the chunk files
//! <data-dir>/chunks/rollups/           rollup tables, Parquet
//! <data-dir>/admin.key                 the first admin key, mode 0600
//! ```

mod alerts;
mod catalog;
mod check;
mod chunk;
mod error;
#[cfg(test)]
mod fault_tests;
mod faults;
mod ids;
mod kwh;
mod last_seen;
mod manifest;
mod memtable;
mod meter;
mod quality;
mod reading;
mod reports;
mod rollup;
mod store;
mod sync;
mod table_copy;
mod tariff;
#[cfg(test)]
mod test_util;
mod tiers;
mod tree;
mod wal;

pub use alerts::{
    AlertEvent, AlertRule, AlertStore, Delivery, Due, EvalSettings, EventKind, NewRule, PassReport,
    Recipient, RuleKind, RulePatch, Silence, is_mail_address,
};
pub use catalog::{
    ApiKey, Building, BuildingPatch, Catalog, CatalogView, NewApiKey, NewBuilding, NewSensor, Role,
    Sensor, Tenant, Zone, hash_secret,
};
pub use check::{CheckReport, Problem, check_data_dir};
pub use chunk::{
    ChunkFile, ChunkMeta, SensorNames, merge_newest_wins, read_chunk, readings_schema,
    spans_overlap, to_record_batch,
};
pub use error::{Error, Result};
pub use ids::{BuildingId, IdError, KeyId, SensorId, SensorKey, TenantId, WalSequence};
pub use kwh::{kwh_sum, round_kwh};
pub use last_seen::{LastSeen, LastSeenReader};
pub use memtable::Memtable;
pub use meter::{
    DEFAULT_MAX_GAP_MS, Derived, MAX_GAP_LIMIT_MS, Meter, MeterType, Quality, derive, reach_ms,
};
pub use quality::{bucket_end, coverage};
pub use reading::{DAY_MS, day_of};
pub use reading::{Reading, ReadingBatch, TimeRange};
pub use reports::{JobStatus, ReportFormat, ReportJob, ReportRequest, ReportStore};
pub use rollup::calendar::{day_start, format_local};
pub use rollup::{
    Agg, DayChange, PinnedPartition, PinnedPartitions, QUARTER_DAYS, Resolution, RollupRow,
    RollupTable, Rollups, WindowReader, WindowSpan, from_days, rollup_batch,
};
pub use store::{BackupReport, FlushReport, MAX_HOT_READINGS, ReadingStore, RecoveryReport};
pub use sync::{Recover, RecoverRw};
pub use tariff::{Day, Period, Tariff, tariff_key};
pub use tiers::Snapshot;
pub use tree::{Transfer, copy_tree};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
