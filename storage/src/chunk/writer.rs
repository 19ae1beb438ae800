//! Writing one chunk file a slice of rows at a time.
//!
//! A flush or compaction hands rows to a [`ChunkWriter`] in chunk order,
//! in slices; each slice becomes an Arrow batch (three id strings a row)
//! only while it is encoded, so the memory a file costs to write is a row
//! group's worth, not a day's. The file appears under its name only in
//! [`ChunkWriter::finish`]: temporary name, fsync, rename, directory
//! fsync. A writer dropped before that removes its temporary file.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;

use super::format::{readings_schema, to_record_batch, writer_properties};
use super::names::SensorNames;
use super::{ChunkId, ChunkMeta, day_of};
use crate::error::{Error, Result};
use crate::faults::{FailPoint, inject};
use crate::reading::Reading;
use crate::tree::sync_dir;

/// Rows a caller gathers before each [`ChunkWriter::write`]: a row group.
pub(crate) const WRITE_ROWS: usize = super::format::ROW_GROUP_ROWS;

/// A chunk file being written; see the module docs.
pub(crate) struct ChunkWriter<'a> {
    names: &'a SensorNames,
    id: ChunkId,
    day: i64,
    /// The file's own name, and its folder.
    path: PathBuf,
    dir: PathBuf,
    // (Dropped before `tmp`, which removes the file it writes.)
    writer: ArrowWriter<Crc32Writer>,
    tmp: TempFile,
    rows: u64,
    min_ts_ms: i64,
    max_ts_ms: i64,
}

impl<'a> ChunkWriter<'a> {
    /// Starts chunk `id` of `day` under `data_dir`.
    pub(crate) fn create(
        data_dir: &Path,
        id: ChunkId,
        day: i64,
        names: &'a SensorNames,
    ) -> Result<Self> {
        let path = data_dir.join(ChunkMeta::relative_path(id, day));
        let dir = path
            .parent()
            .ok_or_else(|| Error::InvalidArgument(format!("{} has no folder", path.display())))?
            .to_owned();
        let tmp = dir.join(format!(".tmp-{id:020}.parquet"));
        let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", tmp.display()), e);
        // A retired file's last reader may remove an emptied day folder
        // just after it was created here: create it again once.
        let file = std::fs::create_dir_all(&dir)
            .and_then(|()| File::create(&tmp))
            .or_else(|e| {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e);
                }
                std::fs::create_dir_all(&dir)?;
                File::create(&tmp)
            })
            .map_err(|e| io("creating", e))?;
        inject(FailPoint::ChunkWrite)
            .map_err(|e| io("writing", e))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
        let tmp = TempFile(Some(tmp));
        let out = Crc32Writer {
            file,
            crc: crc32fast::Hasher::new(),
        };
        let writer = ArrowWriter::try_new(out, readings_schema(), Some(writer_properties()))
            .map_err(|e| Error::parquet_write(tmp.path(), e))?;
        Ok(Self {
            names,
            id,
            day,
            path,
            dir,
            tmp,
            writer,
            rows: 0,
            min_ts_ms: i64::MAX,
            max_ts_ms: i64::MIN,
        })
    }

    /// Appends `rows`: this day's, continuing chunk order (by rank, then
    /// time), none already written.
    pub(crate) fn write(&mut self, rows: &[Reading]) -> Result<()> {
        // A file holds one day: a row of another (a damaged file being
        // merged) fails the file rather than landing in the wrong day.
        if let Some(r) = rows.iter().find(|r| day_of(r.ts_ms) != self.day) {
            return Err(Error::InvalidArgument(format!(
                "a reading at {} ms does not belong in the chunk file of {}",
                r.ts_ms,
                super::day_name(self.day)
            )));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let batch = to_record_batch(rows, self.names)?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::parquet_write(self.tmp.path(), e))?;
        self.rows += rows.len() as u64;
        for r in rows {
            self.min_ts_ms = self.min_ts_ms.min(r.ts_ms);
            self.max_ts_ms = self.max_ts_ms.max(r.ts_ms);
        }
        Ok(())
    }

    /// Completes the file and gives it its name; returns its manifest
    /// entry with `precedence`. The caller commits it.
    pub(crate) fn finish(self, precedence: u64) -> Result<ChunkMeta> {
        let Self {
            id,
            day,
            path,
            dir,
            mut tmp,
            writer,
            rows,
            min_ts_ms,
            max_ts_ms,
            ..
        } = self;
        let tmp_path = tmp.path().to_owned();
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} {}", tmp_path.display()), e);
        let Crc32Writer { file, crc } = writer
            .into_inner()
            .map_err(|e| Error::parquet_write(&tmp_path, e))?;
        // (The rename after this cannot lose the folder: it holds the file.)
        inject(FailPoint::ChunkSync)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("fsync of", e))?;
        let bytes = file.metadata().map_err(|e| io("stat of", e))?.len();
        std::fs::rename(&tmp_path, &path).map_err(|e| io("renaming", e))?;
        tmp.0 = None;
        let synced = inject(FailPoint::ChunkDirSync)
            .map_err(|e| Error::io(format!("fsync of {}", dir.display()), e))
            .and_then(|()| sync_dir(&dir));
        if let Err(e) = synced {
            // The new name may or may not be durable: take it back, so no
            // file the manifest will never name is left in the folder.
            let _ = std::fs::remove_file(&path);
            let _ = sync_dir(&dir);
            return Err(e);
        }
        let empty = rows == 0;
        Ok(ChunkMeta {
            id,
            precedence,
            day,
            file: ChunkMeta::relative_path(id, day),
            rows,
            bytes,
            min_ts_ms: if empty { 0 } else { min_ts_ms },
            max_ts_ms: if empty { 0 } else { max_ts_ms },
            crc32: Some(crc.finalize()),
        })
    }
}

