//! Read-only verification of a data directory (`wattline check`).
//!
//! Every file the appliance needs is read in full: each database (on a
//! copy, since opening a redb file may repair it, which writes), its
//! integrity checked page by page and its rows decoded; every chunk file
//! the manifest names, against the manifest's size, CRC-32 and row count,
//! and decoded; every rollup file decoded. The directory itself is never
//! written. A daemon holds its databases locked: on a live directory the
//! caller checks a consistent copy the daemon made (`ReadingStore::backup`),
//! whose chunk files are hard links to the live ones.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::catalog::Catalog;
use crate::chunk::ChunkMeta;

/// One thing found broken, and what the operator should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Relative to the data directory.
    pub file: String,
    pub what: String,
    pub fix: &'static str,
}

/// What a check read, and what it found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// One line per part checked, for the summary.
    pub checked: Vec<String>,
    /// Not broken, but worth knowing (an unclean shutdown, old chunks
    /// without a checksum, files the daemon will delete at start).
    pub notes: Vec<String>,
    pub problems: Vec<Problem>,
    /// The check itself could not be done in full (its scratch folder
    /// could not take a copy): not a verdict on the data.
    pub failures: Vec<String>,
}

const RESTORE_DB: &str = "stop the daemon and put back this file from a backup (`wattline backup`); redb repairs an interrupted write by itself, not a damaged file";
const RESTORE_CHUNK: &str = "stop the daemon and put back this file from a backup (`wattline backup`); until then queries over its day fail";
const RESTORE_ROLLUP: &str = "stop the daemon and put back this file from a backup (`wattline backup`); until then rollups and /energy over its period fail";

/// Checks the data directory `dir`, copying its databases into `scratch`
/// (an empty directory) to open them.
pub fn check_data_dir(dir: &Path, scratch: &Path) -> CheckReport {
    let mut report = CheckReport::default();
    let catalog = check_catalog(dir, scratch, &mut report);
    let chunks = check_write_ahead(dir, scratch, &mut report);
    if let Some(chunks) = chunks {
        check_chunks(dir, &chunks, &mut report);
    }
    check_rollups(dir, &mut report);
    for name in ["alerts.redb", "reports.redb"] {
        if dir.join(name).exists() {
            check_database(dir, scratch, name, &mut report);
        }
    }
    if let Some((tenants, buildings, sensors)) = catalog {
        report.checked.insert(
            0,
            format!(
                "catalog: {tenants} tenants, {buildings} buildings, {sensors} sensors, consistent"
            ),
        );
    }
    report
}

/// Copies `name` into `scratch`, opens it (noting a repair) and checks
/// every page. `None` (with a problem) when it cannot be used.
fn check_database(
    dir: &Path,
    scratch: &Path,
    name: &str,
    report: &mut CheckReport,
) -> Option<Database> {
    let problem = |what: String| Problem {
        file: name.to_owned(),
        what,
        fix: RESTORE_DB,
    };
    let copy = scratch.join(name);
    match copy_file(&dir.join(name), &copy) {
        Ok(()) => {}
        Err(CopyError::Read(e)) => {
            report
                .problems
                .push(problem(format!("cannot be read: {e}")));
            return None;
        }
        Err(CopyError::Write(e)) => {
            report.failures.push(format!(
                "{name} was not checked: copying it to {} failed: {e} (set TMPDIR to a folder with room)",
                scratch.display()
            ));
            return None;
        }
    }
    let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    let opened = Database::builder()
        .set_repair_callback(move |_| flag.store(true, std::sync::atomic::Ordering::Relaxed))
        .open(&copy);
    let mut db = match opened {
        Ok(db) => db,
        Err(e) => {
            report
                .problems
                .push(problem(format!("cannot be opened: {e}")));
            return None;
        }
    };
    if repaired.load(std::sync::atomic::Ordering::Relaxed) {
        report.notes.push(format!(
            "{name} was not closed cleanly (a crash or power loss); the daemon's next start recovers it, as this check did on a copy"
        ));
    }
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => report.problems.push(problem(
            "failed its integrity check (pages damaged; a repair was possible on a copy, data may be lost)".into(),
        )),
        Err(e) => {
            report
                .problems
                .push(problem(format!("failed its integrity check: {e}")));
            return None;
        }
    }
    let tables = count_tables(&db);
    match tables {
        Ok(n) => report
            .checked
            .push(format!("{name}: {n} tables, every page checked")),
        Err(e) => {
            report
                .problems
                .push(problem(format!("cannot be read: {e}")));
            return None;
        }
    }
    Some(db)
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copies a file, telling a failure to read it (the data) from a failure
/// to write the copy (the check's own folder).
fn copy_file(from: &Path, to: &Path) -> Result<(), CopyError> {
    use std::io::{Read, Write};
    let mut src = std::fs::File::open(from).map_err(CopyError::Read)?;
    let mut dst = std::fs::File::create(to).map_err(CopyError::Write)?;
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            return dst.flush().map_err(CopyError::Write);
        }
        dst.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

