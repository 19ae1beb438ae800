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

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::rollups::Rollups;
use crate::error::Result;

/// UTC day (days since the epoch) -> (change sequence, noted at, epoch ms).
pub(crate) const CHANGED_DAYS: TableDefinition<'static, i64, (u64, i64)> =
    TableDefinition::new("changed_days");
/// The last change sequence handed out (never reused).
pub(crate) const CHANGE_SEQ: TableDefinition<'static, &str, u64> =
    TableDefinition::new("change_seq");
const LAST: &str = "last";

/// A day whose data changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayChange {
    /// UTC day, days since the epoch.
    pub day: i64,
    /// Increases with every change noted.
    pub seq: u64,
    /// When the change was noted, epoch ms.
    pub noted_ms: i64,
}

/// Notes `days` as changed within `txn`, with sequences above both the
/// last one handed out and `above`.
pub(crate) fn note(txn: &WriteTransaction, days: &[i64], above: u64) -> Result<()> {
    let mut counter = txn.open_table(CHANGE_SEQ)?;
    let mut seq = counter.get(LAST)?.map_or(0, |v| v.value()).max(above);
    let mut table = txn.open_table(CHANGED_DAYS)?;
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
        for entry in txn.open_table(CHANGED_DAYS)?.iter()? {
            let (day, v) = entry?;
            let (seq, noted_ms) = v.value();
            if seq > after {
                out.push(DayChange {
                    day: day.value(),
                    seq,
                    noted_ms,
                });
            }
        }
        out.sort_unstable_by_key(|c| c.seq);
        Ok((out, last))
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
