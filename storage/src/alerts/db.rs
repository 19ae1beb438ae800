//! [`AlertStore`]: rules, events, episode state and the delivery outbox in
//! `<data-dir>/alerts.redb`.
//!
//! Rules are mirrored in memory (evaluation and the API read no disk).
//! An evaluation pass commits its events, their outbox rows and the
//! rules' episode state in one transaction, so an event is either fully
//! recorded and queued for every recipient or not at all, and a restart
//! neither repeats nor loses one. The deliverer removes an outbox row
//! only once the recipient has taken the event.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::episodes::RuleState;
use super::model::{AlertEvent, AlertRule, NewRule, Recipient, RulePatch};
use crate::error::{Error, Result};
use crate::sync::{Recover, RecoverRw};
use crate::table_copy::copy_table;

pub(super) const RULES: TableDefinition<&str, &str> = TableDefinition::new("rules");
pub(super) const RULE_STATE: TableDefinition<&str, &str> = TableDefinition::new("rule_state");
pub(super) const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("events");
/// (building id, event id) -> (): a building's events in order.
pub(super) const BUILDING_EVENTS: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("building_events");
/// (event id, recipient key) -> delivery state: what is still to deliver.
pub(super) const OUTBOX: TableDefinition<(u64, &str), &str> = TableDefinition::new("outbox");
/// Deliveries given up on, with their last state, for the record.
pub(super) const FAILED: TableDefinition<(u64, &str), &str> = TableDefinition::new("failed");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Rules one building may have (bounds what one tenant adds to a pass).
const MAX_RULES_PER_BUILDING: usize = 100;

/// Where a delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub attempts: u32,
    /// Not before this instant (UTC ms).
    pub next_ms: i64,
    /// Set once the recipient refused for good (the row then moves to the
    /// failed deliveries).
    pub failed: bool,
    pub last_error: Option<String>,
}

/// One outbox row that is due.
#[derive(Debug, Clone)]
pub struct Due {
    pub event: AlertEvent,
    pub recipient: Recipient,
    pub delivery: Delivery,
}

pub struct AlertStore {
    pub(super) db: Database,
    pub(super) rules: RwLock<BTreeMap<String, Arc<AlertRule>>>,
    /// Per rule: the rule itself (what a pass iterates, without a lookup
    /// per rule), its episode state as last committed, and evaluation
    /// caches. Exactly the rules of `rules`.
    pub(super) states: Mutex<HashMap<String, RuleState>>,
    /// One writer of rules at a time (ids, validation against memory).
    write: Mutex<()>,
}

fn corrupt(table: &'static str, key: impl ToString, e: impl ToString) -> Error {
    Error::CatalogCorrupt {
        table,
        key: key.to_string(),
        reason: e.to_string(),
    }
}

pub(super) fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("alert records serialise")
}

