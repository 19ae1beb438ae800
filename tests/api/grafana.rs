//! The PostgreSQL protocol through Grafana's PostgreSQL driver (lib/pq,
//! Debian's `golang-github-lib-pq-dev`, built by Debian's Go): what
//! Grafana's PostgreSQL data source sends (`tests/grafana/probe.go`):
//! its health check, version detection, the query builder's table and
//! column lists and macro-expanded panel queries, with a tenant key that
//! sees only its tenant's rows.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pgwire::{pg_port, two_tenants, with_pgwire};
use crate::support::Server;

/// Builds the probe with Debian's Go and lib/pq (GOPATH mode, no module
/// download), caching Go's build files beside cargo's.
fn build_probe(dir: &Path) -> PathBuf {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grafana/probe.go");
    let binary = dir.join("probe");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(source)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", concat!(env!("CARGO_TARGET_TMPDIR"), "/go-cache"))
        .env("GOFLAGS", "")
        .output()
        .expect("go (Debian's golang-go) is installed");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

#[tokio::test]
#[ignore = "needs Debian's Go and lib/pq; CI installs them"]
async fn grafanas_driver_checks_lists_and_charts_the_tenant_rows() {
    let dir = tempfile::tempdir().unwrap();
    let probe = build_probe(dir.path());
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (start, key_a, _) = two_tenants(&server, 8).await;
    let port = pg_port(&server).to_string();
    let (from, to) = (start.to_string(), (start + 2 * 3_600_000).to_string());
    let out = Command::new(&probe)
        .args([port.as_str(), key_a.as_str(), from.as_str(), to.as_str()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |line: &str| assert!(lines.contains(&line), "{line} in:\n{stdout}");
    // Save & test, and the settings page's detection.
    has("ping ok");
    has("version 1600");
    has("timescaledb rows 0");
    // The query builder: tables, and columns with PostgreSQL's type names
    // (it offers time columns by them).
    for table in ["readings", "sensors", "building_hourly", "building_daily"] {
        has(&format!("table {table}"));
    }
    has("column ts timestamp with time zone");
    has("column value_kwh double precision");
    has("column sensor_id text");
    // A variable's values: alpha's sensors only.
    let variables: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("variable "))
        .collect();
    assert_eq!(variables, [&"variable a1", &"variable a2"], "{stdout}");
    // Panels: readings 1..=4 in the first hour, 5..=8 in the second, per
    // sensor; alpha's two sensors only.
    let first = crate::support::utc(start).replace(".000", "");
    let second = crate::support::utc(start + 3_600_000).replace(".000", "");
    let (e1, e2) = (start / 1000, start / 1000 + 3600);
    for line in [
        "timegroup types FLOAT8 FLOAT8".to_owned(),
        format!("timegroup row {} 20", go_float(e1)),
        format!("timegroup row {} 52", go_float(e2)),
        "datebin types TIMESTAMPTZ TEXT FLOAT8".to_owned(),
        format!("datebin row {first} a1 10"),
        format!("datebin row {first} a2 10"),
        format!("datebin row {second} a1 26"),
        format!("datebin row {second} a2 26"),
        "raw types TIMESTAMPTZ FLOAT8 TEXT FLOAT8".to_owned(),
        format!("raw row {first} {} a1 1", go_float(e1)),
    ] {
        has(&line);
    }
    let rows = lines.iter().filter(|l| l.contains(" row ")).count();
    assert_eq!(rows, 2 + 4 + 2, "{stdout}");
    // An unknown table: PostgreSQL's SQLSTATE, which Grafana shows.
    assert!(
        lines.iter().any(|l| l.starts_with("error 42P01 ")),
        "{stdout}"
    );

    // A wrong key fails Save & test.
    let out = Command::new(&probe)
        .args([port.as_str(), "wl_wrong", from.as_str(), to.as_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
}

/// Whole seconds (at least 10^6) as Go's `fmt.Sprint` prints them as a
/// float64: the shortest digits with an exponent, `1.7962776e+09`.
fn go_float(seconds: i64) -> String {
    let digits = seconds.to_string();
    let exponent = digits.len() - 1;
    let mantissa = digits.trim_end_matches('0');
    let (head, tail) = mantissa.split_at(1);
    if tail.is_empty() {
        format!("{head}e+{exponent:02}")
    } else {
        format!("{head}.{tail}e+{exponent:02}")
    }
}
