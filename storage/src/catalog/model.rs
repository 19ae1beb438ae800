//! Catalog records: what is stored in `meta.redb` (as JSON) and served from
//! memory.

use serde::{Deserialize, Serialize};

use crate::ids::{BuildingId, KeyId, SensorId, SensorKey, TenantId};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read and manage one tenant's objects.
    Tenant,
    /// Only write readings for one tenant's sensors.
    Ingest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Building {
    pub id: BuildingId,
    pub tenant_id: TenantId,
    pub name: String,
    pub floor_area_m2: Option<f64>,
    /// IANA zone name, validated on every write.
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    pub id: SensorId,
    /// Compact number used by the write-ahead and the memtables.
    pub key: SensorKey,
    pub building_id: BuildingId,
    /// Denormalised from the building (a building never changes tenant), so
    /// that ingestion checks ownership with one lookup.
    pub tenant_id: TenantId,
    pub kind: String,
    pub unit: String,
    pub is_active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
    /// Hex SHA-256 of the secret; the secret itself is never stored.
    pub secret_sha256: String,
    /// Creation time, epoch milliseconds.
    pub created_ms: i64,
}

/// Input for [`crate::Catalog::create_building`].
#[derive(Debug, Clone)]
pub struct NewBuilding {
    pub id: BuildingId,
    pub tenant_id: TenantId,
    pub name: String,
    pub floor_area_m2: Option<f64>,
    pub timezone: Option<String>,
}

/// Changes for [`crate::Catalog::update_building`]; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct BuildingPatch {
    pub name: Option<String>,
    /// `Some(None)` clears the floor area.
    pub floor_area_m2: Option<Option<f64>>,
    pub timezone: Option<String>,
}

/// Input for [`crate::Catalog::create_sensor`].
#[derive(Debug, Clone)]
pub struct NewSensor {
    pub id: SensorId,
    pub building_id: BuildingId,
    pub kind: Option<String>,
    pub unit: Option<String>,
    pub is_active: Option<bool>,
}

/// Input for [`crate::Catalog::create_key`].
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
}
