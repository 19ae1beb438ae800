//! Dirty marks: which (UTC day, sensor) pairs have readings the rollups
//! have not seen yet.
//!
//! The write-ahead writer records a mark in the same redb commit as the
//! batch (so a reading can never be durable without its mark), valued with
//! the batch's sequence number. It skips pairs it already marked, known
//! from an in-memory set, so steady ingestion writes each pair once.
//!
//! The rollup worker, for one day: (1) drops that day's pairs from the
//! in-memory set, so later readings mark again with a newer sequence;
//! (2) reads `applied`, the sequence below which every batch is in the
//! memtables; (3) takes its snapshot; (4) processes the marks valued below
//! `applied`; (5) deletes exactly those marks whose value has not changed.
//! A mark is thus removed only after a recomputation that saw every reading
//! behind it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::TableDefinition;

use super::WalSequence;

/// `(UTC day of the reading, sensor key)` -> sequence number of the batch
/// that marked it.
pub(crate) const DIRTY: TableDefinition<'static, (i64, u32), u64> =
    TableDefinition::new("rollup_dirty");

/// Building -> the time zone its rollups follow (see the rollups' zone
/// ledger), committed with the marks of a rebuild.
pub(crate) const ZONES: TableDefinition<'static, &str, &str> = TableDefinition::new("rollup_zones");

/// Buildings whose days and months await re-derivation after a rebuild.
pub(crate) const REDERIVE: TableDefinition<'static, &str, ()> =
    TableDefinition::new("rollup_rederive");

#[derive(Default)]
pub(crate) struct Marks {
    /// Pairs marked in redb and not yet taken by the worker. The writer
    /// holds this lock from choosing its new marks until it has applied
    /// the batch, so the worker never sees a mark whose pair it could lose.
    pub(crate) known: Mutex<HashSet<(i64, u32)>>,
    /// Every batch with a smaller sequence number is in the memtables.
    pub(crate) applied: AtomicU64,
}

impl Marks {
    pub(crate) fn applied(&self) -> WalSequence {
        WalSequence(self.applied.load(Ordering::Acquire))
    }

    pub(crate) fn set_applied(&self, next_seq: WalSequence) {
        self.applied.store(next_seq.0, Ordering::Release);
    }
}
