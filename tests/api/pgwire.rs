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

pub(crate) fn with_pgwire(extra: &str) -> Options {
    Options {
        config: Some(format!("[pgwire]\nlisten = \"127.0.0.1:0\"\n{extra}")),
        ..Options::default()
    }
}

/// The PostgreSQL listener's address, from the daemon's log.
pub(crate) fn pg_port(server: &Server) -> u16 {
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
pub(crate) async fn two_tenants(server: &Server, n: i64) -> (i64, String, String) {
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
    let answer = pg
        .query(
            "SELECT count(*) FROM readings r1, readings r2, readings r3, readings r4",
            &[],
        )
        .await;
    canceller
        .await
        .unwrap()
        .expect("the cancel request was sent");
    let e = answer.expect_err("the runaway was cancelled");
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

/// A client speaking the protocol by hand, for what drivers never send.
struct Raw {
    socket: tokio::net::TcpStream,
}

impl Raw {
    /// Connects and sends the start-up message (no TLS).
    async fn start(port: u16) -> Raw {
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut raw = Raw { socket };
        raw.startup().await;
        raw
    }

    async fn startup(&mut self) {
        use tokio::io::AsyncWriteExt;
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for s in ["user", "raw", "database", "wattline", ""] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        self.socket.write_all(&message).await.unwrap();
    }

    /// Logs in with `key`; panics unless the server gets ready.
    async fn login(port: u16, key: &str) -> Raw {
        let mut raw = Raw::start(port).await;
        assert_eq!(raw.read().await.unwrap().0, b'R');
        let mut password = key.as_bytes().to_vec();
        password.push(0);
        raw.send(b'p', &password).await.unwrap();
        raw.until(b'Z').await.unwrap();
        raw
    }

    async fn send(&mut self, kind: u8, body: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        message.extend_from_slice(body);
        self.socket.write_all(&message).await
    }

    /// The next message: its type and body; `None` once the server closed.
    async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(30), self.socket.read_exact(&mut head))
            .await
            .expect("an answer within 30 s")
            .ok()?;
        let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        self.socket.read_exact(&mut body).await.ok()?;
        Some((head[0], body))
    }

    /// The types of the messages up to and including `kind`.
    async fn until(&mut self, kind: u8) -> Option<Vec<u8>> {
        let mut seen = Vec::new();
        loop {
            let (k, _) = self.read().await?;
            seen.push(k);
            if k == kind {
                return Some(seen);
            }
        }
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Parse (unnamed) of `sql`, Bind with `params` as text, Execute asking
/// for `max_rows`, Sync.
fn extended_message(
    sql: &str,
    param_formats: &[i16],
    params: &[&str],
    max_rows: i32,
) -> Vec<(u8, Vec<u8>)> {
    let mut parse = cstr("");
    parse.extend(cstr(sql));
    parse.extend(0i16.to_be_bytes());
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend((param_formats.len() as i16).to_be_bytes());
    for f in param_formats {
        bind.extend(f.to_be_bytes());
    }
    bind.extend((params.len() as i16).to_be_bytes());
    for p in params {
        bind.extend((p.len() as i32).to_be_bytes());
        bind.extend(p.as_bytes());
    }
    bind.extend(0i16.to_be_bytes());
    let mut execute = cstr("");
    execute.extend(max_rows.to_be_bytes());
    vec![
        (b'P', parse),
        (b'B', bind),
        (b'E', execute),
        (b'S', Vec::new()),
    ]
}

#[tokio::test]
async fn hostile_extended_messages_get_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (_, key_a, _) = two_tenants(&server, 3).await;
    let port = pg_port(&server);
    let mut raw = Raw::login(port, &key_a).await;
    // Execute asking for 2^31 - 1 rows: capped, answered in full.
    for (kind, body) in extended_message("SELECT sensor_id FROM readings", &[], &[], i32::MAX) {
        raw.send(kind, &body).await.unwrap();
    }
    let seen = raw.until(b'Z').await.expect("the daemon answered");
    assert_eq!(seen.iter().filter(|k| **k == b'D').count(), 6, "{seen:?}");
    assert!(seen.contains(&b'C'), "{seen:?}");
    // Two parameter formats for three parameters; a format code of 7.
    for formats in [&[0i16, 0][..], &[7][..]] {
        let sql = "SELECT $1::text, $2::text, $3::text";
        for (kind, body) in extended_message(sql, formats, &["a", "b", "c"], 0) {
            raw.send(kind, &body).await.unwrap();
        }
        let seen = raw.until(b'Z').await.expect("the connection lives on");
        assert!(seen.contains(&b'E'), "{formats:?}: {seen:?}");
    }
    for (kind, body) in extended_message("SELECT count(*) FROM readings", &[], &[], 0) {
        raw.send(kind, &body).await.unwrap();
    }
    assert!(raw.until(b'Z').await.unwrap().contains(&b'D'));
    server.assert_alive().await;
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn clients_that_do_not_log_in_are_cut_off_early() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    server.create_tenant("alpha").await;
    let key = server.create_key("tenant", Some("alpha")).await;
    let port = pg_port(&server);
    // A query before the password, announcing 500 MB: disconnected at once.
    let mut raw = Raw::start(port).await;
    assert_eq!(raw.read().await.unwrap().0, b'R');
    let mut head = vec![b'Q'];
    head.extend(500_000_000u32.to_be_bytes());
    use tokio::io::AsyncWriteExt;
    raw.socket.write_all(&head).await.unwrap();
    assert!(raw.read().await.is_none(), "still connected");
    // A huge password: the same.
    let mut raw = Raw::start(port).await;
    raw.read().await.unwrap();
    let mut head = vec![b'p'];
    head.extend(100_000_000u32.to_be_bytes());
    raw.socket.write_all(&head).await.unwrap();
    assert!(raw.read().await.is_none(), "still connected");
    // Connected but silent, then a start-up message late, then silent
    // again: closed 10 s after connecting (one deadline for the login).
    let started = Instant::now();
    let mut slow = Raw {
        socket: tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap(),
    };
    tokio::time::sleep(Duration::from_secs(7)).await;
    slow.startup().await;
    assert_eq!(slow.read().await.map(|m| m.0), Some(b'R'));
    assert!(slow.read().await.is_none(), "still connected");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(13), "{elapsed:?}");
    // Logged in, a message past 1 MiB ends the connection too.
    let mut raw = Raw::login(port, &key).await;
    let mut head = vec![b'Q'];
    head.extend(((2 << 20) as u32).to_be_bytes());
    raw.socket.write_all(&head).await.unwrap();
    assert!(raw.read().await.is_none(), "still connected");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wattline_pgwire_violations_total 4"),
        "{metrics}"
    );
    // Nobody else was hurt.
    let pg = connect(&server, &key).await.unwrap();
    let one: i64 = pg.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_session_keeps_bounded_state_and_answers_in_full_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("[query]\nmax_rows = 5\n")).await;
    let (_, key_a, _) = two_tenants(&server, 3).await;
    let pg = connect(&server, &key_a).await.unwrap();
    // Six rows where five may be answered: an error, not five rows.
    let e = pg
        .query("SELECT * FROM readings", &[])
        .await
        .expect_err("more rows than query.max_rows");
    assert_eq!(code(&e), SqlState::PROGRAM_LIMIT_EXCEEDED, "{e:?}");
    assert_eq!(
        pg.query("SELECT * FROM readings LIMIT 5", &[])
            .await
            .unwrap()
            .len(),
        5
    );
    // Named statements are capped per session.
    let mut kept = Vec::new();
    let e = loop {
        match pg.prepare("SELECT 1").await {
            Ok(s) => kept.push(s),
            Err(e) => break e,
        }
        assert!(kept.len() <= 256, "no cap on named statements");
    };
    assert_eq!(kept.len(), 256);
    assert_eq!(code(&e), SqlState::PROGRAM_LIMIT_EXCEEDED, "{e:?}");
    // Closing some makes room.
    kept.truncate(200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    pg.prepare("SELECT 2").await.unwrap();
    // A parameter the query leaves open, typed by the client.
    let stmt = pg
        .prepare_typed("SELECT length(repeat('x', $1))", &[Type::INT8])
        .await
        .unwrap();
    let n: i32 = pg.query_one(&stmt, &[&3i64]).await.unwrap().get(0);
    assert_eq!(n, 3);
    let echo = pg
        .prepare_typed("SELECT $1 AS v", &[Type::INT8])
        .await
        .unwrap();
    let row = pg.query_one(&echo, &[&7i64]).await.unwrap();
    let shown: String = match row.columns()[0].type_() {
        &Type::INT8 => row.get::<_, i64>(0).to_string(),
        _ => row.get(0),
    };
    assert_eq!(shown, "7");
}

