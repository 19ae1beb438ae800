//! Merging a day's chunk files into one, streaming.
//!
//! Every chunk file is sorted in chunk order (by the sensor's rank, then
//! time), so a day's files merge like sorted runs: one cursor per file,
//! a heap picks the smallest `(rank, ts)`, and among equal keys the newest
//! file's reading wins. Each file is read a batch at a time (smaller the
//! more files, so their batches together are about a row group) and the
//! merged rows go to the new file a row group at a time, so merging a day
//! takes about two row groups of memory, not the day.
//!
//! Ranks come from the `(building_id, sensor_id)` order of the catalog
//! when the file was written; neither id of a sensor changes, so a file's
//! order holds. Should a file still not be in order, the merge says so
//! and the caller merges the day in memory, by sorting.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use super::format::ChunkRows;
use super::names::SensorNames;
use super::writer::{ChunkWriter, WRITE_ROWS};
use super::{ChunkId, ChunkMeta, day_name, merge_newest_wins, read_chunk, write_chunk};
use crate::error::Result;
use crate::ids::SensorKey;
use crate::reading::Reading;

/// A file's position in the merge.
struct Cursor<'a> {
    rows: ChunkRows<'a>,
    batch: Vec<Reading>,
    at: usize,
    /// The sensor of the current row and its rank (looked up once per
    /// sensor, not per row).
    sensor: Option<(SensorKey, u32)>,
}

impl Cursor<'_> {
    /// The current row's `(rank, ts)` and the row, reading the next batch
    /// when this one is used up; `None` at the end of the file.
    fn current(&mut self, names: &SensorNames) -> Result<Option<((u32, i64), Reading)>> {
        while self.at == self.batch.len() {
            match self.rows.next_rows()? {
                Some(batch) => {
                    self.batch = batch;
                    self.at = 0;
                }
                None => return Ok(None),
            }
        }
        let row = self.batch[self.at];
        let rank = match self.sensor {
            Some((sensor, rank)) if sensor == row.sensor => rank,
            _ => {
                let rank = names.rank(row.sensor);
                self.sensor = Some((row.sensor, rank));
                rank
            }
        };
        Ok(Some(((rank, row.ts_ms), row)))
    }
}

/// Merges the chunk files at `paths` (one day's, oldest first) into chunk
/// `id` of `day` with `precedence`, newest wins on equal `(sensor, ts)`;
/// returns its manifest entry, which the caller commits.
pub(crate) fn merge_files(
    data_dir: &Path,
    id: ChunkId,
    precedence: u64,
    day: i64,
    paths: &[&Path],
    names: &SensorNames,
) -> Result<ChunkMeta> {
    // The files' batches together stay about a row group however many
    // files the day has.
    let batch_rows = (WRITE_ROWS / paths.len().max(1)).clamp(1_024, ChunkRows::BATCH_ROWS);
    let streamed = {
        let sources = paths
            .iter()
            .map(|p| ChunkRows::open_batched(p, names, batch_rows))
            .collect::<Result<Vec<_>>>()?;
        let mut out = ChunkWriter::create(data_dir, id, day, names)?;
        if merge_into(sources, names, &mut out)? {
            Some(out.finish(precedence)?)
        } else {
            None
        }
    };
    match streamed {
        Some(meta) => Ok(meta),
        None => {
            tracing::warn!(
                day = %day_name(day),
                "a chunk file of the day is not in chunk order; merging the day in memory"
            );
            let sources = paths
                .iter()
                .map(|p| read_chunk(p, names))
                .collect::<Result<Vec<_>>>()?;
            let rows = merge_newest_wins(sources, names);
            write_chunk(data_dir, id, precedence, day, &rows, names)
        }
    }
}

