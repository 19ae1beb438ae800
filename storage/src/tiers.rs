//! The tiers of readings, newest first: the active memtable (filled by the
//! write-ahead writer), frozen memtables (waiting to be written as chunks),
//! and chunk files. The writer and maintenance change them under one lock;
//! readers take a [`Snapshot`] of all three at once, so a flush or
//! compaction that swaps tiers never shows a reader a reading twice or not
//! at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::chunk::{ChunkFile, ChunkId, SensorNames, merge_newest_wins, read_chunk};
use crate::error::Result;
use crate::ids::WalSequence;
use crate::memtable::Memtable;
use crate::reading::{Reading, TimeRange, day_of};

/// The tiers, as the writer and maintenance change them.
pub(crate) struct Tiers {
    pub(crate) active: Arc<Memtable>,
    /// Oldest first, each with the first write-ahead sequence number it
    /// does not hold.
    pub(crate) frozen: Vec<(Arc<Memtable>, WalSequence)>,
    pub(crate) chunks: BTreeMap<ChunkId, Arc<ChunkFile>>,
}

impl Tiers {
    pub(crate) fn active(&self) -> Arc<Memtable> {
        self.active.clone()
    }

    pub(crate) fn freeze_active(&mut self, wal_upto: WalSequence) {
        let old = std::mem::take(&mut self.active);
        self.frozen.push((old, wal_upto));
    }
}

/// A consistent view of every tier.
#[derive(Clone)]
pub struct Snapshot {
    /// Chunk files, lowest precedence first.
    pub chunks: Vec<Arc<ChunkFile>>,
    /// Memtables, oldest first; all newer than every chunk.
    pub memtables: Vec<Arc<Memtable>>,
    /// Raw readings before this instant may have been dropped by retention.
    pub raw_floor_ms: i64,
}

impl Snapshot {
    /// Readings still in memory for sensors `wanted` accepts, in `range`,
    /// deduplicated (the newest memtable wins), in (sensor, ts) order.
    pub fn hot_readings(
        &self,
        wanted: impl Fn(crate::SensorKey) -> bool,
        range: TimeRange,
    ) -> Vec<Reading> {
        let mut sources: Vec<Vec<Reading>> = self
            .memtables
            .iter()
            .map(|m| m.readings(&wanted, range))
            .filter(|rows| !rows.is_empty())
            .collect();
        if sources.len() <= 1 {
            return sources.pop().unwrap_or_default();
        }
        let mut all: Vec<(usize, Reading)> = sources
            .into_iter()
            .enumerate()
            .flat_map(|(i, rows)| rows.into_iter().map(move |r| (usize::MAX - i, r)))
            .collect();
        all.sort_unstable_by_key(|(newest_first, r)| (r.sensor, r.ts_ms, *newest_first));
        all.dedup_by_key(|(_, r)| (r.sensor, r.ts_ms));
        all.into_iter().map(|(_, r)| r).collect()
    }

    /// Every reading of sensors `wanted` accepts in `range`, across chunk
    /// files and memory, deduplicated (newest wins), day by day.
    /// Reads the chunk files whose span overlaps `range`. Blocking.
    pub fn merged_readings(
        &self,
        wanted: &dyn Fn(crate::SensorKey) -> bool,
        range: TimeRange,
        names: &SensorNames,
    ) -> Result<Vec<Reading>> {
        // Days do not share readings: merge (and sort) only within a day
        // that has several sources, and concatenate the days.
        let mut by_day: BTreeMap<i64, Vec<Vec<Reading>>> = BTreeMap::new();
        for c in &self.chunks {
            if c.meta.overlaps(range) {
                let rows = read_chunk(&c.path, names)?;
                by_day.entry(c.meta.day).or_default().push(
                    rows.into_iter()
                        .filter(|r| wanted(r.sensor) && range.contains(r.ts_ms))
                        .collect(),
                );
            }
        }
        let mut hot: BTreeMap<i64, Vec<Reading>> = BTreeMap::new();
        for r in self.hot_readings(wanted, range) {
            hot.entry(day_of(r.ts_ms)).or_default().push(r);
        }
        for (day, rows) in hot {
            by_day.entry(day).or_default().push(rows);
        }
        let mut out = Vec::new();
        for (_, sources) in by_day {
            out.extend(merge_newest_wins(sources, names));
        }
        Ok(out)
    }

    /// Readings held in memory, across memtables (duplicates counted).
    pub fn hot_len(&self) -> u64 {
        self.memtables.iter().map(|m| m.len()).sum()
    }
}
