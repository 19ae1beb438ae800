//! The first admin key: created on the first start (or taken from
//! `WATTLINE_ADMIN_KEY`) and written to `<data-dir>/admin.key`, mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wattline_storage::{Catalog, NewApiKey, Role};

/// Makes sure an admin can get in. Returns the path of a freshly written
/// key file, if one was written.
pub(crate) fn ensure(catalog: &Catalog, data_dir: &Path) -> Result<Option<PathBuf>> {
    let from_env = std::env::var("WATTLINE_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let first_start = catalog.view().keys().next().is_none();
    let admin = || NewApiKey {
        name: "admin".into(),
        role: Role::Admin,
        tenant_id: None,
    };
    let secret = match (from_env, first_start) {
        (Some(secret), _) => {
            catalog
                .add_key(admin(), &secret)
                .context("registering WATTLINE_ADMIN_KEY")?;
            if !first_start {
                return Ok(None);
            }
            secret
        }
        (None, true) => {
            catalog
                .create_key(admin())
                .context("creating the admin key")?
                .1
        }
        (None, false) => return Ok(None),
    };
    let path = data_dir.join("admin.key");
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// Writes `secret` to `path` with mode 0600, whatever was there: a new
/// file is written (created 0600), fsynced and renamed over `path`, and
/// the folder fsynced.
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