/// Merges `sources` (one day's files, oldest first) into `out`, newest
/// wins on equal `(sensor, ts)`. Returns `false`, having written part of
/// the merge, if a file turned out not to be in chunk order: the caller
/// then drops `out` and merges in memory.
fn merge_into(
    sources: Vec<ChunkRows<'_>>,
    names: &SensorNames,
    out: &mut ChunkWriter<'_>,
) -> Result<bool> {
    let mut cursors: Vec<Cursor<'_>> = sources
        .into_iter()
        .map(|rows| Cursor {
            rows,
            batch: Vec::new(),
            at: 0,
            sensor: None,
        })
        .collect();
    // Smallest key first; on equal keys the newest file (highest index).
    let mut heap = BinaryHeap::new();
    for (i, cursor) in cursors.iter_mut().enumerate() {
        if let Some((key, _)) = cursor.current(names)? {
            heap.push(Reverse((key, Reverse(i))));
        }
    }
    let mut merged = Vec::with_capacity(WRITE_ROWS);
    let mut last: Option<(u32, i64)> = None;
    while let Some(Reverse((key, Reverse(i)))) = heap.pop() {
        let cursor = &mut cursors[i];
        let Some((_, row)) = cursor.current(names)? else {
            continue;
        };
        // An older file's reading of a key already taken is dropped.
        if last != Some(key) {
            merged.push(row);
            last = Some(key);
            if merged.len() == WRITE_ROWS {
                out.write(&merged)?;
                merged.clear();
            }
        }
        cursor.at += 1;
        if let Some((next, _)) = cursor.current(names)? {
            if next <= key {
                return Ok(false);
            }
            heap.push(Reverse((next, Reverse(i))));
        }
    }
    out.write(&merged)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: u32, ts_ms: i64, value_kwh: f64) -> Reading {
        Reading {
            sensor: SensorKey(sensor),
            ts_ms,
            value_kwh,
        }
    }

    /// A data directory whose catalog has `sensors` sensors.
    struct Day {
        dir: tempfile::TempDir,
        names: SensorNames,
    }

    impl Day {
        fn new(sensors: u32) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let cat = crate::test_util::catalog_with_sensors(dir.path(), sensors);
            let names = SensorNames::from_catalog(&cat.view());
            Self { dir, names }
        }

        /// Writes `sources` as chunk files of day 0, oldest first (ids
        /// and precedences 0, 1, ...); returns their paths.
        fn write(&self, sources: &[&[Reading]]) -> Vec<std::path::PathBuf> {
            let dir = self.dir.path();
            sources
                .iter()
                .enumerate()
                .map(|(i, rows)| {
                    let id = i as u64;
                    let meta = write_chunk(dir, ChunkId(id), id, 0, rows, &self.names);
                    dir.join(meta.unwrap().file)
                })
                .collect()
        }

        /// Merges the files at `paths` with [`merge_files`] and reads the
        /// result back.
        fn merge(&self, paths: &[std::path::PathBuf], id: u64) -> Vec<Reading> {
            let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
            let dir = self.dir.path();
            let meta = merge_files(dir, ChunkId(id), id, 0, &refs, &self.names).unwrap();
            read_chunk(&dir.join(&meta.file), &self.names).unwrap()
        }
    }

    /// Files of overlapping sensors and times, with corrections, merge to
    /// what the in-memory merge gives, across read batches and row groups.
    #[test]
    fn streaming_gives_the_in_memory_merge() {
        let day = Day::new(30);
        let (dir, names) = (day.dir.path(), &day.names);
        let mut sources = Vec::new();
        for f in 0..3u32 {
            let mut rows: Vec<Reading> = (0..30u32)
                .filter(|s| (s + f) % 3 != 0)
                .flat_map(|s| {
                    (0..10_000i64)
                        .filter(move |q| (q + i64::from(f)) % 2 == 0 || f == 2)
                        .map(move |q| reading(s, q * 8_000, f64::from(f * 100 + s)))
                })
                .collect();
            rows.sort_by_key(|r| (names.rank(r.sensor), r.ts_ms));
            sources.push(rows);
        }
        let refs: Vec<&[Reading]> = sources.iter().map(Vec::as_slice).collect();
        let paths = day.write(&refs);
        let opened = paths
            .iter()
            .map(|p| ChunkRows::open(p, names).unwrap())
            .collect();
        let mut out = ChunkWriter::create(dir, ChunkId(9), 0, names).unwrap();
        assert!(merge_into(opened, names, &mut out).unwrap());
        let meta = out.finish(9).unwrap();
        let want = merge_newest_wins(sources, names);
        assert!(want.len() > WRITE_ROWS);
        let got = read_chunk(&dir.join(&meta.file), names).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    /// A file out of chunk order is reported, not merged wrongly.
    #[test]
    fn a_file_out_of_order_is_reported() {
        let day = Day::new(2);
        let paths = day.write(&[&[reading(0, 2, 1.0), reading(0, 1, 1.0)]]);
        let mut out = ChunkWriter::create(day.dir.path(), ChunkId(2), 0, &day.names).unwrap();
        let opened = vec![ChunkRows::open(&paths[0], &day.names).unwrap()];
        assert!(!merge_into(opened, &day.names, &mut out).unwrap());
    }

    /// A file whose disorder shows only after a row group of the merge was
    /// written, with a key twice: the day is merged in memory instead,
    /// with the same result, and only the merged file is left in the day's
    /// folder.
    #[test]
    fn a_day_with_a_file_out_of_order_is_merged_in_memory() {
        let day = Day::new(1);
        let n = WRITE_ROWS as i64 + 1_000;
        let first: Vec<Reading> = (0..n).map(|i| reading(0, i * 300, 1.0)).collect();
        let mut second: Vec<Reading> = (0..n).map(|i| reading(0, i * 300, 2.0)).collect();
        second.push(reading(0, 600, 3.0));
        second.push(reading(0, 5, 4.0));
        let paths = day.write(&[&first, &second]);
        let got = day.merge(&paths, 5);
        let mut want = second.clone();
        want.sort_by_key(|r| r.ts_ms);
        want.dedup_by_key(|r| r.ts_ms);
        assert_eq!(got.len(), want.len());
        assert!(got.iter().all(|r| r.value_kwh >= 2.0));
        assert_eq!(got.iter().find(|r| r.ts_ms == 5).unwrap().value_kwh, 4.0);
        for p in &paths {
            std::fs::remove_file(p).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(paths[0].parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![format!("part-{:020}.parquet", 5)]);
    }

    /// Many files, each read in smaller batches, merge to what the
    /// in-memory merge gives.
    #[test]
    fn many_files_merge_in_smaller_batches() {
        let day = Day::new(3);
        let names = &day.names;
        let mut sources = Vec::new();
        for f in 0..40u64 {
            let mut rows: Vec<Reading> = (0..3u32)
                .flat_map(|s| {
                    (0..9_000i64)
                        .filter(move |q| (q + f as i64) % 5 != 0)
                        .map(move |q| reading(s, q * 9_000, (f * 10 + u64::from(s)) as f64))
                })
                .collect();
            rows.sort_by_key(|r| (names.rank(r.sensor), r.ts_ms));
            sources.push(rows);
        }
        assert!(WRITE_ROWS / 40 < sources[0].len());
        let refs: Vec<&[Reading]> = sources.iter().map(Vec::as_slice).collect();
        let got = day.merge(&day.write(&refs), 99);
        assert!(got == merge_newest_wins(sources, names));
    }
}
