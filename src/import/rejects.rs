//! The side file of rejected lines.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// The side file of rejected lines, created at the first one.
pub(super) struct Rejects {
    pub(super) path: PathBuf,
    pub(super) file: Option<std::io::BufWriter<File>>,
}

impl Rejects {
    pub(super) fn add(&mut self, name: &str, number: u64, reason: &str, text: &str) -> Result<()> {
        if self.file.is_none() {
            // Not through a symbolic link: someone else's link in a shared
            // folder must not make this write over another file.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)
                .with_context(|| format!("creating {}", self.path.display()))?;
            self.file = Some(std::io::BufWriter::new(file));
        }
        let file = self.file.as_mut().expect("created above");
        writeln!(file, "{name}:{number}: {reason}\t{text}")
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        if let Some(f) = &mut self.file {
            f.flush()
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }
}
