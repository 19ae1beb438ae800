//! wattline's storage engine.
//!
//! Everything that touches the data directory lives here, and nothing here
//! knows about HTTP or SQL:
//!
//! - [`Catalog`]: tenants, buildings, sensors and API keys, persisted in
//!   `meta.redb` and mirrored in memory so that no request pays a disk lookup
//!   for metadata.
//! - [`ReadingStore`]: the write path for meter readings. A validated
//!   [`ReadingBatch`] is appended to the write-ahead (`wal.redb`) by a single
//!   writer thread that groups concurrent batches into one fsynced commit
//!   (group commit), then applied to the in-memory [`HotBuffer`], and only
//!   then acknowledged. On open, the write-ahead is replayed into the hot
//!   buffer before the store is handed out.
//!
//! Data directory layout:
//!
//! ```text
//! <data-dir>/meta.redb   catalog (tenants, buildings, sensors, key hashes)
//! <data-dir>/wal.redb    write-ahead: sequence number -> encoded batch
//! <data-dir>/admin.key   the first admin key, mode 0600
//! ```

mod catalog;
mod error;
mod hot;
mod ids;
mod reading;
mod store;
mod wal;

pub use catalog::{
    ApiKey, Building, BuildingPatch, Catalog, CatalogView, NewApiKey, NewBuilding, NewSensor, Role,
    Sensor, Tenant, hash_secret,
};
pub use error::{Error, Result};
pub use hot::{HotBuffer, SeriesSlice};
pub use ids::{BuildingId, IdError, KeyId, SensorId, SensorKey, TenantId};
pub use reading::{Reading, ReadingBatch, TimeRange};
pub use store::{ReadingStore, RecoveryReport};
pub use wal::WalSequence;
