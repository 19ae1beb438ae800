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
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wattline_storage::{CheckReport, check_data_dir};

use crate::config::Settings;

/// Checks and prints; `Ok(false)` when something is broken.
pub(crate) fn run(settings: &Settings) -> Result<bool> {
    let data_dir = &settings.data_dir;
    if !data_dir.join("meta.redb").exists() {
        bail!(
            "{} holds no wattline data (no meta.redb); pass --data-dir or --config",
            data_dir.display()
        );
    }
    let scratch = Scratch::new()?;
    let (report, source) = if in_use(data_dir) {
        let copy = LiveCopy::make(settings)?;
        let report = check_data_dir(&copy.0, &scratch.0);
        (report, "a consistent copy made by the running daemon")
    } else {
        (
            check_data_dir(data_dir, &scratch.0),
            "the directory (no daemon running)",
        )
    };
    print(data_dir, source, &report);
    Ok(report.problems.is_empty())
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
    match report.problems.len() {
        0 => println!("no problems found"),
        n => println!("{n} problem(s) found"),
    }
}

/// Whether a daemon has the databases open: a read-only open is refused
/// only while a writer holds the file.
fn in_use(data_dir: &Path) -> bool {
    matches!(
        redb::Builder::new().open_read_only(data_dir.join("meta.redb")),
        Err(redb::DatabaseError::DatabaseAlreadyOpen)
    )
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
