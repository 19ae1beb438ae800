//! The PostgreSQL protocol through the PostgreSQL JDBC driver (Debian's
//! `libpostgresql-jdbc-java`, run by Debian's Java): what DBeaver and
//! other JDBC tools do on connecting (`tests/jdbc/Probe.java`), with a
//! tenant key that sees only its tenant's rows.

use std::process::Command;

use crate::pgwire::{pg_port, two_tenants, with_pgwire};
use crate::support::Server;

const DRIVER: &str = "/usr/share/java/postgresql.jar";

/// Runs the probe as `key`; returns (success, stdout, stderr).
fn probe(port: u16, key: &str) -> (bool, String, String) {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jdbc/Probe.java");
    let out = Command::new("java")
        .args(["-cp", DRIVER, source, &port.to_string(), key])
        .output()
        .expect("java (Debian's default-jre-headless) is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs Debian's Java and PostgreSQL JDBC driver; CI installs them"]
async fn the_jdbc_driver_lists_tables_and_columns_and_sees_the_tenant_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (_, key_a, _) = two_tenants(&server, 4).await;
    let port = pg_port(&server);
    let (ok, out, err) = probe(port, &key_a);
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"version 16.0"), "{out}");
    // The prepared statement: alpha's sensors only.
    let rows: Vec<&&str> = lines.iter().filter(|l| l.starts_with("rows ")).collect();
    assert_eq!(rows, [&"rows a1 4", &"rows a2 4"], "{out}");
    for table in ["readings", "sensors", "building_daily"] {
        assert!(lines.contains(&format!("table {table}").as_str()), "{out}");
    }
    // Column types as JDBC names them (java.sql.Types: DOUBLE 8,
    // TIMESTAMP 93, VARCHAR 12).
    for column in [
        "column sensor_id text 12",
        "column ts timestamptz 93",
        "column value_kwh float8 8",
    ] {
        assert!(lines.contains(&column), "{column} in:\n{out}");
    }
    assert!(lines.contains(&"schema public"), "{out}");

    let (ok, _, err) = probe(port, "wl_wrong");
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
}
