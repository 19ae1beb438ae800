//! The change feed: which UTC days' readings and rollups changed, in the
//! order they changed, for consumers outside the store (fleet publishing).
//!
//! A rollup step notes its day in the same write-ahead transaction that
//! deletes the day's dirty marks: after a crash either the marks are still
//! there (the step, and so the note, is repeated) or the note is committed.
//! A consumer that remembers the last sequence it handled therefore sees
//! every change after it. One row per day, holding its latest change, so
//! the feed is as small as the days kept and a day changed twice is
//! handled once.
//!
//! Re-costing after a tariff change and a building's time zone rebuild
//! rewrite only building days and months, of any age: they note the
//! middle day of each month they rewrote in a second table, as changes
//! of the building tables only, after the files are written (both are
//! repeated after a crash until they complete).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::rollups::Rollups;
use crate::error::Result;

/// UTC day (days since the epoch) -> (change sequence, noted at, epoch ms).
pub(crate) const CHANGED_DAYS: TableDefinition<'static, i64, (u64, i64)> =
    TableDefinition::new("changed_days");
/// As [`CHANGED_DAYS`], for changes of the building tables only.
pub(crate) const CHANGED_BUILDING_DAYS: TableDefinition<'static, i64, (u64, i64)> =
    TableDefinition::new("changed_building_days");
/// The last change sequence handed out (never reused), and the feed's id.
pub(crate) const CHANGE_SEQ: TableDefinition<'static, &str, u64> =
    TableDefinition::new("change_seq");
const LAST: &str = "last";
const FEED: &str = "feed";

/// A day whose data changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayChange {
    /// UTC day, days since the epoch.
    pub day: i64,
    /// Increases with every change noted.
    pub seq: u64,
    /// When the change was noted, epoch ms.
    pub noted_ms: i64,
    /// Only building days and months changed (not readings or hours).
    pub buildings_only: bool,
}

/// Notes `days` as changed within `txn`, with sequences above both the
/// last one handed out and `above`.
pub(crate) fn note(txn: &WriteTransaction, days: &[i64], above: u64) -> Result<()> {
    note_in(txn, CHANGED_DAYS, days, above)
}

/// Notes `days` as changed in the building tables only.
pub(crate) fn note_buildings(txn: &WriteTransaction, days: &[i64]) -> Result<()> {
    note_in(txn, CHANGED_BUILDING_DAYS, days, 0)
}

fn note_in(
    txn: &WriteTransaction,
    feed: TableDefinition<'static, i64, (u64, i64)>,
    days: &[i64],
    above: u64,
) -> Result<()> {
    let mut counter = txn.open_table(CHANGE_SEQ)?;
    let mut seq = counter.get(LAST)?.map_or(0, |v| v.value()).max(above);
    let mut table = txn.open_table(feed)?;
    let now = crate::now_ms();
    for &day in days {
        seq += 1;
        table.insert(day, (seq, now))?;
    }
    counter.insert(LAST, seq)?;
    Ok(())
}

