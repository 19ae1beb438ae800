//! DuckDB for Python, the independent reader of chunk files, installed
//! from PyPI on first use into the build's temp folder. Shared by the
//! end-to-end tests and the cold-store benchmark (`#[path]`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// A `PYTHONPATH` under which `import duckdb` works.
pub(crate) fn duckdb_pythonpath() -> PathBuf {
    pythonpath("pydeps", "duckdb", &["duckdb==2.0.1"])
}

/// A `PYTHONPATH` with what the fleet tests and bench need: moto's S3 server (and
/// boto3), DuckDB 1.5 with its Delta extension as a file (the
/// extension's wheels exist for 1.5, not yet for 2.0), and the `deltalake`
/// package to write a table as an older version would have.
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub(crate) fn fleet_pythonpath() -> PathBuf {
    pythonpath(
        "pydeps-fleet",
        "moto, boto3, duckdb, duckdb_extension_delta, deltalake",
        &[
            "moto[server]==5.2.5",
            "duckdb==1.5.5",
            "duckdb-extension-delta==1.5.5",
            "deltalake==1.6.6",
        ],
    )
}

/// Installs `packages` (pinned versions) into `folder` of the build's
/// temp folder unless that folder already holds exactly them: a module of
/// another version installed elsewhere on the machine does not count.
///
/// Tests run in parallel and several may ask at once: one installs while
/// the others wait, and the install goes to a staging folder renamed into
/// place when complete, so no test ever imports from a half-written folder.
pub(crate) fn pythonpath(folder: &str, modules: &str, packages: &[&str]) -> PathBuf {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(folder);
    let wanted = packages.join("\n");
    let installed = std::fs::read_to_string(dir.join(".installed")).ok();
    if installed.as_deref() != Some(wanted.as_str()) {
        let staging = dir.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&staging)
            .args(packages)
            .status()
            .expect("python3 -m pip");
        assert!(status.success(), "installing {packages:?} from PyPI failed");
        std::fs::write(staging.join(".installed"), &wanted).expect("writing the install marker");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).expect("moving the installed packages into place");
    }
    let importable = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .env("PYTHONPATH", &dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "{modules} not importable from {}",
        dir.display()
    );
    dir
}
