//! The in-memory catalog and its read methods.
//!
//! Readers hold a [`CatalogView`] (a read guard) for the few microseconds a
//! lookup takes; the indexes below make every read a map lookup or a scan of
//! exactly the objects asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLockReadGuard;

use super::model::{ApiKey, Building, Sensor, Tenant};
use crate::ids::{BuildingId, KeyId, SensorId, SensorKey, TenantId};
use crate::tariff::Tariff;

#[derive(Debug, Default)]
pub(crate) struct CatalogState {
    pub(crate) tenants: BTreeMap<TenantId, Tenant>,
    pub(crate) buildings: BTreeMap<BuildingId, Building>,
    pub(crate) buildings_by_tenant: BTreeMap<TenantId, BTreeSet<BuildingId>>,
    pub(crate) sensors: HashMap<SensorId, Sensor>,
    pub(crate) sensors_by_building: BTreeMap<BuildingId, BTreeSet<SensorId>>,
    pub(crate) sensor_ids_by_key: HashMap<SensorKey, SensorId>,
    pub(crate) keys: BTreeMap<KeyId, ApiKey>,
    pub(crate) key_ids_by_hash: HashMap<String, KeyId>,
    /// One past the largest sensor key in use.
    pub(crate) next_sensor_key: u32,
    pub(crate) tariffs: BTreeMap<String, Tariff>,
}

impl CatalogState {
    pub(crate) fn insert_tenant(&mut self, t: Tenant) {
        self.buildings_by_tenant.entry(t.id.clone()).or_default();
        self.tenants.insert(t.id.clone(), t);
    }

    pub(crate) fn insert_building(&mut self, b: Building) {
        self.buildings_by_tenant
            .entry(b.tenant_id.clone())
            .or_default()
            .insert(b.id.clone());
        self.sensors_by_building.entry(b.id.clone()).or_default();
        self.buildings.insert(b.id.clone(), b);
    }

    pub(crate) fn remove_building(&mut self, id: &BuildingId) {
        if let Some(b) = self.buildings.remove(id) {
            if let Some(set) = self.buildings_by_tenant.get_mut(&b.tenant_id) {
                set.remove(id);
            }
            self.sensors_by_building.remove(id);
        }
    }

    pub(crate) fn insert_sensor(&mut self, s: Sensor) {
        self.sensors_by_building
            .entry(s.building_id.clone())
            .or_default()
            .insert(s.id.clone());
        self.sensor_ids_by_key.insert(s.key, s.id.clone());
        self.next_sensor_key = self.next_sensor_key.max(s.key.0 + 1);
        self.sensors.insert(s.id.clone(), s);
    }

    pub(crate) fn insert_key(&mut self, k: ApiKey) {
        self.key_ids_by_hash
            .insert(k.secret_sha256.clone(), k.id.clone());
        self.keys.insert(k.id.clone(), k);
    }

    pub(crate) fn remove_key(&mut self, id: &KeyId) {
        if let Some(k) = self.keys.remove(id) {
            self.key_ids_by_hash.remove(&k.secret_sha256);
        }
    }
}

/// A consistent read-only view of the catalog. Hold it briefly: writers wait
/// while any view is alive.
pub struct CatalogView<'a> {
    pub(crate) state: RwLockReadGuard<'a, CatalogState>,
}

impl CatalogView<'_> {
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.state.tenants.get(id)
    }

    pub fn tariff(&self, tenant: &str, id: &str) -> Option<&Tariff> {
        self.state
            .tariffs
            .get(&crate::tariff::tariff_key(tenant, id))
    }

    /// A tenant's tariffs (its buildings' own too), by id.
    pub fn tariffs_of<'s>(&'s self, tenant: &'s str) -> impl Iterator<Item = &'s Tariff> + Clone {
        self.state
            .tariffs
            .values()
            .filter(move |t| t.tenant_id.as_str() == tenant)
    }

    /// The tariff in effect for `building` on its local day `day`.
    pub fn tariff_for(&self, building: &Building, day: chrono::NaiveDate) -> Option<&Tariff> {
        crate::tariff::tariff_for(
            self.state.tariffs.values(),
            building.tenant_id.as_str(),
            building.id.as_str(),
            day,
        )
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.state.tenants.values()
    }

    pub fn building(&self, id: &str) -> Option<&Building> {
        self.state.buildings.get(id)
    }

    /// The tenant's buildings in id order, each with its number of active
    /// sensors: one pass over the tenant's own buildings and sensors.
    pub fn buildings_with_active_sensor_counts(
        &self,
        tenant: &str,
    ) -> impl Iterator<Item = (&Building, usize)> {
        self.buildings_of(tenant).map(|b| {
            let active = self
                .sensors_of(b.id.as_str())
                .filter(|s| s.is_active)
                .count();
            (b, active)
        })
    }

    /// The tenant's buildings in id order.
    pub fn buildings_of(&self, tenant: &str) -> impl Iterator<Item = &Building> {
        self.state
            .buildings_by_tenant
            .get(tenant)
            .into_iter()
            .flatten()
            .filter_map(|id| self.state.buildings.get(id))
    }

    /// Every sensor, in no particular order.
    pub fn sensors(&self) -> impl Iterator<Item = &Sensor> {
        self.state.sensors.values()
    }

    /// The building's sensors in id order.
    pub fn sensors_of(&self, building: &str) -> impl Iterator<Item = &Sensor> {
        self.state
            .sensors_by_building
            .get(building)
            .into_iter()
            .flatten()
            .filter_map(|id| self.state.sensors.get(id))
    }

    pub fn sensor(&self, id: &str) -> Option<&Sensor> {
        self.state.sensors.get(id)
    }

    pub fn sensor_by_key(&self, key: SensorKey) -> Option<&Sensor> {
        self.state
            .sensor_ids_by_key
            .get(&key)
            .and_then(|id| self.state.sensors.get(id))
    }

    /// The key whose secret hashes to `secret_sha256`, if any.
    pub fn key_by_hash(&self, secret_sha256: &str) -> Option<&ApiKey> {
        self.state
            .key_ids_by_hash
            .get(secret_sha256)
            .and_then(|id| self.state.keys.get(id))
    }

    pub fn keys(&self) -> impl Iterator<Item = &ApiKey> {
        self.state.keys.values()
    }
}