#[tokio::test]
async fn a_revoked_key_ends_its_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    server.create_tenant("alpha").await;
    let r = server
        .admin(reqwest::Method::POST, "/api/v1/keys")
        .json(&json!({"role": "tenant", "tenant_id": "alpha", "name": "grafana"}))
        .send()
        .await
        .unwrap();
    let created: Value = r.json().await.unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    let pg = connect(&server, &key).await.unwrap();
    pg.query_one("SELECT 1", &[]).await.unwrap();
    let r = server
        .admin(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let e = pg.query_one("SELECT 1", &[]).await.expect_err("revoked");
    assert_eq!(
        code(&e),
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "{e:?}"
    );
    assert!(connect(&server, &key).await.is_err());
}

#[tokio::test]
async fn catalog_views_and_errors_show_nothing_of_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), with_pgwire("")).await;
    let (_, key_a, key_b) = two_tenants(&server, 2).await;
    let pg = connect(&server, &key_a).await.unwrap();
    let mut seen = String::new();
    for sql in [
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM information_schema.columns",
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT * FROM pg_catalog.pg_namespace",
        "SELECT * FROM pg_catalog.pg_attribute",
        "SELECT * FROM pg_catalog.pg_type",
        "SELECT * FROM pg_catalog.pg_attrdef",
        "SELECT * FROM pg_catalog.pg_description",
        "SELECT * FROM pg_extension",
        "SELECT current_setting('search_path'), quote_ident(sensor_id) FROM readings",
        "SELECT current_setting('nosuch')",
        "SELECT pg_catalog.pg_get_expr('x', 1), pg_catalog.current_schemas(true)",
        "SELECT 'readings'::regclass, 'nosuch'::regclass",
        "SELECT sensor_id::regclass FROM readings",
        "SHOW ALL",
        "SELECT current_user, session_user, version()",
        "SELECT * FROM readings WHERE sensor_id = 'b1'",
        "SELECT CAST(sensor_id AS INT) FROM readings",
        "SELECT 1 / CAST(value_kwh - value_kwh AS INT) FROM readings WHERE sensor_id = 'b2'",
    ] {
        match pg.simple_query(sql).await {
            Ok(messages) => {
                for m in messages {
                    if let SimpleQueryMessage::Row(r) = m {
                        for i in 0..r.len() {
                            seen.push_str(r.get(i).unwrap_or(""));
                            seen.push('\n');
                        }
                    }
                }
            }
            Err(e) => seen.push_str(&format!("{e:?}\n")),
        }
    }
    for foreign in ["bravo", "b1", "b2", "bb"] {
        assert!(!seen.contains(foreign), "{foreign} seen by alpha:\n{seen}");
    }
    assert!(seen.contains("readings"), "{seen}");
    // Another tenant's sensor named as a relation: as unknown as any name.
    let error = |name: &'static str| {
        let pg = &pg;
        async move {
            let e = pg
                .simple_query(&format!("SELECT '{name}'::regclass"))
                .await
                .unwrap_err();
            (code(&e), format!("{e:?}").replace(name, "NAME"))
        }
    };
    assert_eq!(error("b1").await, error("zz").await);
    // Table shapes are the same for every tenant.
    let shapes = "SELECT attrelid, attname, atttypid FROM pg_catalog.pg_attribute ORDER BY 1, 2";
    let of_a = pg.query(shapes, &[]).await.unwrap();
    let pg_b = connect(&server, &key_b).await.unwrap();
    let of_b = pg_b.query(shapes, &[]).await.unwrap();
    let names = |rows: &[tokio_postgres::Row]| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(1)).collect()
    };
    assert!(names(&of_a).contains(&"value_kwh".to_string()));
    assert_eq!(names(&of_a), names(&of_b));
}
