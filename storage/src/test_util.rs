//! Helpers for this crate's tests.

use std::path::Path;
use std::sync::Arc;

use crate::catalog::{Catalog, NewBuilding, NewSensor};
use crate::ids::{BuildingId, SensorId, TenantId};

/// A catalog in `dir` with tenant `t`, building `b` and sensors `s0`..,
/// whose keys are 0, 1, ...
pub(crate) fn catalog_with_sensors(dir: &Path, sensors: u32) -> Arc<Catalog> {
    let c = Catalog::open(dir).unwrap();
    c.create_tenant(TenantId::parse("t").unwrap(), "T".into())
        .unwrap();
    c.create_building(NewBuilding {
        id: BuildingId::parse("b").unwrap(),
        tenant_id: TenantId::parse("t").unwrap(),
        name: "B".into(),
        floor_area_m2: None,
        timezone: None,
    })
    .unwrap();
    let new = (0..sensors)
        .map(|i| NewSensor {
            id: SensorId::parse(&format!("s{i}")).unwrap(),
            building_id: BuildingId::parse("b").unwrap(),
            kind: None,
            unit: None,
            is_active: None,
            meter: Default::default(),
        })
        .collect();
    c.create_sensors(new).unwrap();
    Arc::new(c)
}

/// A batch of `(sensor key, ts_ms, value_kwh)` readings.
pub(crate) fn batch(rows: &[(u32, i64, f64)]) -> crate::reading::ReadingBatch {
    crate::reading::ReadingBatch {
        readings: rows
            .iter()
            .map(|&(s, t, v)| crate::reading::Reading {
                sensor: crate::ids::SensorKey(s),
                ts_ms: t,
                value_kwh: v,
            })
            .collect(),
    }
}