fn count_tables(db: &Database) -> Result<usize, redb::Error> {
    Ok(db.begin_read()?.list_tables()?.count())
}

/// The catalog: readable, and every reference in it leads somewhere.
fn check_catalog(
    dir: &Path,
    scratch: &Path,
    report: &mut CheckReport,
) -> Option<(usize, usize, usize)> {
    let name = "meta.redb";
    if !dir.join(name).exists() {
        report.problems.push(Problem {
            file: name.into(),
            what: "is missing: this is not a data directory, or the catalog was lost".into(),
            fix: RESTORE_DB,
        });
        return None;
    }
    drop(check_database(dir, scratch, name, report)?);
    // Catalog::open reads scratch/meta.redb, the copy.
    let catalog = match Catalog::open(scratch) {
        Ok(c) => c,
        Err(e) => {
            report.problems.push(Problem {
                file: name.into(),
                what: format!("rows cannot be read: {e}"),
                fix: RESTORE_DB,
            });
            return None;
        }
    };
    let view = catalog.view();
    let mut broken = Vec::new();
    for b in view.state.buildings.values() {
        if view.tenant(b.tenant_id.as_str()).is_none() {
            broken.push(format!(
                "building {} names missing tenant {}",
                b.id, b.tenant_id
            ));
        }
    }
    for s in view.sensors() {
        match view.building(s.building_id.as_str()) {
            None => broken.push(format!(
                "sensor {} names missing building {}",
                s.id, s.building_id
            )),
            Some(b) if b.tenant_id != s.tenant_id => broken.push(format!(
                "sensor {} is of tenant {} but its building {} of tenant {}",
                s.id, s.tenant_id, b.id, b.tenant_id
            )),
            Some(_) => {}
        }
        if view.sensor_by_key(s.key).map(|k| &k.id) != Some(&s.id) {
            broken.push(format!(
                "sensor {} shares its number {} with another",
                s.id, s.key.0
            ));
        }
    }
    for k in view.keys() {
        if let Some(t) = &k.tenant_id
            && view.tenant(t.as_str()).is_none()
        {
            broken.push(format!("key {} names missing tenant {t}", k.id));
        }
    }
    let counts = (
        view.tenants().count(),
        view.state.buildings.len(),
        view.sensors().count(),
    );
    let consistent = broken.is_empty();
    for what in broken {
        report.problems.push(Problem {
            file: name.into(),
            what,
            fix: RESTORE_DB,
        });
    }
    consistent.then_some(counts)
}

/// The write-ahead (every record decoded) and the manifest it shares a
/// file with; returns the manifest's chunks.
fn check_write_ahead(
    dir: &Path,
    scratch: &Path,
    report: &mut CheckReport,
) -> Option<Vec<ChunkMeta>> {
    let name = "wal.redb";
    if !dir.join(name).exists() {
        report.problems.push(Problem {
            file: name.into(),
            what: "is missing: the write-ahead and the manifest of chunk files are lost".into(),
            fix: RESTORE_DB,
        });
        return None;
    }
    let db = check_database(dir, scratch, name, report)?;
    let problem = |what: String| Problem {
        file: name.into(),
        what,
        fix: RESTORE_DB,
    };
    let chunks = match crate::manifest::load(&db) {
        Ok((chunks, _)) => chunks,
        Err(e) => {
            report
                .problems
                .push(problem(format!("the manifest cannot be read: {e}")));
            return None;
        }
    };
    match wal_records(&db) {
        Ok((records, readings)) => report.checked.push(format!(
            "write-ahead: {records} batches with {readings} readings not yet in chunk files, every one decoded"
        )),
        Err(what) => report.problems.push(problem(what)),
    }
    Some(chunks)
}

/// Decodes every write-ahead record: (records, readings).
fn wal_records(db: &Database) -> Result<(u64, u64), String> {
    let read = || -> Result<(u64, u64), crate::Error> {
        let txn = db.begin_read()?;
        let table = txn.open_table(crate::wal::WAL_TABLE)?;
        let (mut records, mut readings) = (0, 0);
        for entry in table.iter()? {
            let (seq, record) = entry?;
            let decoded = crate::wal::codec::decode(record.value()).map_err(|reason| {
                crate::Error::WalCorrupt {
                    seq: seq.value(),
                    reason,
                }
            })?;
            records += 1;
            readings += decoded.len() as u64;
        }
        Ok((records, readings))
    };
    read().map_err(|e| format!("the write-ahead cannot be read: {e}"))
}

