//! The catalog: tenants, buildings, sensors and API keys.
//!
//! Persisted in `<data-dir>/meta.redb`, one table per kind, each record a
//! JSON document under its id. The whole catalog is loaded into memory at
//! open and kept there: reads ([`Catalog::view`]) never touch the disk.
//! Writes are serialised, validated against memory, committed to redb
//! (fsync) and only then applied to memory, so memory never shows a state
//! that is not durable.

mod model;
mod secret;
mod tariffs;
mod view;

use crate::sync::{Recover, RecoverRw};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use model::{
    ApiKey, Building, BuildingPatch, NewApiKey, NewBuilding, NewSensor, Role, Sensor, Tenant, Zone,
};
pub use secret::hash_secret;
use view::CatalogState;
pub use view::CatalogView;

use crate::error::{Error, Result};
use crate::ids::{BuildingId, KeyId, SensorId, SensorKey, TenantId};

type Records = TableDefinition<'static, &'static str, &'static str>;
const TENANTS: Records = TableDefinition::new("tenants");
const BUILDINGS: Records = TableDefinition::new("buildings");
const SENSORS: Records = TableDefinition::new("sensors");
const KEYS: Records = TableDefinition::new("api_keys");

/// Longest name accepted for tenants, buildings and keys.
const MAX_NAME_CHARS: usize = 256;

pub struct Catalog {
    db: Mutex<Database>,
    state: RwLock<CatalogState>,
    /// Bumped by every write, so readers can cache what they derive.
    version: AtomicU64,
    /// Bumped by every tariff change.
    tariff_version: AtomicU64,
}

impl Catalog {
    /// Opens (or creates) `<data_dir>/meta.redb` and loads it into memory.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path: PathBuf = data_dir.join("meta.redb");
        let db = Database::create(&path).map_err(|e| Error::open(path.clone(), e))?;
        let txn = db.begin_write()?;
        for table in [TENANTS, BUILDINGS, SENSORS, KEYS, tariffs::TARIFFS] {
            txn.open_table(table)?;
        }
        txn.commit()?;