impl Rollups {
    /// Days changed after sequence `after`, in the order of their latest
    /// change, and the last sequence handed out.
    pub fn changes_since(&self, after: u64) -> Result<(Vec<DayChange>, u64)> {
        let db = self.wal.get()?;
        let txn = db.begin_read()?;
        let last = match txn.open_table(CHANGE_SEQ) {
            Ok(t) => t.get(LAST)?.map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((vec![], 0)),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for (feed, buildings_only) in [(CHANGED_DAYS, false), (CHANGED_BUILDING_DAYS, true)] {
            let table = match txn.open_table(feed) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in table.iter()? {
                let (day, v) = entry?;
                let (seq, noted_ms) = v.value();
                if seq > after {
                    out.push(DayChange {
                        day: day.value(),
                        seq,
                        noted_ms,
                        buildings_only,
                    });
                }
            }
        }
        out.sort_unstable_by_key(|c| c.seq);
        Ok((out, last))
    }

    /// This feed's id: random, made once per data directory (kept by
    /// backups and restores, new in a new directory), in `1..2^63`. Its
    /// sequences mean something only together with it: a consumer told
    /// sequences by two feeds under one name would mix them up.
    pub fn feed_id(&self) -> Result<u64> {
        let db = self.wal.get()?;
        {
            let txn = db.begin_read()?;
            match txn.open_table(CHANGE_SEQ) {
                Ok(t) => {
                    if let Some(id) = t.get(FEED)? {
                        return Ok(id.value());
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let txn = db.begin_write()?;
        let id = {
            let mut table = txn.open_table(CHANGE_SEQ)?;
            let existing = table.get(FEED)?.map(|v| v.value());
            match existing {
                Some(id) => id,
                None => {
                    let id = random_id();
                    table.insert(FEED, id)?;
                    id
                }
            }
        };
        txn.commit()?;
        Ok(id)
    }

    /// Notes `days` as changed anew, with sequences above `above`: a
    /// consumer whose record is ahead of this feed (a data directory
    /// restored from a backup, or a new one publishing as a known site)
    /// sees them all again.
    pub fn renote(&self, days: &[i64], above: u64) -> Result<()> {
        let db = self.wal.get()?;
        let txn = db.begin_write()?;
        note(&txn, days, above)?;
        txn.commit()?;
        Ok(())
    }
}

/// A random number in `1..2^63` (fits a Delta transaction version):
/// std's hasher keys are random per process.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(crate::now_ms());
    h.write_u32(std::process::id());
    (h.finish() >> 1).max(1)
}

#[cfg(test)]
mod tests {
    use crate::chunk::DAY_MS;
    use crate::store::ReadingStore;
    use crate::test_util::{batch, catalog_with_sensors};

    #[tokio::test]
    async fn a_rollup_step_notes_its_day_and_a_day_changed_again_moves_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = catalog_with_sensors(dir.path(), 2);
        let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
        let day = crate::now_ms().div_euclid(DAY_MS) - 3;
        let at = |d: i64| (day + d) * DAY_MS + 3_600_000;
        store
            .append(batch(&[(0, at(0), 1.0), (1, at(1), 2.0)]))
            .await
            .unwrap();
        // Written to the write-ahead, not yet handled: nothing to publish.
        assert_eq!(store.rollups().changes_since(0).unwrap().0, vec![]);
        store.catch_up_rollups().unwrap();
        // Days of readings, and (building tables only) the middle day of
        // each month whose building days a step rewrote.
        let split = |since: u64| {
            let (changes, last) = store.rollups().changes_since(since).unwrap();
            let (buildings, days): (Vec<_>, Vec<_>) =
                changes.into_iter().partition(|c| c.buildings_only);
            let days: Vec<i64> = days.iter().map(|c| c.day).collect();
            let months: Vec<i64> = buildings.iter().map(|c| c.day).collect();
            (days, months, last)
        };
        let (days, months, last) = split(0);
        assert_eq!(days, [day, day + 1]);
        let month_of = |d: i64| crate::rollup::from_days(d).format("%Y-%m").to_string();
        assert!(
            months.iter().any(|m| month_of(*m) == month_of(day)),
            "{months:?}"
        );
        assert!(months.iter().any(|m| month_of(*m) == month_of(day + 1)));

        // A correction of the first day: noted again, after the second.
        store.append(batch(&[(0, at(0), 5.0)])).await.unwrap();
        store.catch_up_rollups().unwrap();
        assert_eq!(split(last).0, [day]);
        assert_eq!(split(0).0, [day + 1, day]);

        // Renoted above a sequence a consumer already saw: all again.
        store.rollups().renote(&[day, day + 1], 1_000).unwrap();
        let (renoted, last) = store.rollups().changes_since(1_000).unwrap();
        assert_eq!(renoted.len(), 2);
        assert_eq!(last, 1_002);
        drop(store);

        // The feed survives a restart (it is in the write-ahead file).
        let catalog = std::sync::Arc::new(crate::catalog::Catalog::open(dir.path()).unwrap());
        let store = ReadingStore::open(dir.path(), catalog).unwrap().0;
        assert_eq!(store.rollups().changes_since(1_000).unwrap().1, 1_002);
    }

    #[test]
    fn a_data_directory_keeps_its_feed_id_and_another_has_its_own()
    -> Result<(), Box<dyn std::error::Error>> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let new = |dir: &std::path::Path| {
            ReadingStore::open(dir, catalog_with_sensors(dir, 1)).map(|(store, _)| store)
        };
        let first = new(a.path())?.rollups().feed_id()?;
        assert!(first > 0 && first < 1 << 63);
        let catalog = std::sync::Arc::new(crate::catalog::Catalog::open(a.path())?);
        let reopened = ReadingStore::open(a.path(), catalog)?.0;
        assert_eq!(reopened.rollups().feed_id()?, first);
        assert_ne!(new(b.path())?.rollups().feed_id()?, first);
        Ok(())
    }
}
