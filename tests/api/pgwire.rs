//! The PostgreSQL wire protocol, tried with real clients: tokio-postgres
//! (the extended protocol, binary values, prepared statements, cancel
//! requests) and Debian's `psql` (the simple protocol, TLS). Each tenant
//! key sees its own rows only, as over HTTP.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::{Options, Server, now_minute_ms, reading};

const QUARTER: i64 = 900_000;

fn with_pgwire(extra: &str) -> Options {
    Options {
        config: Some(format!("[pgwire]\nlisten = \"127.0.0.1:0\"\n{extra}")),
        ..Options::default()
    }
}

/// The PostgreSQL listener's address, from the daemon's log.
fn pg_port(server: &Server) -> u16 {
    let log = server.log();
    let at = log
        .find("PostgreSQL protocol on ")
        .unwrap_or_else(|| panic!("no PostgreSQL listener in the log:\n{log}"));
    let addr = log[at + "PostgreSQL protocol on ".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

async fn connect(server: &Server, key: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg_port(server))
        .user("grafana")
        .password(key)
        .dbname("wattline")
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Tenants alpha (sensors a1, a2) and bravo (b1, b2), `n` quarter-hourly
/// readings on each sensor from `start` (value i + 1 for the i-th);
/// returns `start` and both tenant keys.
async fn two_tenants(server: &Server, n: i64) -> (i64, String, String) {
    server.setup("alpha", "ba", &["a1", "a2"]).await;
    server.setup("bravo", "bb", &["b1", "b2"]).await;
    let start = (now_minute_ms() / 3_600_000 - 2 - n / 4) * 3_600_000;
    let readings: Vec<Value> = ["a1", "a2", "b1", "b2"]
        .iter()
        .flat_map(|s| (0..n).map(move |i| reading(s, start + i * QUARTER, (i + 1) as f64)))
        .collect();
    for chunk in readings.chunks(5000) {
        let r = server.post_json(&json!({ "readings": chunk })).await;
        assert_eq!(r.status(), 202);
    }
    let a = server.create_key("tenant", Some("alpha")).await;
    let b = server.create_key("tenant", Some("bravo")).await;
    (start, a, b)
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn code(e: &tokio_postgres::Error) -> SqlState {
    e.code()
        .cloned()
        .unwrap_or_else(|| panic!("no SQLSTATE in {e:?}"))
}

#[tokio::test]
async fn prepared_statements_bind_parameters_and_see_only_the_key_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (start, key_a, _) = two_tenants(&server, 8).await;
    let pg = connect(&server, &key_a).await.unwrap();

    let stmt = pg
        .prepare(
            "SELECT sensor_id, ts, value_kwh FROM readings \
             WHERE sensor_id = $1 AND ts >= $2 ORDER BY ts",
        )
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::TEXT, Type::TIMESTAMPTZ]);
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(types, vec![Type::TEXT, Type::TIMESTAMPTZ, Type::FLOAT8]);

    let rows = pg
        .query(&stmt, &[&"a1", &at(start + 2 * QUARTER)])
        .await
        .unwrap();
    let got: Vec<(String, DateTime<Utc>, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(String, DateTime<Utc>, f64)> = (2..8)
        .map(|i| ("a1".to_owned(), at(start + i * QUARTER), (i + 1) as f64))
        .collect();
    assert_eq!(got, want);
    // The same statement again, and with the other tenant's sensor: no rows.
    assert_eq!(
        pg.query(&stmt, &[&"a2", &at(start)]).await.unwrap().len(),
        8
    );
    assert!(
        pg.query(&stmt, &[&"b1", &at(start)])
            .await
            .unwrap()
            .is_empty()
    );

    let count: i64 = pg
        .query_one("SELECT count(*) FROM readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 16);
    let http = server
        .sql_with(&key_a, "SELECT count(*) AS n FROM readings")
        .await;
    assert_eq!(http["rows"][0][0], 16, "{http}");
    let tenants: Vec<String> = pg
        .query("SELECT tenant_id FROM tenants", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tenants, vec!["alpha"]);
    // A parameter typed by the client (int8 where the query has a float),
    // and a null.
    let typed = pg
        .prepare_typed(
            "SELECT count(*) FROM readings WHERE value_kwh > $1 AND ($2 IS NULL OR true)",
            &[Type::INT8],
        )
        .await
        .unwrap();
    assert_eq!(typed.params(), &[Type::INT8, Type::TEXT]);
    let n: i64 = pg
        .query_one(&typed, &[&6i64, &None::<String>])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);

    // The admin key sees every tenant.
    let admin = connect(&server, &server.admin).await.unwrap();
    let count: i64 = admin
        .query_one("SELECT count(*) FROM readings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 32);
}

#[tokio::test]
async fn errors_carry_sqlstates_and_the_session_survives_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (_, key_a, _) = two_tenants(&server, 2).await;
    let pg = connect(&server, &key_a).await.unwrap();
    for (sql, state) in [
        ("SELECT nope FROM readings", SqlState::UNDEFINED_COLUMN),
        ("SELECT * FROM nowhere", SqlState::UNDEFINED_TABLE),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("DELETE FROM readings", SqlState::READ_ONLY_SQL_TRANSACTION),
        ("COPY readings TO STDOUT", SqlState::FEATURE_NOT_SUPPORTED),
        ("SELECT 1; SELECT 2", SqlState::SYNTAX_ERROR),
    ] {
        let e = pg.query(sql, &[]).await.expect_err(sql);
        assert_eq!(code(&e), state, "{sql}: {e:?}");
    }
    // A parameter sent as text that is no number where the query needs one.
    let stmt = pg
        .prepare_typed(
            "SELECT count(*) FROM readings WHERE value_kwh > $1",
            &[Type::TEXT],
        )
        .await
        .unwrap();
    let e = pg.query(&stmt, &[&"x"]).await.expect_err("x is no float");
    assert_eq!(code(&e), SqlState::INVALID_TEXT_REPRESENTATION, "{e:?}");
    let one: i64 = pg.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn logins_need_a_known_query_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    server.create_tenant("alpha").await;
    let e = connect(&server, "wl_not_a_key")
        .await
        .expect_err("unknown key");
    assert_eq!(code(&e), SqlState::INVALID_PASSWORD, "{e:?}");
    let ingest = server.create_key("ingest", Some("alpha")).await;
    let e = connect(&server, &ingest).await.expect_err("ingest key");
    assert_eq!(
        code(&e),
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "{e:?}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wattline_pgwire_logins_total{result=\"refused\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_start_up_statements_and_catalog_views_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (_, key_a, _) = two_tenants(&server, 2).await;
    let pg = connect(&server, &key_a).await.unwrap();
    let messages = pg
        .simple_query(
            "SET extra_float_digits = 3; SET application_name = 'DBeaver'; BEGIN; \
             SHOW server_version; SELECT current_database(), current_schema(), version(); \
             COMMIT",
        )
        .await
        .unwrap();
    let rows: Vec<Vec<String>> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(rows[0], vec!["16.0"]);
    assert_eq!(rows[1][..2], ["wattline", "public"]);
    assert!(rows[1][2].starts_with("PostgreSQL 16.0"), "{rows:?}");
    let tables: Vec<String> = pg
        .query(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.contains(&"readings".to_owned()), "{tables:?}");
    assert!(tables.contains(&"building_hourly".to_owned()), "{tables:?}");
    let columns: Vec<(String, String)> = pg
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'readings' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(columns[0].0, "sensor_id", "{columns:?}");
    // Over HTTP the catalog views stay closed, as before.
    let (status, _, _) =
        crate::support::sql_status(&server, &key_a, "SELECT * FROM information_schema.tables")
            .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn grafana_time_series_queries_answer_per_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (start, key_a, _) = two_tenants(&server, 8).await;
    let pg = connect(&server, &key_a).await.unwrap();
    // Grafana expands $__timeFilter(ts) to a BETWEEN of two RFC 3339
    // literals, and groups with date_bin (or its epoch arithmetic).
    let (from, to) = (
        crate::support::utc(start),
        crate::support::utc(start + 2 * 3_600_000),
    );
    let by_date_bin = format!(
        "SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMP '1970-01-01') AS time, \
         sensor_id AS metric, sum(value_kwh) AS value FROM readings \
         WHERE ts BETWEEN '{from}' AND '{to}' GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let rows = pg.query(&by_date_bin, &[]).await.unwrap();
    let got: Vec<(DateTime<Utc>, String, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // Readings 1..=4 in the first hour, 5..=8 in the second, per sensor.
    let want = vec![
        (at(start), "a1".to_owned(), 10.0),
        (at(start), "a2".to_owned(), 10.0),
        (at(start + 3_600_000), "a1".to_owned(), 26.0),
        (at(start + 3_600_000), "a2".to_owned(), 26.0),
    ];
    assert_eq!(got, want);
    let by_epoch = format!(
        "SELECT floor(extract(epoch from ts)/3600)*3600 AS \"time\", sum(value_kwh) AS value \
         FROM readings WHERE ts BETWEEN '{from}' AND '{to}' GROUP BY 1 ORDER BY 1"
    );
    let rows = pg.query(&by_epoch, &[]).await.unwrap();
    let sums: Vec<f64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(sums, vec![20.0, 52.0]);
    // Building energy from the rollups (kept in the background: polled),
    // as a Grafana panel would chart it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = pg
            .query(
                "SELECT hour AS time, kwh FROM building_hourly \
                 WHERE building_id = $1 AND hour >= $2 ORDER BY 1",
                &[&"ba", &at(start)],
            )
            .await
            .unwrap();
        let hourly: Vec<f64> = rows.iter().map(|r| r.get(1)).collect();
        if hourly == [20.0, 52.0] {
            break;
        }
        assert!(Instant::now() < deadline, "building_hourly: {hourly:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_cancelled_query_stops_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_pgwire("[query]\ntimeout = \"60s\"\nmax_join_rows = 100000000000\n"),
    )
    .await;
    let (_, key_a, _) = two_tenants(&server, 100).await;
    let pg = connect(&server, &key_a).await.unwrap();
    let cancel = pg.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel_query(NoTls).await
    });
    let e = pg
        .query(
            "SELECT count(*) FROM readings r1, readings r2, readings r3, readings r4",
            &[],
        )
        .await
        .expect_err("the runaway was cancelled");
    canceller.await.unwrap().unwrap();
    assert_eq!(code(&e), SqlState::QUERY_CANCELED, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let one: i64 = pg.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    server.assert_alive().await;
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("max_connections = 2\n")).await;
    server.create_tenant("alpha").await;
    let key = server.create_key("tenant", Some("alpha")).await;
    let first = connect(&server, &key).await.unwrap();
    let second = connect(&server, &key).await.unwrap();
    let e = connect(&server, &key)
        .await
        .expect_err("a third connection");
    assert_eq!(code(&e), SqlState::TOO_MANY_CONNECTIONS, "{e:?}");
    drop(second);
    // The slot frees once the connection has closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match connect(&server, &key).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the freed slot was never reused: {e:?}"),
        }
    };
    for c in [first, third] {
        let one: i64 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

/// `psql` with `args`, the key as password; returns (success, stdout, stderr).
fn psql(port: u16, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "alpha",
            "-d",
            "wattline",
        ])
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", key)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (Debian's postgresql-client) is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs Debian's postgresql-client (psql); CI installs it"]
async fn psql_sees_the_tenant_rows_and_refuses_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (start, key_a, _) = two_tenants(&server, 4).await;
    let port = pg_port(&server);
    let (ok, out, err) = psql(
        port,
        &key_a,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT sensor_id, ts, value_kwh FROM readings ORDER BY sensor_id, ts",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("a1|") || l.starts_with("a2|")),
        "{out}"
    );
    // Timestamps as PostgreSQL prints them.
    let first = at(start).format("%Y-%m-%d %H:%M:%S+00").to_string();
    assert_eq!(lines[0], format!("a1|{first}|1"), "{out}");
    let (ok, out, err) = psql(
        port,
        &key_a,
        &["-c", "SELECT * FROM readings WHERE sensor_id = 'b1'"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("(0 rows)"), "{out}");

    // psql's own catalog query lists wattline's tables.
    let (ok, out, err) = psql(port, &key_a, &["-c", "\\dt"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("readings") && out.contains("building_daily"),
        "{out}"
    );

    let (ok, _, err) = psql(port, "wl_wrong", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test]
#[ignore = "needs Debian's postgresql-client (psql); CI installs it"]
async fn with_tls_configured_psql_connects_over_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = Server::start_with(
        dir.path(),
        with_pgwire(&format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert_path.display().to_string(),
            key_path.display().to_string()
        )),
    )
    .await;
    server.create_tenant("alpha").await;
    let key = server.create_key("tenant", Some("alpha")).await;
    let port = pg_port(&server);
    let run = |mode: &str| {
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user=alpha dbname=wattline sslmode={mode}"
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT 42"])
            .env("PGPASSWORD", &key)
            .output()
            .unwrap()
    };
    let secure = run("require");
    assert!(
        secure.status.success(),
        "{}",
        String::from_utf8_lossy(&secure.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&secure.stdout).trim(), "42");
    let plain = run("disable");
    assert!(!plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("TLS only"), "{err}");
}