        let mut state = CatalogState::default();
        let txn = db.begin_read()?;
        for t in load::<Tenant>(&txn, TENANTS, "tenants")? {
            state.insert_tenant(t);
        }
        for b in load::<Building>(&txn, BUILDINGS, "buildings")? {
            state.insert_building(b);
        }
        for s in load::<Sensor>(&txn, SENSORS, "sensors")? {
            state.insert_sensor(s);
        }
        for k in load::<ApiKey>(&txn, KEYS, "api_keys")? {
            state.insert_key(k);
        }
        for t in load::<crate::tariff::Tariff>(&txn, tariffs::TARIFFS, "tariffs")? {
            state.tariffs.insert(t.key(), t);
        }
        drop(txn);
        Ok(Self {
            db: Mutex::new(db),
            state: RwLock::new(state),
            version: AtomicU64::new(0),
            tariff_version: AtomicU64::new(0),
        })
    }

    /// Changes whenever the catalog does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A read-only view. Cheap; hold it only for the lookups at hand.
    pub fn view(&self) -> CatalogView<'_> {
        CatalogView {
            state: self.state.read_locked(),
        }
    }

    /// Serialises writers, lets `plan` validate against memory and name the
    /// records to write, commits them, then applies `apply` to memory.
    fn write<T>(
        &self,
        plan: impl FnOnce(&CatalogView<'_>) -> Result<(Vec<Put>, T)>,
        apply: impl FnOnce(&mut CatalogState, &T),
    ) -> Result<T> {
        let db = self.db.locked();
        let (puts, out) = plan(&self.view())?;
        let txn = db.begin_write()?;
        for put in &puts {
            let mut table = txn.open_table(put.table)?;
            match &put.json {
                Some(json) => table.insert(put.key.as_str(), json.as_str())?,
                None => table.remove(put.key.as_str())?,
            };
        }
        txn.commit()?;
        apply(&mut self.state.write_locked(), &out);
        self.version.fetch_add(1, Ordering::Release);
        Ok(out)
    }

    /// Writes a consistent copy of the catalog to a new database at `path`.
    pub fn backup_to(&self, path: &Path) -> Result<()> {
        let db = self.db.locked();
        let src = db.begin_read()?;
        let out = Database::create(path).map_err(|e| Error::open(path.to_owned(), e))?;
        let txn = out.begin_write()?;
        for def in [TENANTS, BUILDINGS, SENSORS, KEYS, tariffs::TARIFFS] {
            crate::table_copy::copy_table(&src, &txn, def)?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn create_tenant(&self, id: TenantId, name: String) -> Result<Tenant> {
        check_new_id("tenant", id.as_str())?;
        check_name(&name)?;
        self.write(
            |view| {
                if view.tenant(id.as_str()).is_some() {
                    return Err(exists("tenant", &id));
                }
                let tenant = Tenant { id, name };
                Ok((vec![Put::new(TENANTS, tenant.id.as_str(), &tenant)], tenant))
            },
            |state, t| state.insert_tenant(t.clone()),
        )
    }

    pub fn create_building(&self, new: NewBuilding) -> Result<Building> {
        check_new_id("building", new.id.as_str())?;
        check_name(&new.name)?;
        check_floor_area(new.floor_area_m2)?;
        let timezone = new.timezone.as_deref().map_or(Ok(Zone::UTC), Zone::parse)?;
        self.write(
            |view| {
                if view.tenant(new.tenant_id.as_str()).is_none() {
                    return Err(not_found("tenant", &new.tenant_id));
                }
                if view.building(new.id.as_str()).is_some() {
                    return Err(exists("building", &new.id));
                }
                let b = Building {
                    id: new.id,
                    tenant_id: new.tenant_id,
                    name: new.name,
                    floor_area_m2: new.floor_area_m2,
                    timezone,
                };
                Ok((vec![Put::new(BUILDINGS, b.id.as_str(), &b)], b))
            },
            |state, b| state.insert_building(b.clone()),
        )
    }

    pub fn update_building(&self, id: &BuildingId, patch: BuildingPatch) -> Result<Building> {
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        if let Some(area) = patch.floor_area_m2 {
            check_floor_area(area)?;
        }
        let timezone = patch.timezone.as_deref().map(Zone::parse).transpose()?;
        self.write(
            |view| {
                let mut b = view
                    .building(id.as_str())
                    .cloned()
                    .ok_or_else(|| not_found("building", id))?;
                if let Some(name) = patch.name {
                    b.name = name;
                }
                if let Some(area) = patch.floor_area_m2 {
                    b.floor_area_m2 = area;
                }
                if let Some(tz) = timezone {
                    b.timezone = tz;
                }
                Ok((vec![Put::new(BUILDINGS, b.id.as_str(), &b)], b))
            },
            |state, b| state.insert_building(b.clone()),
        )
    }

    pub fn delete_building(&self, id: &BuildingId) -> Result<()> {
        self.write(
            |view| {
                if view.building(id.as_str()).is_none() {
                    return Err(not_found("building", id));
                }
                if view.sensors_of(id.as_str()).next().is_some() {
                    return Err(Error::BuildingHasSensors(id.to_string()));
                }
                // Its own tariffs go with it.
                let mut puts = vec![Put::delete(BUILDINGS, id.as_str())];
                puts.extend(
                    view.state
                        .tariffs
                        .values()
                        .filter(|t| t.building_id.as_ref() == Some(id))
                        .map(|t| Put::delete(tariffs::TARIFFS, &t.key())),
                );
                Ok((puts, ()))
            },
            |state, ()| {
                state.remove_building(id);
                state
                    .tariffs
                    .retain(|_, t| t.building_id.as_ref() != Some(id));
            },
        )
    }

    pub fn create_sensor(&self, new: NewSensor) -> Result<Sensor> {
        let mut created = self.create_sensors(vec![new])?;
        Ok(created.remove(0))
    }

    /// Creates many sensors in one commit, all or none (bulk provisioning:
    /// one fsync instead of one per sensor).
    pub fn create_sensors(&self, new: Vec<NewSensor>) -> Result<Vec<Sensor>> {
        self.write(
            |view| {
                let sensors = new_sensors(view, new, &HashMap::new(), None, false)?;
                let puts = sensors
                    .iter()
                    .map(|s| Put::new(SENSORS, s.id.as_str(), s))
                    .collect();
                Ok((puts, sensors))
            },
            |state, sensors| {
                for s in sensors {
                    state.insert_sensor(s.clone());
                }
            },
        )
    }

    /// Creates a tenant's buildings and sensors in one commit, all or none:
    /// provisioning a site of thousands of meters in one request. A sensor
    /// names a building of the request or one the tenant has; another
    /// tenant's building is "not found", like a missing one. With
    /// `skip_existing`, ids the tenant already has are left as they are
    /// (loading the same export again creates nothing twice); another
    /// tenant's ids still conflict. Returns what was created.
    pub fn create_many(
        &self,
        tenant: &TenantId,
        buildings: Vec<NewBuilding>,
        sensors: Vec<NewSensor>,
        skip_existing: bool,
    ) -> Result<(Vec<Building>, Vec<Sensor>)> {
        let mut checked = Vec::with_capacity(buildings.len());
        for new in buildings {
            check_new_id("building", new.id.as_str())?;
            check_name(&new.name)?;
            check_floor_area(new.floor_area_m2)?;
            let timezone = new.timezone.as_deref().map_or(Ok(Zone::UTC), Zone::parse)?;
            checked.push(Building {
                id: new.id,
                tenant_id: tenant.clone(),
                name: new.name,
                floor_area_m2: new.floor_area_m2,
                timezone,
            });
        }
        self.write(
            |view| {
                if view.tenant(tenant.as_str()).is_none() {
                    return Err(not_found("tenant", tenant));
                }
                let mut fresh: HashMap<&str, &Building> = HashMap::new();
                let mut created = Vec::with_capacity(checked.len());
                for b in &checked {
                    match view.building(b.id.as_str()) {
                        Some(old) if skip_existing && old.tenant_id == *tenant => continue,
                        Some(_) => return Err(exists("building", &b.id)),
                        None => {}
                    }
                    if fresh.insert(b.id.as_str(), b).is_some() {
                        return Err(exists("building", &b.id));
                    }
                    created.push(b.clone());
                }
                let sensors = new_sensors(view, sensors, &fresh, Some(tenant), skip_existing)?;
                let mut puts: Vec<Put> = created
                    .iter()
                    .map(|b| Put::new(BUILDINGS, b.id.as_str(), b))
                    .collect();
                puts.extend(sensors.iter().map(|s| Put::new(SENSORS, s.id.as_str(), s)));
                Ok((puts, (created, sensors)))
            },
            |state, (buildings, sensors)| {
                for b in buildings {
                    state.insert_building(b.clone());
                }
                for s in sensors {
                    state.insert_sensor(s.clone());
                }
            },
        )
    }

    pub fn set_sensor_active(&self, id: &SensorId, is_active: bool) -> Result<Sensor> {
        self.write(
            |view| {
                let mut s = view
                    .sensor(id.as_str())
                    .cloned()
                    .ok_or_else(|| not_found("sensor", id))?;
                s.is_active = is_active;
                Ok((vec![Put::new(SENSORS, s.id.as_str(), &s)], s))
            },
            |state, s| state.insert_sensor(s.clone()),
        )
    }

    /// Creates a key with a fresh secret; returns the key and the secret,
    /// which is not kept anywhere.
    pub fn create_key(&self, new: NewApiKey) -> Result<(ApiKey, String)> {
        let secret = secret::new_secret()?;
        let key = self.add_key(new, &secret)?;
        Ok((key, secret))
    }

    /// Registers a key for a secret chosen by the operator (for example
    /// `WATTLINE_ADMIN_KEY`). A secret that is already registered is left
    /// as it is and its key returned.
    pub fn add_key(&self, new: NewApiKey, secret: &str) -> Result<ApiKey> {
        check_name(&new.name)?;
        if secret.len() < 16 {
            return Err(Error::InvalidArgument(
                "a key secret must be at least 16 characters long".into(),
            ));
        }
        match (new.role, &new.tenant_id) {
            (Role::Admin, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "an admin key belongs to no tenant; leave tenant_id out".into(),
                ));
            }
            (Role::Tenant | Role::Ingest, None) => {
                return Err(Error::InvalidArgument(
                    "tenant and ingest keys need a tenant_id".into(),
                ));
            }
            _ => {}
        }
        let hash = hash_secret(secret);
        let id = KeyId(secret::new_key_id()?);
        self.write(
            |view| {
                if let Some(existing) = view.key_by_hash(&hash) {
                    return Ok((vec![], existing.clone()));
                }
                if let Some(t) = &new.tenant_id
                    && view.tenant(t.as_str()).is_none()
                {
                    return Err(not_found("tenant", t));
                }
                let key = ApiKey {
                    id,
                    name: new.name,
                    role: new.role,
                    tenant_id: new.tenant_id,
                    secret_sha256: hash,
                    created_ms: crate::now_ms(),
                };
                Ok((vec![Put::new(KEYS, &key.id.0, &key)], key))
            },
            |state, k| state.insert_key(k.clone()),
        )
    }

    pub fn revoke_key(&self, id: &KeyId) -> Result<()> {
        self.write(
            |view| {
                if !view.state.keys.contains_key(id) {
                    return Err(not_found("key", id));
                }
                Ok((vec![Put::delete(KEYS, &id.0)], ()))
            },
            |state, ()| state.remove_key(id),
        )
    }
}

