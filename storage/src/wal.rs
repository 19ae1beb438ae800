//! The write-ahead: every accepted batch, durable before it is acknowledged.
//!
//! On disk (`wal.redb`) it is one redb table, `wal`, mapping a [`WalSequence`]
//! (u64, strictly increasing, never reused) to one encoded batch (see
//! [`codec`]). Invariants:
//!
//! - A batch is acknowledged only after the redb transaction holding it has
//!   committed with `Durability::Immediate` (fsync).
//! - Batches are applied to the active memtable in sequence order, by the
//!   same thread that commits them, so last-write-wins resolves identically
//!   at run time and at replay.
//! - Records are deleted only in the manifest commit that names the chunk
//!   files holding their readings (`manifest.rs`, a layer above). Replaying what
//!   is left, in key order, over the chunks rebuilds the exact state the
//!   running daemon had.
//!
//! [`writer`] runs the single writer thread that does group commit.

pub(crate) mod codec;
pub(crate) mod db;
mod fsync_guard;
pub(crate) mod marks;
pub(crate) mod writer;

use redb::TableDefinition;

pub(crate) use crate::ids::WalSequence;

pub(crate) const WAL_TABLE: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("wal");