/// Every chunk file the manifest names: there, of its size and checksum,
/// and decodable to its row count. Parquet files in the chunk folders that
/// the manifest does not name are noted (the daemon deletes them).
fn check_chunks(dir: &Path, chunks: &[ChunkMeta], report: &mut CheckReport) {
    let (mut bytes, mut without_crc) = (0u64, 0usize);
    for meta in chunks {
        let problem = |what: String| Problem {
            file: meta.file.clone(),
            what,
            fix: RESTORE_CHUNK,
        };
        let path = dir.join(&meta.file);
        // The size first: a truncated or grown file is not read whole.
        let data = match read_of_size(&path, meta.bytes) {
            Ok(Ok(d)) => d,
            Ok(Err(len)) => {
                report.problems.push(problem(format!(
                    "is {len} bytes long, the manifest says {} (truncated or overwritten)",
                    meta.bytes
                )));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report
                    .problems
                    .push(problem("is missing; the manifest names it".into()));
                continue;
            }
            Err(e) => {
                report
                    .problems
                    .push(problem(format!("cannot be read: {e}")));
                continue;
            }
        };
        bytes += data.len() as u64;
        match meta.crc32 {
            Some(crc) if crc32fast::hash(&data) != crc => {
                report.problems.push(problem(
                    "does not match its checksum: bytes changed on disk".into(),
                ));
                continue;
            }
            Some(_) => {}
            None => without_crc += 1,
        }
        match decoded_rows(bytes::Bytes::from(data)) {
            Ok(rows) if rows == meta.rows => {}
            Ok(rows) => report.problems.push(problem(format!(
                "holds {rows} rows, the manifest says {}",
                meta.rows
            ))),
            Err(e) => report
                .problems
                .push(problem(format!("cannot be decoded: {e}"))),
        }
    }
    report.checked.push(format!(
        "chunk files: {} named by the manifest, {bytes} bytes, every one read and decoded",
        chunks.len()
    ));
    if without_crc > 0 {
        report.notes.push(format!(
            "{without_crc} chunk files were written before checksums were recorded: decoded, not checksummed"
        ));
    }
    let named: HashSet<&str> = chunks.iter().map(|c| c.file.as_str()).collect();
    let strays = parquet_files(dir, "chunks/readings", report)
        .into_iter()
        .filter(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned();
            !named.contains(rel.as_str())
        })
        .count();
    if strays > 0 {
        report.notes.push(format!(
            "{strays} Parquet files in chunks/readings are not in the manifest (left by an interrupted flush or compaction); the daemon deletes them at start"
        ));
    }
}

/// The file's bytes if it is `bytes` long, else its length.
fn read_of_size(path: &Path, bytes: u64) -> std::io::Result<Result<Vec<u8>, u64>> {
    let len = std::fs::metadata(path)?.len();
    if len != bytes {
        return Ok(Err(len));
    }
    std::fs::read(path).map(Ok)
}

/// Every rollup partition file, decoded.
fn check_rollups(dir: &Path, report: &mut CheckReport) {
    let files = parquet_files(dir, "chunks/rollups", report);
    for path in &files {
        let rel = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let decoded = std::fs::read(path)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|d| {
                decoded_rows(bytes::Bytes::from(d)).map_err(|e| format!("cannot be decoded: {e}"))
            });
        if let Err(what) = decoded {
            report.problems.push(Problem {
                file: rel,
                what,
                fix: RESTORE_ROLLUP,
            });
        }
    }
    report.checked.push(format!(
        "rollup files: {}, every one read and decoded",
        files.len()
    ));
}

/// Reads every page of a Parquet file (footer, decompression, decoding):
/// its row count.
fn decoded_rows(data: bytes::Bytes) -> Result<u64, String> {
    // Garbage can make a decoder panic rather than fail: that is a broken
    // file too, not the end of the check.
    std::panic::catch_unwind(move || {
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| e.to_string())?;
        let mut rows = 0u64;
        for batch in reader {
            rows += batch.map_err(|e| e.to_string())?.num_rows() as u64;
        }
        Ok(rows)
    })
    .unwrap_or_else(|_| Err("the Parquet decoder failed on it".into()))
}

/// Finished Parquet files under `dir/folder` (not the `.tmp-` ones being
/// written), sorted. A folder that cannot be listed is a problem: what is
/// in it cannot be checked.
fn parquet_files(dir: &Path, folder: &str, report: &mut CheckReport) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(folder)];
    while let Some(current) = stack.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && current == dir.join(folder) => {
                continue;
            }
            Err(e) => {
                report.problems.push(Problem {
                    file: current.strip_prefix(dir).unwrap_or(&current).display().to_string(),
                    what: format!("cannot be listed: {e}"),
                    fix: "check the disk and the folder's permissions (run as root or the service's user)",
                });
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if name.ends_with(".parquet") && !name.starts_with(".tmp") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
