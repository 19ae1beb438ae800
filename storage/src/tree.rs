//! Durable file-system steps: fsync of a folder, and copying directory
//! trees durably (the one helper behind backups, online and offline, and
//! the rollup files' copy).
//!
//! A file is hard-linked where that is safe and possible (files that are
//! only ever replaced, never changed in place: chunk and rollup files) and
//! copied otherwise; a copied file is fsynced, and so is every folder of
//! the copy, bottom-up, so the copy survives a crash right after it was
//! reported done.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// How [`copy_tree`] brings files over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Hard links where possible (for files never changed in place).
    LinkOrCopy,
    /// Always a copy (databases are changed in place).
    Copy,
}

/// Brings `from` to `to` (creating its folder): a hard link or a copy, the
/// copy fsynced.
pub(crate) fn link_or_copy(from: &Path, to: &Path, transfer: Transfer) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    if transfer == Transfer::LinkOrCopy && std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync of {}", to.display()), e))
}

/// Copies the tree `from` into `to`, leaving out temporary files (`.tmp*`)
/// and whatever `skip` names, then fsyncs every folder of `to`. A missing
/// `from` copies nothing.
pub fn copy_tree(
    from: &Path,
    to: &Path,
    transfer: Transfer,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<()> {
    copy_files(from, to, transfer, skip)?;
    sync_dirs(to)
}

fn copy_files(
    from: &Path,
    to: &Path,
    transfer: Transfer,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", from.display()), e)),
    };
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", from.display()), e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name().to_string_lossy().starts_with(".tmp") || skip(&src) {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
        if kind.is_dir() {
            copy_files(&src, &dst, transfer, skip)?;
        } else {
            link_or_copy(&src, &dst, transfer)?;
        }
    }
    Ok(())
}

/// fsyncs a directory, making a rename or unlink in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))
}

/// fsyncs `root` and every folder below it, deepest first.
pub(crate) fn sync_dirs(root: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(root).map_err(|e| Error::io(format!("listing {}", root.display()), e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            sync_dirs(&entry.path())?;
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_links_skips_and_leaves_out_temporary_files() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let target = to.path().join("copy");
        std::fs::create_dir_all(from.path().join("a/b")).unwrap();
        std::fs::write(from.path().join("a/b/x"), b"x").unwrap();
        std::fs::write(from.path().join("a/.tmp-y"), b"y").unwrap();
        std::fs::create_dir_all(from.path().join("skipped")).unwrap();
        std::fs::write(from.path().join("skipped/z"), b"z").unwrap();
        let skip = |p: &Path| p.ends_with("skipped");
        copy_tree(from.path(), &target, Transfer::Copy, &skip).unwrap();
        assert_eq!(std::fs::read(target.join("a/b/x")).unwrap(), b"x");
        assert!(!target.join("a/.tmp-y").exists());
        assert!(!target.join("skipped").exists());
        // A copy is not a link: changing the original leaves it.
        std::fs::write(from.path().join("a/b/x"), b"changed").unwrap();
        assert_eq!(std::fs::read(target.join("a/b/x")).unwrap(), b"x");
        copy_tree(
            from.path(),
            &to.path().join("missing-ok"),
            Transfer::LinkOrCopy,
            &skip,
        )
        .unwrap();
        copy_tree(
            &from.path().join("nothing"),
            &to.path().join("n"),
            Transfer::Copy,
            &skip,
        )
        .unwrap_or(());
    }
}
