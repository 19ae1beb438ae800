//! Catalog records: what is stored in `meta.redb` (as JSON) and served from
//! memory.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::{BuildingId, KeyId, SensorId, SensorKey, TenantId};
use crate::meter::Meter;

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
    /// Its IANA time zone (validated; a record with an unknown zone does
    /// not load).
    pub timezone: Zone,
}

/// A valid IANA time zone, stored and shown by its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Zone(Tz);

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    /// The zone named `name`, or [`crate::Error::InvalidTimezone`].
    pub fn parse(name: &str) -> crate::Result<Self> {
        name.parse::<Tz>()
            .map(Zone)
            .map_err(|_| crate::Error::InvalidTimezone(name.to_owned()))
    }

    pub fn tz(self) -> Tz {
        self.0
    }

    /// The canonical IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Zone {
    type Error = crate::Error;

    fn try_from(name: String) -> crate::Result<Self> {
        Zone::parse(&name)
    }
}

impl From<Zone> for String {
    fn from(zone: Zone) -> String {
        zone.name().to_owned()
    }
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
    /// How it reports (records from before meter types are `interval`).
    #[serde(default)]
    pub meter: Meter,
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
    pub meter: Meter,
}

/// Input for [`crate::Catalog::create_key`].
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<TenantId>,
}