/// One record to write (`json: Some`) or delete (`None`).
struct Put {
    table: Records,
    key: String,
    json: Option<String>,
}

impl Put {
    fn new(table: Records, key: &str, value: &impl Serialize) -> Self {
        Self {
            table,
            key: key.to_owned(),
            json: Some(serde_json::to_string(value).expect("catalog records serialise")),
        }
    }

    fn delete(table: Records, key: &str) -> Self {
        Self {
            table,
            key: key.to_owned(),
            json: None,
        }
    }
}

fn load<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    def: Records,
    name: &'static str,
) -> Result<Vec<T>> {
    let table = txn.open_table(def)?;
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        let record = serde_json::from_str(v.value()).map_err(|e| Error::CatalogCorrupt {
            table: name,
            key: k.value().to_owned(),
            reason: e.to_string(),
        })?;
        out.push(record);
    }
    Ok(out)
}

fn exists(kind: &'static str, id: &impl ToString) -> Error {
    Error::AlreadyExists {
        kind,
        id: id.to_string(),
    }
}

fn not_found(kind: &'static str, id: &impl ToString) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// Validates `new` sensors against the catalog (and buildings being created
/// with them, `fresh`), numbering them from the next free key. With
/// `tenant`, only that tenant's buildings may be named; with
/// `skip_existing`, sensors the tenant already has are left out.
fn new_sensors(
    view: &CatalogView<'_>,
    new: Vec<NewSensor>,
    fresh: &HashMap<&str, &Building>,
    tenant: Option<&TenantId>,
    skip_existing: bool,
) -> Result<Vec<Sensor>> {
    let mut seen = std::collections::HashSet::new();
    let mut sensors = Vec::with_capacity(new.len());
    let mut next_key = view.state.next_sensor_key;
    for n in new {
        if skip_existing
            && let Some(old) = view.sensor(n.id.as_str())
            && tenant.is_some_and(|t| old.tenant_id == *t)
        {
            continue;
        }
        check_new_id("sensor", n.id.as_str())?;
        n.meter.validate()?;
        let kind = n.kind.unwrap_or_else(|| "electricity".into());
        let unit = n.unit.unwrap_or_else(|| n.meter.meter_type.unit().into());
        for (what, v) in [("kind", &kind), ("unit", &unit)] {
            if v.is_empty() || v.chars().count() > 64 {
                return Err(Error::InvalidArgument(format!(
                    "{what} must be 1 to 64 characters"
                )));
            }
        }
        let building = fresh
            .get(n.building_id.as_str())
            .copied()
            .or_else(|| view.building(n.building_id.as_str()))
            .filter(|b| tenant.is_none_or(|t| b.tenant_id == *t))
            .ok_or_else(|| not_found("building", &n.building_id))?;
        if view.sensor(n.id.as_str()).is_some() || !seen.insert(n.id.clone()) {
            return Err(exists("sensor", &n.id));
        }
        sensors.push(Sensor {
            id: n.id,
            key: SensorKey(next_key),
            building_id: building.id.clone(),
            tenant_id: building.tenant_id.clone(),
            kind,
            unit,
            is_active: n.is_active.unwrap_or(true),
            meter: n.meter,
        });
        next_key += 1;
    }
    Ok(sensors)
}

/// A new id must also work as one segment of a URL path: `.` and `..`
/// (any id of dots only) are valid characters but would be resolved away
/// by browsers and HTTP clients, making the object unreachable. Checked
/// only at creation, so a catalog that already holds one still loads.
fn check_new_id(what: &str, id: &str) -> Result<()> {
    if id.chars().all(|c| c == '.') {
        return Err(Error::InvalidArgument(format!(
            "a {what} id of dots only ({id:?}) cannot be used in addresses"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidArgument(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters and not blank"
        )));
    }
    Ok(())
}

fn check_floor_area(area: Option<f64>) -> Result<()> {
    match area {
        Some(a) if !a.is_finite() || a < 0.0 => Err(Error::InvalidArgument(format!(
            "floor_area_m2 must be a finite number >= 0, not {a}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }
    fn bid(s: &str) -> BuildingId {
        BuildingId::parse(s).unwrap()
    }
    fn sid(s: &str) -> SensorId {
        SensorId::parse(s).unwrap()
    }

    fn building(id: &str, tenant: &str, tz: Option<&str>) -> NewBuilding {
        NewBuilding {
            id: bid(id),
            tenant_id: tid(tenant),
            name: format!("Building {id}"),
            floor_area_m2: Some(100.0),
            timezone: tz.map(str::to_owned),
        }
    }

    fn sensor(id: &str, building: &str) -> NewSensor {
        NewSensor {
            id: sid(id),
            building_id: bid(building),
            kind: None,
            unit: None,
            is_active: None,
            meter: Default::default(),
        }
    }

    #[test]
    fn persists_everything_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let secret;
        {
            let c = Catalog::open(dir.path()).unwrap();
            c.create_tenant(tid("t1"), "One".into()).unwrap();
            c.create_building(building("b1", "t1", Some("Europe/Berlin")))
                .unwrap();
            c.create_sensor(sensor("s1", "b1")).unwrap();
            c.create_sensor(sensor("s2", "b1")).unwrap();
            c.set_sensor_active(&sid("s2"), false).unwrap();
            let (_, s) = c
                .create_key(NewApiKey {
                    name: "ingest".into(),
                    role: Role::Ingest,
                    tenant_id: Some(tid("t1")),
                })
                .unwrap();
            secret = s;
        }
        let c = Catalog::open(dir.path()).unwrap();
        let v = c.view();
        assert_eq!(v.tenant("t1").unwrap().name, "One");
        assert_eq!(v.building("b1").unwrap().timezone.name(), "Europe/Berlin");
        let counts: Vec<_> = v
            .buildings_with_active_sensor_counts("t1")
            .map(|(b, n)| (b.id.to_string(), n))
            .collect();
        assert_eq!(counts, vec![("b1".to_string(), 1)]);
        assert_eq!(v.sensor("s1").unwrap().key, SensorKey(0));
        assert_eq!(v.sensor("s2").unwrap().key, SensorKey(1));
        assert_eq!(v.sensor_by_key(SensorKey(1)).unwrap().id.as_str(), "s2");
        let key = v.key_by_hash(&hash_secret(&secret)).unwrap();
        assert_eq!(key.role, Role::Ingest);
    }

    #[test]
    fn refuses_new_ids_of_dots_only_but_keeps_dotted_ids() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        for id in [".", ".."] {
            assert!(matches!(
                c.create_tenant(tid(id), "Dots".into()),
                Err(Error::InvalidArgument(_))
            ));
        }
        c.create_tenant(tid("t.1"), "One".into()).unwrap();
        assert!(matches!(
            c.create_building(building("..", "t.1", None)),
            Err(Error::InvalidArgument(_))
        ));
        c.create_building(building("b..1", "t.1", None)).unwrap();
        assert!(matches!(
            c.create_sensors(vec![sensor("s1", "b..1"), sensor("...", "b..1")]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(c.view().sensor("s1").is_none(), "all or none");
        c.create_sensor(sensor(".s", "b..1")).unwrap();
    }

    #[test]
    fn refuses_conflicts_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        c.create_tenant(tid("t1"), "One".into()).unwrap();
        assert!(matches!(
            c.create_tenant(tid("t1"), "Again".into()),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            c.create_building(building("b1", "nope", None)),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            c.create_building(building("b1", "t1", Some("Mars/Olympus"))),
            Err(Error::InvalidTimezone(_))
        ));
        c.create_building(building("b1", "t1", None)).unwrap();
        assert_eq!(c.view().building("b1").unwrap().timezone.name(), "UTC");
        c.create_sensor(sensor("s1", "b1")).unwrap();
        assert!(matches!(
            c.delete_building(&bid("b1")),
            Err(Error::BuildingHasSensors(_))
        ));
        assert!(matches!(
            c.create_sensor(sensor("s1", "b1")),
            Err(Error::AlreadyExists { .. })
        ));
        c.create_building(building("b2", "t1", None)).unwrap();
        c.delete_building(&bid("b2")).unwrap();
        assert!(c.view().building("b2").is_none());
    }

    #[test]
    fn revoked_keys_stop_matching() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let (key, secret) = c
            .create_key(NewApiKey {
                name: "root".into(),
                role: Role::Admin,
                tenant_id: None,
            })
            .unwrap();
        c.revoke_key(&key.id).unwrap();
        assert!(c.view().key_by_hash(&hash_secret(&secret)).is_none());
        assert!(matches!(c.revoke_key(&key.id), Err(Error::NotFound { .. })));
    }
}
