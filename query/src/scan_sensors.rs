//! Which sensors a `readings` scan reads: the scope's tenant narrowed by
//! the filters' sensors and buildings, and among them the meters whose
//! energy is derived. Decided from the in-memory catalog, before any file
//! is opened, so no scan reads another tenant's rows.

use std::collections::{BTreeMap, HashSet};

use wattline_storage::{CatalogView, Meter, SensorKey};

use crate::filters::ScanBounds;
use crate::scope::Scope;

/// The sensors one scan reads.
pub(crate) enum Wanted {
    All,
    Only(HashSet<SensorKey>),
    AllBut(HashSet<SensorKey>),
}

impl Wanted {
    pub(crate) fn from(wanted: Option<HashSet<SensorKey>>) -> Self {
        wanted.map_or(Self::All, Self::Only)
    }

    /// `wanted` (`None`: all) without `these`.
    pub(crate) fn except(wanted: Option<HashSet<SensorKey>>, these: HashSet<SensorKey>) -> Self {
        match wanted {
            Some(keys) => Self::Only(keys.difference(&these).copied().collect()),
            None => Self::AllBut(these),
        }
    }

    pub(crate) fn accepts(&self, key: SensorKey) -> bool {
        match self {
            Self::All => true,
            Self::Only(keys) => keys.contains(&key),
            Self::AllBut(keys) => !keys.contains(&key),
        }
    }

    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self, Self::Only(keys) if keys.is_empty())
    }
}

/// The sensors a scan may return: the scope's tenant and the filters'
/// sensors and buildings. `None`: all sensors.
pub(crate) fn wanted_sensors(
    view: &CatalogView<'_>,
    scope: &Scope,
    b: &ScanBounds,
) -> Option<HashSet<SensorKey>> {
    if scope.restricted_to().is_none() && b.sensors.is_none() && b.buildings.is_none() {
        return None;
    }
    let ok = |s: &wattline_storage::Sensor| {
        scope.sees(s.tenant_id.as_str())
            && b.buildings
                .as_ref()
                .is_none_or(|set| set.contains(s.building_id.as_str()))
    };
    let keys = match (&b.sensors, &b.buildings, scope.restricted_to()) {
        (Some(ids), _, _) => ids
            .iter()
            .filter_map(|id| view.sensor(id))
            .filter(|s| ok(s))
            .map(|s| s.key)
            .collect(),
        (None, Some(buildings), _) => buildings
            .iter()
            .flat_map(|b| view.sensors_of(b))
            .filter(|s| ok(s))
            .map(|s| s.key)
            .collect(),
        (None, None, Some(t)) => view
            .buildings_of(t)
            .flat_map(|b| view.sensors_of(b.id.as_str()))
            .map(|s| s.key)
            .collect(),
        (None, None, None) => return None,
    };
    Some(keys)
}

/// The sensors among those a scan may return (`wanted`, `None`: all the
/// scope sees) whose energy is derived, by id.
pub(crate) fn metered(
    view: &CatalogView<'_>,
    scope: &Scope,
    wanted: Option<&HashSet<SensorKey>>,
) -> BTreeMap<String, (SensorKey, Meter)> {
    let derived = |s: &&wattline_storage::Sensor| !s.meter.counts_as_sent();
    let entry = |s: &wattline_storage::Sensor| (s.id.to_string(), (s.key, s.meter));
    match wanted {
        Some(keys) => keys
            .iter()
            .filter_map(|k| view.sensor_by_key(*k))
            .filter(derived)
            .map(entry)
            .collect(),
        None => view
            .sensors()
            .filter(|s| scope.sees(s.tenant_id.as_str()))
            .filter(derived)
            .map(entry)
            .collect(),
    }
}
