//! DuckDB for Python, the independent reader of chunk files, installed
//! from PyPI on first use into the build's temp folder. Shared by the
//! end-to-end tests and the cold-store benchmark (`#[path]`).

use std::path::PathBuf;
use std::process::Command;

/// A `PYTHONPATH` under which `import duckdb` works.
pub(crate) fn duckdb_pythonpath() -> PathBuf {
    pythonpath("pydeps", "duckdb", &["duckdb==2.0.1"])
}

/// Installs `packages` into `folder` of the build's temp folder unless
/// `modules` already import from there.
pub(crate) fn pythonpath(folder: &str, modules: &str, packages: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(folder);
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {modules}")])
            .env("PYTHONPATH", &dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .args(packages)
            .status()
            .expect("python3 -m pip");
        assert!(status.success(), "installing {packages:?} from PyPI failed");
        assert!(importable(), "{modules} still not importable");
    }
    dir
}
