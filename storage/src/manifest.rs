//! The manifest: which chunk files hold which readings.
//!
//! It lives in `wal.redb` next to the write-ahead, so that one redb commit
//! both names the chunks a flush wrote and trims the write-ahead records
//! they came from: after a crash either the records are still in the
//! write-ahead (and the new files are orphans, deleted at start) or the
//! files are in the manifest and the records are gone. Never both, never
//! neither.
//!
//! Tables: `chunks` (chunk id -> [`ChunkMeta`] as JSON) and `counters`
//! (`next_chunk_id`, `next_wal_seq`).

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::chunk::{ChunkId, ChunkMeta};
use crate::error::{Error, Result};
use crate::ids::WalSequence;
use crate::table_copy::copy_table;
use crate::wal::WAL_TABLE;

const CHUNKS: TableDefinition<'static, u64, &'static str> = TableDefinition::new("chunks");
const COUNTERS: TableDefinition<'static, &'static str, u64> = TableDefinition::new("counters");
const NEXT_CHUNK_ID: &str = "next_chunk_id";
/// Lower bound for the next write-ahead sequence number, recorded when a
/// flush trims the write-ahead, so numbers are never reused even when the
/// write-ahead is empty at start.
const NEXT_WAL_SEQ: &str = "next_wal_seq";
/// Raw readings before this instant (epoch ms, stored as `u64` bits) may
/// have been dropped by retention.
const RAW_FLOOR: &str = "raw_floor_ms";

/// One atomic change of the manifest.
#[derive(Debug, Default)]
pub(crate) struct ManifestChange {
    pub(crate) add: Vec<ChunkMeta>,
    pub(crate) remove: Vec<ChunkId>,
    /// Write-ahead records with a smaller sequence number are deleted.
    pub(crate) trim_wal_below: Option<WalSequence>,
    pub(crate) next_chunk_id: ChunkId,
    /// Retention dropped raw readings before this instant.
    pub(crate) raw_floor_ms: Option<i64>,
}

/// The smallest next write-ahead sequence number the manifest allows.
pub(crate) fn next_wal_seq(db: &Database) -> Result<WalSequence> {
    let txn = db.begin_read()?;
    Ok(WalSequence(
        txn.open_table(COUNTERS)?
            .get(NEXT_WAL_SEQ)?
            .map_or(0, |v| v.value()),
    ))
}

/// The instant before which retention may have dropped raw readings.
pub(crate) fn raw_floor_ms(db: &Database) -> Result<i64> {
    let txn = db.begin_read()?;
    Ok(txn
        .open_table(COUNTERS)?
        .get(RAW_FLOOR)?
        .map_or(i64::MIN, |v| v.value() as i64))
}

/// Creates the tables if needed and returns the chunks and the next id.
pub(crate) fn load(db: &Database) -> Result<(Vec<ChunkMeta>, ChunkId)> {
    let txn = db.begin_write()?;
    txn.open_table(CHUNKS)?;
    txn.open_table(COUNTERS)?;
    txn.open_table(WAL_TABLE)?;
    txn.open_table(crate::wal::marks::DIRTY)?;
    txn.commit()?;

    let txn = db.begin_read()?;
    let table = txn.open_table(CHUNKS)?;
    let mut chunks = Vec::new();
    for entry in table.iter()? {
        let (id, json) = entry?;
        let meta: ChunkMeta =
            serde_json::from_str(json.value()).map_err(|e| Error::CatalogCorrupt {
                table: "chunks",
                key: id.value().to_string(),
                reason: e.to_string(),
            })?;
        chunks.push(meta);
    }
    let next = txn
        .open_table(COUNTERS)?
        .get(NEXT_CHUNK_ID)?
        .map_or(0, |v| v.value());
    let next = chunks.iter().map(|c| c.id.0 + 1).fold(next, u64::max);
    Ok((chunks, ChunkId(next)))
}

/// Copies the write-ahead and the manifest as of one read transaction into
/// a new database at `path`; returns the chunks that copy names.
pub(crate) fn backup_to(db: &Database, path: &std::path::Path) -> Result<Vec<ChunkMeta>> {
    let src = db.begin_read()?;
    let out = Database::create(path).map_err(|e| Error::open(path.to_owned(), e))?;
    let txn = out.begin_write()?;
    let mut chunks = Vec::new();
    {
        let mut to = txn.open_table(WAL_TABLE)?;
        for entry in src.open_table(WAL_TABLE)?.iter()? {
            let (k, v) = entry?;
            to.insert(k.value(), v.value())?;
        }
        let mut to = txn.open_table(CHUNKS)?;
        for entry in src.open_table(CHUNKS)?.iter()? {
            let (k, v) = entry?;
            to.insert(k.value(), v.value())?;
            chunks.push(
                serde_json::from_str(v.value()).map_err(|e| Error::CatalogCorrupt {
                    table: "chunks",
                    key: k.value().to_string(),
                    reason: e.to_string(),
                })?,
            );
        }
        copy_table(&src, &txn, COUNTERS)?;
        copy_table(&src, &txn, crate::wal::marks::DIRTY)?;
        copy_table(&src, &txn, crate::wal::marks::ZONES)?;
        copy_table(&src, &txn, crate::wal::marks::REDERIVE)?;
        copy_table(&src, &txn, crate::rollup::changes::CHANGED_DAYS)?;
        copy_table(&src, &txn, crate::rollup::changes::CHANGED_BUILDING_DAYS)?;
        copy_table(&src, &txn, crate::rollup::changes::CHANGE_SEQ)?;
    }
    txn.commit()?;
    Ok(chunks)
}

/// Applies `change` in one durable transaction.
/// A failed [`commit`], by whether the change may have landed.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// Failed while the change was being written: it did not land.
    Before(Error),
    /// The commit itself failed; it may have landed, unless the disk was
    /// full (which fails before the commit record is written).
    Commit(Error),
}

pub(crate) fn commit(db: &Database, change: &ManifestChange) -> Result<(), CommitError> {
    let txn = db
        .begin_write()
        .map_err(|e| CommitError::Before(e.into()))?;
    write_change(&txn, change).map_err(CommitError::Before)?;
    txn.commit().map_err(|e| CommitError::Commit(e.into()))
}

fn write_change(txn: &redb::WriteTransaction, change: &ManifestChange) -> Result<()> {
    {
        let mut chunks = txn.open_table(CHUNKS)?;
        for meta in &change.add {
            let json = serde_json::to_string(meta).expect("chunk metadata serialises");
            chunks.insert(meta.id.0, json.as_str())?;
        }
        for id in &change.remove {
            chunks.remove(id.0)?;
        }
        txn.open_table(COUNTERS)?
            .insert(NEXT_CHUNK_ID, change.next_chunk_id.0)?;
        if let Some(floor) = change.raw_floor_ms {
            let mut counters = txn.open_table(COUNTERS)?;
            let current = counters
                .get(RAW_FLOOR)?
                .map_or(i64::MIN, |v| v.value() as i64);
            counters.insert(RAW_FLOOR, current.max(floor) as u64)?;
        }
        if let Some(WalSequence(below)) = change.trim_wal_below {
            let mut counters = txn.open_table(COUNTERS)?;
            let current = counters.get(NEXT_WAL_SEQ)?.map_or(0, |v| v.value());
            counters.insert(NEXT_WAL_SEQ, current.max(below))?;
            drop(counters);
            let mut wal = txn.open_table(WAL_TABLE)?;
            wal.retain_in(..below, |_, _| false)?;
        }
    }
    Ok(())
}
