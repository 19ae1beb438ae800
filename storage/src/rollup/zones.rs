//! Which time zone each building's rollups are built in.
//!
//! A building's zone lives in the catalog (`meta.redb`); its rollups and
//! dirty marks in the write-ahead database. The two cannot change in one
//! transaction, so the rollups record the zone they follow here, in the
//! same transaction that marks every day of the building for recompute:
//! a rebuild is one durable step. Whenever the catalog's zone differs from
//! the recorded one (a crash right after a PATCH, a PATCH during recovery,
//! a rebuild that failed), the rollup worker rebuilds; the recorded flag
//! `rederive` stays set until days and months are re-derived, so a crash
//! in between repeats that too.
//!
//! Rebuilds are costly (every day of raw data of the building is read
//! again), so one building is rebuilt at most once per
//! [`REBUILD_SPACING`], and at most one building per rollup step: a
//! tenant flipping a zone back and forth delays its own rollups, not
//! everyone's. Changes in between are coalesced into the next rebuild.

use crate::sync::Recover;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use crate::catalog::CatalogView;
use crate::error::Result;

use crate::wal::marks::{REDERIVE, ZONES};

/// Least time between two rebuilds of one building.
pub(crate) const REBUILD_SPACING: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    zone: String,
    rederive: bool,
    last_rebuild: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct ZoneLedger {
    entries: Mutex<HashMap<String, Entry>>,
    /// [`REBUILD_SPACING`]; tests shorten it.
    spacing: Mutex<Duration>,
}

impl ZoneLedger {
    /// Loads the ledger and [adopts](ZoneLedger::adopt_new) buildings it
    /// does not know yet.
    pub(crate) fn load(db: &Database, view: &CatalogView<'_>) -> Result<Self> {
        let mut entries = HashMap::new();
        {
            let txn = db.begin_read()?;
            if let Ok(zones) = txn.open_table(ZONES) {
                for row in zones.iter()? {
                    let (b, z) = row?;
                    entries.insert(
                        b.value().to_string(),
                        Entry {
                            zone: z.value().to_string(),
                            rederive: false,
                            last_rebuild: None,
                        },
                    );
                }
            }
            if let Ok(rederive) = txn.open_table(REDERIVE) {
                for row in rederive.iter()? {
                    if let Some(e) = entries.get_mut(row?.0.value()) {
                        e.rederive = true;
                    }
                }
            }
        }
        let ledger = Self {
            entries: Mutex::new(entries),
            spacing: Mutex::new(REBUILD_SPACING),
        };
        ledger.adopt_new(db, view)?;
        Ok(ledger)
    }

    /// Records buildings the ledger does not know (a data directory from
    /// before it existed, a building created since the last step) as
    /// built in their catalog zone: the rollup worker calls this before
    /// each step, so that is the zone their first rollups use.
    pub(crate) fn adopt_new(&self, db: &Database, view: &CatalogView<'_>) -> Result<()> {
        let mut entries = self.entries.locked();
        let new: Vec<(String, String)> = view
            .tenants()
            .flat_map(|t| view.buildings_of(t.id.as_str()))
            .filter(|b| !entries.contains_key(b.id.as_str()))
            .map(|b| (b.id.to_string(), b.timezone.name().to_owned()))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let txn = db.begin_write()?;
        {
            let mut zones = txn.open_table(ZONES)?;
            txn.open_table(REDERIVE)?;
            for (b, z) in &new {
                zones.insert(b.as_str(), z.as_str())?;
            }
        }
        txn.commit()?;
        for (b, zone) in new {
            entries.insert(
                b,
                Entry {
                    zone,
                    rederive: false,
                    last_rebuild: None,
                },
            );
        }
        Ok(())
    }

    /// Whether `building`'s rollups follow `zone` with nothing pending.
    fn settled(&self, building: &str, zone: &str) -> bool {
        let entries = self.entries.locked();
        // A building created after start is built in its zone from its
        // first reading on.
        entries
            .get(building)
            .is_none_or(|e| e.zone == zone && !e.rederive)
    }

    /// Whether `building` may be rebuilt now (not rebuilt within
    /// [`REBUILD_SPACING`]).
    pub(crate) fn may_rebuild(&self, building: &str, now: Instant) -> bool {
        let spacing = *self.spacing.locked();
        let entries = self.entries.locked();
        entries
            .get(building)
            .and_then(|e| e.last_rebuild)
            .is_none_or(|t| now.duration_since(t) >= spacing)
    }

    #[cfg(test)]
    pub(crate) fn set_spacing(&self, spacing: Duration) {
        *self.spacing.locked() = spacing;
    }

    /// A building whose rollups must be rebuilt and may be now.
    pub(crate) fn due(&self, view: &CatalogView<'_>, now: Instant) -> Option<String> {
        view.tenants()
            .flat_map(|t| view.buildings_of(t.id.as_str()))
            .find(|b| {
                !self.settled(b.id.as_str(), b.timezone.name())
                    && self.may_rebuild(b.id.as_str(), now)
            })
            .map(|b| b.id.to_string())
    }

    /// Records, in the rebuild's transaction, that `building` follows
    /// `zone` and awaits re-derivation.
    pub(crate) fn record(txn: &WriteTransaction, building: &str, zone: &str) -> Result<()> {
        txn.open_table(ZONES)?.insert(building, zone)?;
        txn.open_table(REDERIVE)?.insert(building, ())?;
        Ok(())
    }

    /// The rebuild's transaction committed.
    pub(crate) fn rebuilt(&self, building: &str, zone: &str, now: Instant) {
        let mut entries = self.entries.locked();
        entries.insert(
            building.to_string(),
            Entry {
                zone: zone.to_string(),
                rederive: true,
                last_rebuild: Some(now),
            },
        );
    }

    /// Days and months of `building` are re-derived.
    pub(crate) fn rederived(&self, db: &Database, building: &str) -> Result<()> {
        let txn = db.begin_write()?;
        txn.open_table(REDERIVE)?.remove(building)?;
        txn.commit()?;
        if let Some(e) = self.entries.locked().get_mut(building) {
            e.rederive = false;
        }
        Ok(())
    }
}
