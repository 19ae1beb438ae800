//! `wattline check`: verifies a data directory without changing it, on a
//! stopped appliance or a running one.
//!
//! A running daemon holds its databases locked, and copying them while it
//! writes could catch them half-written. So when they are locked, the
//! daemon is asked for a consistent copy (the online backup, inside the
//! data directory so chunk files are hard links, not copies) and that copy
//! is checked, then removed. Ingestion goes on meanwhile. With no daemon,
//! the directory is checked as it lies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wattline_storage::{CheckReport, check_data_dir};

use crate::config::Settings;

/// Checks and prints; the exit code says what was found: 0 nothing
/// broken, 1 something broken, 2 the check could not be done in full.
pub(crate) fn run(settings: &Settings) -> Result<ExitCode> {
    let data_dir = &settings.data_dir;
    if !data_dir.join("meta.redb").exists() {
        bail!(
            "{} holds no wattline data (no meta.redb); pass --data-dir or --config",
            data_dir.display()
        );
    }
    remove_stale_copies(data_dir);
    let scratch = Scratch::new()?;
    let (mut report, source) = match in_use(data_dir)? {
        Use::Running => {
            let copy = LiveCopy::make(settings)?;
            let mut report = check_data_dir(&copy.0, &scratch.0);
            report.notes.push(
                "the daemon is running: its databases were checked as the consistent copy it made (every row read from the live files, the copy's pages checked); reports.redb is not in that copy and was not checked".into(),
            );
            (report, "a consistent copy made by the running daemon")
        }
        // The read-only handles keep a daemon from starting (and writing)
        // while the files are read.
        Use::Idle(_held) => (
            check_data_dir(data_dir, &scratch.0),
            "the directory (no daemon running)",
        ),
    };
    report.notes.sort();
    print(data_dir, source, &report);
    Ok(if !report.problems.is_empty() {
        ExitCode::FAILURE
    } else if !report.failures.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print(data_dir: &Path, source: &str, report: &CheckReport) {
    println!("checked {}: {source}", data_dir.display());
    for line in &report.checked {
        println!("  ok    {line}");
    }
    for note in &report.notes {
        println!("  note  {note}");
    }
    for p in &report.problems {
        println!("  BROKEN {}: {}", p.file, p.what);
        println!("         what to do: {}", p.fix);
    }
    for f in &report.failures {
        println!("  NOT CHECKED {f}");
    }
    match (report.problems.len(), report.failures.len()) {
        (0, 0) => println!("no problems found"),
        (0, _) => println!("no problems found in what could be checked"),
        (n, _) => println!("{n} problem(s) found"),
    }
}

enum Use {
    Running,
    /// No daemon; the databases that could be opened read-only, held.
    Idle(Vec<redb::ReadOnlyDatabase>),
}

/// Whether a daemon has the databases open: a read-only open is refused
/// while a writer holds the file (also one of an older redb).
fn in_use(data_dir: &Path) -> Result<Use> {
    let mut held = Vec::new();
    for name in ["meta.redb", "wal.redb"] {
        let path = data_dir.join(name);
        if !path.exists() {
            continue;
        }
        match redb::Builder::new().open_read_only(&path) {
            Ok(db) => held.push(db),
            Err(
                redb::DatabaseError::DatabaseAlreadyOpen
                | redb::DatabaseError::LockProtocolMismatch,
            ) => return Ok(Use::Running),
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                bail!(
                    "cannot read {}: {e} (run as root or as the service's user)",
                    path.display()
                )
            }
            // Needs a repair (a crash), or damaged: the check says which.
            Err(_) => {}
        }
    }
    Ok(Use::Idle(held))
}

/// Removes copies left by checks that were interrupted (their process is
/// gone): they hold hard links that would keep replaced chunk files.
fn remove_stale_copies(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(".check-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An empty folder for the database copies, removed when done.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("wattline-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running daemon's backup of its own directory, inside it (the only
/// place a hardened unit lets it write), removed when done: removing it
/// removes hard links, never the live files.
struct LiveCopy(PathBuf);

impl LiveCopy {
    fn make(settings: &Settings) -> Result<LiveCopy> {
        let dir =
            std::path::absolute(&settings.data_dir)?.join(format!(".check-{}", std::process::id()));
        let key = crate::backup::admin_key(&settings.data_dir)?;
        let body = serde_json::json!({ "dir": dir }).to_string();
        let copy = LiveCopy(dir);
        let (status, answer) = crate::http_client::request(
            settings.listen,
            "POST",
            "/api/v1/admin/backup",
            &key,
            "application/json",
            &body,
            Duration::from_secs(3600),
        )
        .with_context(|| {
            format!(
                "the data directory is in use, but no daemon answers at {} (pass the --config it runs with)",
                settings.listen
            )
        })?;
        if status != 200 {
            bail!("the running daemon could not copy its data for the check ({status}): {answer}");
        }
        Ok(copy)
    }
}

impl Drop for LiveCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