/// A temporary file, removed when dropped unless it was renamed (`None`).
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `rows` (one day, in chunk order, no duplicates) as chunk `id`
/// with `precedence`; returns its manifest entry, which the caller
/// commits.
pub(crate) fn write_chunk(
    data_dir: &Path,
    id: ChunkId,
    precedence: u64,
    day: i64,
    rows: &[Reading],
    names: &SensorNames,
) -> Result<ChunkMeta> {
    let mut out = ChunkWriter::create(data_dir, id, day, names)?;
    for slice in rows.chunks(WRITE_ROWS) {
        out.write(slice)?;
    }
    out.finish(precedence)
}

/// Passes writes through to a file, keeping the CRC-32 of every byte.
struct Crc32Writer {
    file: File,
    crc: crc32fast::Hasher,
}

impl std::io::Write for Crc32Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::read_chunk;
    use crate::ids::SensorKey;

    fn reading(sensor: u32, ts_ms: i64) -> Reading {
        Reading {
            sensor: SensorKey(sensor),
            ts_ms,
            value_kwh: ts_ms as f64 / 1e3,
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let day_dirs = std::fs::read_dir(dir.join("chunks/readings"))
            .into_iter()
            .flatten();
        for day in day_dirs.flatten() {
            for f in std::fs::read_dir(day.path()).unwrap().flatten() {
                out.push(f.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    /// Slices written one after another read back as one file in order,
    /// with the count and time span of all of them.
    #[test]
    fn slices_become_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let names = SensorNames::from_catalog(
            &crate::test_util::catalog_with_sensors(dir.path(), 2).view(),
        );
        let rows: Vec<Reading> = (0..2)
            .flat_map(|s| (0..1_000).map(move |i| reading(s, 1_000 + i * 60_000)))
            .collect();
        let mut out = ChunkWriter::create(dir.path(), ChunkId(3), 0, &names).unwrap();
        for slice in rows.chunks(300) {
            out.write(slice).unwrap();
        }
        out.write(&[]).unwrap();
        let meta = out.finish(7).unwrap();
        assert_eq!((meta.rows, meta.precedence), (2_000, 7));
        assert_eq!(
            (meta.min_ts_ms, meta.max_ts_ms),
            (1_000, 1_000 + 999 * 60_000)
        );
        assert_eq!(
            read_chunk(&dir.path().join(&meta.file), &names).unwrap(),
            rows
        );
        assert_eq!(files(dir.path()), vec![format!("part-{:020}.parquet", 3)]);
    }

    /// A slice that cannot be written (a sensor the catalog does not know,
    /// a reading of another day) fails the file, and the writer leaves
    /// nothing behind once dropped.
    #[test]
    fn a_failed_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let names = SensorNames::from_catalog(
            &crate::test_util::catalog_with_sensors(dir.path(), 1).view(),
        );
        let mut out = ChunkWriter::create(dir.path(), ChunkId(4), 0, &names).unwrap();
        out.write(&[reading(0, 1)]).unwrap();
        assert_eq!(files(dir.path()).len(), 1, "the temporary file");
        assert!(out.write(&[reading(5, 2)]).is_err());
        let other_day = out.write(&[reading(0, crate::reading::DAY_MS)]);
        assert!(other_day.unwrap_err().to_string().contains("1970-01-01"));
        drop(out);
        assert!(files(dir.path()).is_empty());
    }
}
