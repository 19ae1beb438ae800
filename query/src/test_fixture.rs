//! What the query crate's tests set up alike: tenants with one building
//! of one sensor each, and limits no test reaches.

use std::time::Duration;

use wattline_storage::{BuildingId, Catalog, NewBuilding, NewSensor, SensorId, TenantId};

use crate::QueryLimits;

/// Creates tenant `tenant` with building `building` holding sensor
/// `sensor` (an interval meter).
pub(crate) fn add_sensor(catalog: &Catalog, tenant: &str, building: &str, sensor: &str) {
    catalog
        .create_tenant(TenantId::parse(tenant).unwrap(), tenant.into())
        .unwrap();
    catalog
        .create_building(NewBuilding {
            id: BuildingId::parse(building).unwrap(),
            tenant_id: TenantId::parse(tenant).unwrap(),
            name: building.into(),
            floor_area_m2: None,
            timezone: None,
        })
        .unwrap();
    catalog
        .create_sensor(NewSensor {
            id: SensorId::parse(sensor).unwrap(),
            building_id: BuildingId::parse(building).unwrap(),
            kind: None,
            unit: None,
            is_active: None,
            meter: Default::default(),
        })
        .unwrap();
}

/// Limits generous for a test's few rows.
pub(crate) fn limits() -> QueryLimits {
    QueryLimits {
        timeout: Duration::from_secs(10),
        memory_limit: 256 << 20,
        max_rows: 10_000,
        max_concurrent: 2,
        max_concurrent_per_tenant: None,
        max_join_rows: 1_000_000,
    }
}