impl AlertStore {
    /// Opens (or creates) `<data_dir>/alerts.redb`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("alerts.redb");
        let db = Database::create(&path).map_err(|e| Error::open(path.clone(), e))?;
        let txn = db.begin_write()?;
        txn.open_table(RULES)?;
        txn.open_table(RULE_STATE)?;
        txn.open_table(EVENTS)?;
        txn.open_table(BUILDING_EVENTS)?;
        txn.open_table(OUTBOX)?;
        txn.open_table(FAILED)?;
        txn.open_table(META)?;
        txn.commit()?;
        let mut rules = BTreeMap::new();
        let mut states = HashMap::new();
        let txn = db.begin_read()?;
        for entry in txn.open_table(RULES)?.iter()? {
            let (k, v) = entry?;
            let rule: AlertRule =
                serde_json::from_str(v.value()).map_err(|e| corrupt("rules", k.value(), e))?;
            rules.insert(k.value().to_owned(), Arc::new(rule));
        }
        for entry in txn.open_table(RULE_STATE)?.iter()? {
            let (k, v) = entry?;
            let state: RuleState =
                serde_json::from_str(v.value()).map_err(|e| corrupt("rule_state", k.value(), e))?;
            states.insert(k.value().to_owned(), state);
        }
        drop(txn);
        states.retain(|id, _| rules.contains_key(id));
        for (id, rule) in &rules {
            states.entry(id.clone()).or_default().rule = Some(rule.clone());
        }
        Ok(Self {
            db,
            rules: RwLock::new(rules),
            states: Mutex::new(states),
            write: Mutex::new(()),
        })
    }

    /// Writes a consistent copy (one read transaction) to a new database
    /// at `path`.
    pub fn backup_to(&self, path: &Path) -> Result<()> {
        let src = self.db.begin_read()?;
        let out = Database::create(path).map_err(|e| Error::open(path.to_owned(), e))?;
        let txn = out.begin_write()?;
        copy_table(&src, &txn, RULES)?;
        copy_table(&src, &txn, RULE_STATE)?;
        copy_table(&src, &txn, EVENTS)?;
        copy_table(&src, &txn, BUILDING_EVENTS)?;
        copy_table(&src, &txn, OUTBOX)?;
        copy_table(&src, &txn, FAILED)?;
        copy_table(&src, &txn, META)?;
        txn.commit()?;
        Ok(())
    }

    pub fn rule(&self, id: &str) -> Option<AlertRule> {
        self.rules.read_locked().get(id).map(|r| (**r).clone())
    }

    /// The rules of `building` of `tenant`, by id (a building id freed and
    /// taken again by another tenant shows none of the old rules).
    pub fn rules_of(&self, building: &str, tenant: &str) -> Vec<AlertRule> {
        self.rules
            .read_locked()
            .values()
            .filter(|r| r.building_id.as_str() == building && r.tenant_id.as_str() == tenant)
            .map(|r| (**r).clone())
            .collect()
    }

    /// Open episodes (firing, not resolved) of the enabled rules of
    /// `tenant`, per building id: one pass over the rules' states. Waits
    /// for a running evaluation pass (call it off the async runtime).
    pub fn open_episodes_by_building(&self, tenant: &str) -> HashMap<String, usize> {
        let mut open: HashMap<String, usize> = HashMap::new();
        for state in self.states.locked().values() {
            let Some(rule) = state
                .rule
                .as_ref()
                .filter(|r| r.enabled && r.tenant_id.as_str() == tenant)
            else {
                continue;
            };
            let n = state
                .episodes
                .iter()
                .filter(|e| e.resolved.is_none())
                .count();
            if n > 0 {
                *open.entry(rule.building_id.to_string()).or_default() += n;
            }
        }
        open
    }

    /// Every rule `sees` accepts the tenant of.
    pub fn rules_where(&self, sees: impl Fn(&str) -> bool) -> Vec<AlertRule> {
        self.rules
            .read_locked()
            .values()
            .filter(|r| sees(r.tenant_id.as_str()))
            .map(|r| (**r).clone())
            .collect()
    }

    pub fn create_rule(&self, new: NewRule) -> Result<AlertRule> {
        let _w = self.write.locked();
        let of_building = self
            .rules
            .read_locked()
            .values()
            .filter(|r| r.building_id == new.building_id)
            .count();
        if of_building >= MAX_RULES_PER_BUILDING {
            return Err(Error::InvalidArgument(format!(
                "building {} already has {MAX_RULES_PER_BUILDING} alert rules, the most it may have",
                new.building_id
            )));
        }
        let id = new_rule_id()?;
        let rule = AlertRule::new(id, new)?;
        self.put_rule(&rule)?;
        Ok(rule)
    }

    pub fn update_rule(&self, id: &str, patch: RulePatch) -> Result<AlertRule> {
        let _w = self.write.locked();
        let old = self.rule(id).ok_or_else(|| Error::NotFound {
            kind: "alert rule",
            id: id.to_owned(),
        })?;
        let rule = old.patched(patch)?;
        self.put_rule(&rule)?;
        Ok(rule)
    }

    fn put_rule(&self, rule: &AlertRule) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(RULES)?
            .insert(rule.id.as_str(), to_json(rule).as_str())?;
        txn.commit()?;
        let rule = Arc::new(rule.clone());
        self.rules
            .write_locked()
            .insert(rule.id.clone(), rule.clone());
        let mut states = self.states.locked();
        let state = states.entry(rule.id.clone()).or_default();
        state.rule = Some(rule);
        // Whatever changed, the next pass re-reads the whole look-back.
        state.forget_cache();
        Ok(())
    }

    /// Deletes a rule and its episode state; its events stay, and so do
    /// their deliveries still in the outbox.
    pub fn delete_rule(&self, id: &str) -> Result<()> {
        let _w = self.write.locked();
        if self.rule(id).is_none() {
            return Err(Error::NotFound {
                kind: "alert rule",
                id: id.to_owned(),
            });
        }
        self.remove_rules(&[id.to_owned()])
    }

    /// Deletes every rule of `building` (the building is being deleted).
    pub fn delete_rules_of(&self, building: &str) -> Result<()> {
        let _w = self.write.locked();
        let ids: Vec<String> = self
            .rules
            .read_locked()
            .values()
            .filter(|r| r.building_id.as_str() == building)
            .map(|r| r.id.clone())
            .collect();
        self.remove_rules(&ids)
    }

    /// Locks the rules, then the states, as every rule write does (a pass
    /// takes only the states).
    fn remove_rules(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut rules = self.rules.write_locked();
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RULES)?;
            let mut state = txn.open_table(RULE_STATE)?;
            for id in ids {
                table.remove(id.as_str())?;
                state.remove(id.as_str())?;
            }
        }
        txn.commit()?;
        let mut states = self.states.locked();
        for id in ids {
            rules.remove(id);
            states.remove(id);
        }
        Ok(())
    }

    /// Events of `building` of `tenant` with `window_start` in
    /// `[start, end)`, oldest first, at most `limit`.
    pub fn events_of(
        &self,
        building: &str,
        tenant: &str,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<AlertEvent>> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(BUILDING_EVENTS)?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in index.range((building, 0)..=(building, u64::MAX))? {
            let id = entry?.0.value().1;
            if let Some(v) = events.get(id)? {
                let e: AlertEvent =
                    serde_json::from_str(v.value()).map_err(|e| corrupt("events", id, e))?;
                if e.tenant_id.as_str() == tenant && e.window_start >= start && e.window_start < end
                {
                    out.push(e);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every event of the tenants `sees` accepts, oldest first.
    pub fn events_where(&self, sees: impl Fn(&str) -> bool) -> Result<Vec<AlertEvent>> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(EVENTS)?.iter()? {
            let (k, v) = entry?;
            let e: AlertEvent =
                serde_json::from_str(v.value()).map_err(|e| corrupt("events", k.value(), e))?;
            if sees(e.tenant_id.as_str()) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Outbox rows due at `now_ms`, with their events, oldest event first.
    pub fn due(&self, now_ms: i64) -> Result<Vec<Due>> {
        let txn = self.db.begin_read()?;
        let outbox = txn.open_table(OUTBOX)?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in outbox.iter()? {
            let (k, v) = entry?;
            let (id, who) = k.value();
            let delivery: Delivery =
                serde_json::from_str(v.value()).map_err(|e| corrupt("outbox", id, e))?;
            if delivery.next_ms > now_ms {
                continue;
            }
            let (Some(recipient), Some(ev)) = (Recipient::from_key(who), events.get(id)?) else {
                continue;
            };
            let event: AlertEvent =
                serde_json::from_str(ev.value()).map_err(|e| corrupt("events", id, e))?;
            out.push(Due {
                event,
                recipient,
                delivery,
            });
        }
        Ok(out)
    }

    /// Deliveries still to make: the outbox depth.
    pub fn outbox_depth(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(OUTBOX)?.len()?)
    }

    /// Records the outcome of deliveries: `None` removes the row (done),
    /// `Some` stores the new state (retry later), and a failed state moves
    /// it to the failed deliveries.
    pub fn settle(&self, outcomes: &[(u64, Recipient, Option<Delivery>)]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut failed = txn.open_table(FAILED)?;
            for (id, who, state) in outcomes {
                let key = (*id, who.key());
                let key = (key.0, key.1.as_str());
                match state {
                    None => {
                        outbox.remove(key)?;
                    }
                    Some(d) if d.failed => {
                        outbox.remove(key)?;
                        failed.insert(key, to_json(d).as_str())?;
                    }
                    Some(d) => {
                        outbox.insert(key, to_json(d).as_str())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// A random rule id, `r` and 16 hex digits (no count of other tenants'
/// rules shows through).
fn new_rule_id() -> Result<String> {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).map_err(|e| Error::io("reading random bytes", e.into()))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("r{hex}"))
}
