//! `wattline backup DIR`: a consistent copy of an appliance's data.
//!
//! With a daemon listening at the configured address, the daemon writes
//! the copy itself (`POST /api/v1/admin/backup`), so the copy is consistent
//! while ingestion goes on. With no daemon running, the data directory is
//! copied as it is; its databases are opened first to make sure no other
//! process is using them.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use wattline_storage::Transfer;

use crate::config::Settings;

pub(crate) fn run(settings: &Settings, dir: &Path) -> Result<()> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    match TcpStream::connect_timeout(&settings.listen, Duration::from_secs(2)) {
        Ok(_) => {
            let key = admin_key(&settings.data_dir)?;
            let answer = post_backup(settings, &key, &dir)?;
            // A sandboxed service (the packaged unit) writes a path outside
            // its writable folders into its own private view, or not at all.
            if !dir.join("meta.redb").exists() {
                bail!(
                    "the daemon reports a backup in {}, but it is not there for this command: \
                     the service can write only where its unit allows (the package: \
                     /var/lib/wattline and /var/backups/wattline); back up into a folder there",
                    dir.display()
                );
            }
            println!(
                "backup written to {} by the running daemon: {answer}",
                dir.display()
            );
        }
        Err(_) => {
            copy_offline(&settings.data_dir, &dir)?;
            println!(
                "no daemon at {}; copied {} to {}",
                settings.listen,
                settings.data_dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn admin_key(data_dir: &Path) -> Result<String> {
    if let Ok(key) = std::env::var("WATTLINE_ADMIN_KEY")
        && !key.is_empty()
    {
        return Ok(key);
    }
    let path = data_dir.join("admin.key");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (or set WATTLINE_ADMIN_KEY)", path.display()))?
        .trim()
        .to_owned())
}

/// Asks the daemon for the copy.
fn post_backup(settings: &Settings, key: &str, dir: &Path) -> Result<String> {
    let body = serde_json::json!({"dir": dir}).to_string();
    let (status, answer) = crate::http_client::request(
        settings.listen,
        "POST",
        "/api/v1/admin/backup",
        key,
        "application/json",
        &body,
        Duration::from_secs(3600),
    )?;
    if status != 200 {
        bail!("the daemon refused the backup ({status}): {answer}");
    }
    Ok(answer)
}

/// Copies a data directory no daemon is using. Its databases stay open
/// (locked) until the copy is done, so a daemon starting meanwhile fails
/// to open them instead of changing them under the copy. Everything is
/// copied (databases change in place: no hard links) and fsynced; the
/// readers' links under `chunks/open` are left out (rebuilt at start).
fn copy_offline(from: &Path, to: &Path) -> Result<()> {
    let mut held = Vec::new();
    for db in ["meta.redb", "wal.redb", "alerts.redb"] {
        let path = from.join(db);
        if path.exists() {
            // Fails while another process holds the database.
            held.push(redb::Database::open(&path).with_context(|| {
                format!(
                    "{} is in use, but no daemon answers at the configured address",
                    path.display()
                )
            })?);
        }
    }
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        bail!("backup directory {} is not empty", to.display());
    }
    let readers_links = from.join("chunks").join("open");
    wattline_storage::copy_tree(from, to, Transfer::Copy, &|p: &Path| {
        p == readers_links.as_path()
            || (p.parent() == Some(from)
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".check-")))
    })?;
    drop(held);
    Ok(())
}
