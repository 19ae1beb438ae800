//! The wall between tenants and the limits that keep one client from
//! hurting the others: user expressions never run on another tenant's rows
//! (no error oracles), answers carry no file paths, deep SQL and huge
//! headers are refused, slow or greedy clients are cut, metrics take no
//! client strings, and queries are bounded in joins, memory and slots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, error_code, now_minute_ms, reading, sql_status};

const QUARTER: i64 = 900_000;

/// Tenant a's id; tenant b's id, building and sensors are distinctive so a
/// leak in an error message can be recognized.
const A: &str = "alpha";
const B: &str = "bravo";
/// Strings of tenant b's data that must never reach tenant a.
const FOREIGN: [&str; 6] = ["b1", "b2", "bb", "|b", "bravo", "Building bb"];

fn with_config(toml: &str) -> Options {
    Options {
        config: Some(toml.into()),
        ..Options::default()
    }
}

/// Two tenants (`alpha` with building `ba` and sensors a1, a2; `bravo`
/// with building `bb` and sensors b1, b2), `per_sensor` readings on each
/// sensor; returns their tenant keys.
async fn two_tenants(server: &Server, per_sensor: i64) -> (String, String) {
    server.setup(A, "ba", &["a1", "a2"]).await;
    server.setup(B, "bb", &["b1", "b2"]).await;
    let t = now_minute_ms() - (per_sensor + 2) * QUARTER;
    let readings: Vec<Value> = ["a1", "a2", "b1", "b2"]
        .iter()
        .flat_map(|s| (0..per_sensor).map(move |i| reading(s, t + i * QUARTER, 1.0 + i as f64)))
        .collect();
    for chunk in readings.chunks(5000) {
        assert_eq!(
            server.post_json(&json!({"readings": chunk})).await.status(),
            202
        );
    }
    let key_a = server.create_key("tenant", Some(A)).await;
    let key_b = server.create_key("tenant", Some(B)).await;
    (key_a, key_b)
}

/// Runs SQL with `key`; returns the status and the JSON answer (or the
/// text, as a JSON string, when the answer is not JSON).
async fn ask(server: &Server, key: &str, sql: &str) -> (u16, Value) {
    let r = server
        .with_key(key, Method::POST, "/api/v1/sql")
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_owned)
}

/// The first string of tenant b's data that `text` contains.
fn leak(text: &str) -> Option<&'static str> {
    FOREIGN.iter().copied().find(|f| text.contains(f))
}

fn count_of(v: &Value) -> i64 {
    v["rows"][0][0].as_i64().unwrap_or(-1)
}

/// The tables to attack: name, a text column to build cast oracles from,
/// and the column to join `sensors` on.
const TABLES: [(&str, &str, &str); 11] = [
    ("readings", "sensor_id", "sensor_id"),
    ("sensor_hourly", "sensor_id", "sensor_id"),
    ("building_quarterly", "building_id", "tenant_id"),
    ("sensor_gaps", "sensor_id", "sensor_id"),
    ("building_hourly", "building_id", "tenant_id"),
    ("building_daily", "building_id", "tenant_id"),
    ("building_monthly", "building_id", "tenant_id"),
    ("building_yearly", "building_id", "tenant_id"),
    ("sensors", "sensor_id", "sensor_id"),
    ("buildings", "building_id", "tenant_id"),
    ("tenants", "name", "tenant_id"),
];

/// Waits until every rollup table holds rows of both tenants and stops
/// changing (the rollups trail ingestion by about a second).
async fn rollups_settled(server: &Server) {
    let snapshot = || async {
        let mut all = Vec::new();
        for t in [
            "sensor_hourly",
            "building_quarterly",
            "building_hourly",
            "building_daily",
            "building_monthly",
            "building_yearly",
        ] {
            all.push(
                server
                    .sql(&format!(
                        "SELECT tenant_id, count(*), sum(kwh), sum(readings) FROM {t} \
                         GROUP BY tenant_id ORDER BY tenant_id"
                    ))
                    .await,
            );
        }
        all
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = snapshot().await;
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = snapshot().await;
        if now == last && now.iter().all(|rows| rows.len() == 2) {
            return;
        }
        assert!(Instant::now() < deadline, "rollups never settled: {now:?}");
        last = now;
    }
}

/// Every oracle against every table, as tenant a; returns the failures.
async fn attack(server: &Server, key_a: &str, phase: &str) -> Vec<String> {
    let mut failures = Vec::new();
    // b's rows would divide by zero; a's never do.
    let div = |col: &str| format!("1/(CASE WHEN {col} = '{B}' THEN 0 ELSE 1 END)");
    for (t, text, join_on) in TABLES {
        let n = count_of(
            &server
                .sql_with(key_a, &format!("SELECT count(*) FROM {t}"))
                .await,
        );
        let own = count_of(
            &server
                .sql_with(
                    &server.admin,
                    &format!("SELECT count(*) FROM {t} WHERE tenant_id = '{A}'"),
                )
                .await,
        );
        if n <= 0 || n != own {
            failures.push(format!(
                "{phase} {t}: tenant a counts {n}, its rows are {own}"
            ));
            continue;
        }
        let joined = count_of(
            &server
                .sql_with(
                    key_a,
                    &format!(
                        "SELECT count(*) FROM {t} x JOIN sensors s ON x.{join_on} = s.{join_on}"
                    ),
                )
                .await,
        );
        // Casting "bravo|b1" fails and would name the row; a's rows cast
        // '0' (guarded: the expression errs only on b's rows).
        let guarded = format!(
            "CAST(CASE WHEN tenant_id = '{A}' THEN '0' ELSE concat(tenant_id, '|', {text}) END AS BIGINT)"
        );
        let raw_cast = format!("CAST(concat(tenant_id, '|', {text}) AS BIGINT)");
        let d = div("tenant_id");
        let (dx, ds) = (div("x.tenant_id"), div("s.tenant_id"));
        // (sql, expected first cell, expected number of rows)
        let checks: Vec<(String, Option<i64>, Option<i64>)> = vec![
            // b's ids named outright (tables look named ids up).
            (
                format!("SELECT count(*) FROM {t} WHERE {text} IN ('bb', 'b1', 'b2')"),
                Some(0),
                None,
            ),
            (
                format!("SELECT {text} FROM {t} WHERE {text} = 'bb' ORDER BY 1"),
                None,
                Some(0),
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE tenant_id <> '{A}' AND {guarded} = 0"),
                Some(0),
                None,
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE {guarded} = 0 AND tenant_id <> '{A}'"),
                Some(0),
                None,
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE {guarded} = 0"),
                Some(n),
                None,
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE {d} = 1"),
                Some(n),
                None,
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE {d} = 1 AND tenant_id = '{B}'"),
                Some(0),
                None,
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE tenant_id = '{B}' AND {d} = 1"),
                Some(0),
                None,
            ),
            (
                format!("SELECT count(*) FROM {t} WHERE {d} = 1 OR tenant_id = '{B}'"),
                Some(n),
                None,
            ),
            (format!("SELECT {d} AS o FROM {t}"), Some(1), Some(n)),
            (format!("SELECT {guarded} AS o FROM {t}"), Some(0), Some(n)),
            (
                format!("SELECT tenant_id FROM {t} ORDER BY {d}"),
                None,
                Some(n),
            ),
            (
                format!(
                    "SELECT count(*) FROM {t} x JOIN sensors s ON x.{join_on} = s.{join_on} WHERE {dx} = 1 AND {ds} = 1"
                ),
                Some(joined),
                None,
            ),
            (
                format!(
                    "SELECT count(*) FROM {t} x JOIN sensors s ON x.{join_on} = s.{join_on} AND {dx} = 1 AND {ds} = 1"
                ),
                Some(joined),
                None,
            ),
            (
                format!(
                    "SELECT count(*) FROM {t} x LEFT JOIN sensors s ON x.{join_on} = s.{join_on} AND {ds} = 1 WHERE {dx} = 1"
                ),
                Some(joined),
                None,
            ),
            (format!("SELECT sum({d}) FROM {t}"), Some(n), None),
            (
                format!(
                    "SELECT count(*) FROM (SELECT tenant_id FROM {t} GROUP BY tenant_id HAVING min({d}) = 1) q"
                ),
                Some(1),
                None,
            ),
            (
                format!("SELECT {d} AS g, count(*) FROM {t} GROUP BY 1"),
                Some(1),
                Some(1),
            ),
            (
                format!("SELECT row_number() OVER (PARTITION BY {d}) AS rn FROM {t}"),
                None,
                Some(n),
            ),
            (
                format!(
                    "SELECT count(*) FROM (SELECT row_number() OVER (PARTITION BY {d} ORDER BY {d}) AS rn FROM {t}) q"
                ),
                Some(n),
                None,
            ),
            (
                format!("WITH q AS (SELECT * FROM {t}) SELECT count(*) FROM q WHERE {d} = 1"),
                Some(n),
                None,
            ),
            (
                format!(
                    "SELECT count(*) FROM (SELECT * FROM {t} UNION ALL SELECT * FROM {t}) q WHERE {d} = 1"
                ),
                Some(2 * n),
                None,
            ),
            (
                format!(
                    "SELECT count(*) FROM {t} WHERE tenant_id IN (SELECT tenant_id FROM {t} WHERE {d} = 1)"
                ),
                Some(n),
                None,
            ),
        ];
        for (sql, first, rows) in checks {
            let (status, v) = ask(server, key_a, &sql).await;
            if status != 200 {
                let m = message(&v);
                let leaked = leak(&m).map_or(String::new(), |f| format!(" LEAKS {f:?}"));
                failures.push(format!("{phase} {t}: {sql} -> {status}{leaked}: {m}"));
                continue;
            }
            let got = v["rows"].as_array().cloned().unwrap_or_default();
            if let Some(rows) = rows
                && got.len() as i64 != rows
            {
                failures.push(format!(
                    "{phase} {t}: {sql} -> {} rows, expected {rows}",
                    got.len()
                ));
            }
            if let Some(first) = first
                && got.first().and_then(|r| r[0].as_i64()) != Some(first)
            {
                failures.push(format!(
                    "{phase} {t}: {sql} -> {:?}, expected {first}",
                    got.first()
                ));
            }
        }
        // The oracle as written, unguarded: a's own rows may fail the cast
        // (naming a's row, which is no leak), but nothing may name b's.
        for sql in [
            format!("SELECT count(*) FROM {t} WHERE tenant_id <> '{A}' AND {raw_cast} = 0"),
            format!("SELECT count(*) FROM {t} WHERE {raw_cast} = 0 AND tenant_id <> '{A}'"),
        ] {
            let (status, v) = ask(server, key_a, &sql).await;
            if status == 200 {
                if count_of(&v) != 0 {
                    failures.push(format!("{phase} {t}: {sql} -> {v}, expected 0"));
                }
                continue;
            }
            let m = message(&v);
            if let Some(f) = leak(&m) {
                failures.push(format!("{phase} {t}: {sql} -> {status} LEAKS {f:?}: {m}"));
            } else if !m.contains(&format!("{A}|")) {
                failures.push(format!("{phase} {t}: {sql} -> {status}: {m}"));
            } else {
                eprintln!("{phase} {t}: unguarded cast failed on a's own row (no leak): {m}");
            }
        }
    }
    failures
}

#[tokio::test]
async fn error_oracles_never_see_other_tenants_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (key_a, _) = two_tenants(&server, 10).await;
    // A reading hours before the others: every sensor has a gap.
    let early = now_minute_ms() - 20 * 3_600_000;
    let gapped: Vec<Value> = ["a1", "a2", "b1", "b2"]
        .iter()
        .map(|s| reading(s, early, 1.0))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({"readings": gapped}))
            .await
            .status(),
        202
    );
    let mut failures = Vec::new();

    rollups_settled(&server).await;
    failures.extend(attack(&server, &key_a, "hot").await);

    server.flush().await;
    failures.extend(attack(&server, &key_a, "cold").await);

    let t = now_minute_ms();
    let more: Vec<Value> = ["a1", "a2", "b1", "b2"]
        .iter()
        .map(|s| reading(s, t, 100.0))
        .collect();
    assert_eq!(
        server.post_json(&json!({"readings": more})).await.status(),
        202
    );
    rollups_settled(&server).await;
    failures.extend(attack(&server, &key_a, "mixed").await);

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn explain_shows_no_paths_to_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (key_a, _) = two_tenants(&server, 10).await;
    server.flush().await;
    let data_dir = server.data_dir.display().to_string();
    for sql in [
        "EXPLAIN SELECT * FROM readings",
        "EXPLAIN SELECT * FROM sensor_hourly",
    ] {
        let v = server.sql_with(&key_a, sql).await;
        let rows = v["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{sql}: no plan");
        for row in rows {
            for cell in row.as_array().unwrap() {
                let text = cell
                    .as_str()
                    .map_or_else(|| cell.to_string(), str::to_owned);
                for bad in [data_dir.as_str(), ".parquet", "chunks/", "day="] {
                    assert!(
                        !text.contains(bad),
                        "{sql}: the plan shows {bad:?}:\n{text}"
                    );
                }
            }
        }
    }
}

/// Every file under `dir` whose name ends in `.parquet`.
fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn internal_errors_carry_no_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (key_a, _) = two_tenants(&server, 10).await;
    server.flush().await;
    let files = parquet_files(&server.data_dir.join("chunks").join("readings"));
    assert!(!files.is_empty(), "the flush wrote no readings files");
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    let (status, v) = ask(&server, &key_a, "SELECT count(*) FROM readings").await;
    if status == 200 {
        eprintln!(
            "the daemon answered 200 without its {} files: {v}",
            files.len()
        );
        return;
    }
    let m = message(&v);
    // 503 storage_unavailable is expected; any other refusal is allowed.
    eprintln!("answer without the files: {status} {v}");
    let data_dir = server.data_dir.display().to_string();
    for bad in [data_dir.as_str(), ".parquet", "b1"] {
        assert!(!m.contains(bad), "the error shows {bad:?}: {m}");
    }
}

#[tokio::test]
async fn deep_sql_is_refused_and_the_daemon_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let deep = [
        ("100,000 terms", format!("SELECT {}1", "1+".repeat(99_999))),
        (
            "20,000 parentheses",
            format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000)),
        ),
        (
            "5,000 CASEs",
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(5_000),
                " ELSE 0 END".repeat(5_000)
            ),
        ),
        (
            "2,000 subqueries",
            format!("SELECT {}1{}", "(SELECT ".repeat(2_000), ")".repeat(2_000)),
        ),
    ];
    for (what, sql) in deep {
        let r = server
            .admin(Method::POST, "/api/v1/sql")
            .json(&json!({"sql": sql}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer ({e}):\n{}", server.log()));
        let (status, code, v) = error_code(r).await;
        assert_eq!(status, 400, "{what}: {code} {v}");
    }
    server.assert_alive().await;
    assert_eq!(server.sql("SELECT 1").await[0][0], 1);
}

#[tokio::test]
async fn a_syntax_error_at_the_end_names_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let sql = "SELECT 1 FROM readings WHERE (((";
    let (status, code, m) = sql_status(&server, &server.admin, sql).await;
    assert_eq!((status, code.as_str()), (400, "invalid_sql"), "{m}");
    let end = format!("Line: 1, Column: {}", sql.chars().count() + 1);
    assert_eq!(end, "Line: 1, Column: 33");
    assert!(m.contains(&end), "{m}");
    let (status, code, m) =
        sql_status(&server, &server.admin, "SELECT 1\nFROM readings WHERE (").await;
    assert_eq!((status, code.as_str()), (400, "invalid_sql"), "{m}");
    assert!(m.contains("Line: 2"), "{m}");
}

/// A small xorshift generator: distinct made-up names without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn upper(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'A' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

#[tokio::test]
async fn metrics_labels_take_no_client_strings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let metrics = || async {
        let r = server
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    // Let the /metrics requests themselves show up before measuring.
    metrics().await;
    metrics().await;
    let before = metrics().await.len();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ now_minute_ms() as u64);
    let mut names = Vec::new();
    let mut answered = 0;
    for i in 0..300 {
        let name = rng.upper(1024);
        let method = Method::from_bytes(name.as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            "/api/v1/readings".to_owned()
        } else {
            format!("/{}", rng.upper(12).to_lowercase())
        };
        if server
            .client
            .request(method, server.url(&path))
            .send()
            .await
            .is_ok()
        {
            answered += 1;
        }
        names.push(name);
    }
    eprintln!("{answered} of 300 made-up methods answered");
    let after = metrics().await;
    assert!(
        after.len() <= before + 8 * 1024,
        "/metrics grew from {before} to {} bytes",
        after.len()
    );
    for name in &names {
        assert!(!after.contains(&name[..64]), "a made-up method is a label");
    }
}

/// Sends raw bytes on a new connection and returns what the server
/// answered before closing (or within `wait`).
fn raw_exchange(addr: &str, request: &[u8], wait: Duration) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    conn.set_write_timeout(Some(wait)).unwrap();
    let _ = conn.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn addr_of(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn huge_headers_answer_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let big = "a".repeat(200 * 1024);
    match server
        .client
        .get(server.url("/healthz"))
        .header("x-big", &big)
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => {
            eprintln!("reqwest got no answer ({e}); sending raw bytes");
            let addr = addr_of(&server);
            let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n");
            let answer = tokio::task::spawn_blocking(move || {
                raw_exchange(&addr, request.as_bytes(), Duration::from_secs(5))
            })
            .await
            .unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 431"),
                "{:?}",
                answer.lines().next()
            );
        }
    }
    server.assert_alive().await;
}

#[tokio::test]
async fn a_client_dripping_headers_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[server]\nrequest_timeout = \"2s\"\n"),
    )
    .await;
    let addr = addr_of(&server);
    let drip = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        conn.set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        if conn.write_all(b"GET /healthz HTTP/1.1\r\n").is_err() {
            return (started.elapsed(), "write failed".to_owned());
        }
        let mut next_line = Instant::now() + Duration::from_millis(500);
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(10) {
            match conn.read(&mut buf) {
                Ok(0) => return (started.elapsed(), "closed".to_owned()),
                Ok(n) => {
                    return (
                        started.elapsed(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    );
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return (started.elapsed(), format!("read failed: {e}")),
            }
            if Instant::now() >= next_line {
                if let Err(e) = conn.write_all(b"X-a: b\r\n") {
                    return (started.elapsed(), format!("write failed: {e}"));
                }
                next_line += Duration::from_millis(500);
            }
        }
        (started.elapsed(), "still open after 10 s".to_owned())
    });
    let (elapsed, what) = tokio::time::timeout(Duration::from_secs(20), drip)
        .await
        .expect("the dripping client finished")
        .unwrap();
    eprintln!("dripping client: {what:?} after {elapsed:?}");
    assert!(
        !what.starts_with("still open") && !what.starts_with("HTTP/1.1 200"),
        "{what}"
    );
    if what.starts_with("HTTP/") {
        assert!(what.starts_with("HTTP/1.1 408"), "{what}");
    }
    assert!(
        elapsed < Duration::from_millis(4500),
        "cut after {elapsed:?}"
    );
}

#[tokio::test]
async fn connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[server]\nmax_connections = 4\nrequest_timeout = \"5s\"\n"),
    )
    .await;
    let addr = addr_of(&server);
    let fresh = || {
        crate::support::client_builder()
            .timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let blocked = fresh().get(server.url("/healthz")).send().await;
    assert!(
        blocked.is_err(),
        "a fifth connection was served: {:?}",
        blocked.map(|r| r.status())
    );
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fresh().get(server.url("/healthz")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "not served after the others closed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn ingest_parsers_stop_at_the_batch_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[ingest]\nmax_batch_readings = 10\n"),
    )
    .await;
    server.setup("t", "b", &["s"]).await;
    let n = 50_000;
    let json_body = format!("{{\"readings\":[{}]}}", vec!["{}"; n].join(","));
    let bodies = [
        ("/api/v1/readings", "application/json", json_body),
        ("/api/v1/readings", "application/x-ndjson", "{}\n".repeat(n)),
        (
            "/api/v1/readings",
            "text/csv",
            format!("sensor_id,ts,value_kwh\n{}", "x,y,z\n".repeat(n)),
        ),
        ("/api/v1/write?precision=ms", "text/plain", "x\n".repeat(n)),
    ];
    for (path, ct, body) in bodies {
        assert!(body.len() < 1_048_576);
        let r = server
            .admin(Method::POST, path)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, code, v) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (413, "payload_too_large"),
            "{ct}: {v}"
        );
    }
    assert!(server.readings("s").await.is_empty());
}

#[tokio::test]
async fn function_results_are_bounded_by_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[query]\nmemory_limit = 100000000\n"),
    )
    .await;
    let (status, code, m) = sql_status(
        &server,
        &server.admin,
        "SELECT length(repeat('x', 2000000000))",
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "memory_limit"), "{m}");
    let (status, code, m) =
        sql_status(&server, &server.admin, "SELECT lpad('a', 2000000000)").await;
    assert_eq!(status, 400, "{code}: {m}");
    server.assert_alive().await;
    assert_eq!(server.sql("SELECT length(repeat('x', 10))").await[0][0], 10);
    // Amplifying several calls together, through other functions, `||`
    // or a recursive CTE is bounded too: each call gets a share.
    for sql in [
        "SELECT length(concat(repeat('x', 20000000), repeat('x', 20000000)))",
        "SELECT length(repeat('x', 20000000) || repeat('x', 20000000))",
        "SELECT length(replace(repeat('a', 40000), 'a', repeat('b', 40000)))",
        "SELECT length(regexp_replace(repeat('a', 40000), '', repeat('b', 40000), 'g'))",
        "WITH RECURSIVE r(s, n) AS (SELECT 'x', 1 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 40) \
         SELECT max(length(s)) FROM r",
    ] {
        let (status, code, m) = sql_status(&server, &server.admin, sql).await;
        assert_eq!(status, 400, "{sql}: {code}: {m}");
    }
    assert_eq!(
        server
            .sql("SELECT length(concat('ab', repeat('x', 1000)))")
            .await[0][0],
        1002
    );
}

/// The answer's size counts only the rows kept: a small LIMIT over a big
/// in-memory batch is not refused for the size of the whole batch.
#[tokio::test]
async fn a_small_answer_from_a_big_batch_is_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), with_config("[query]\nmemory_limit = 2000000\n")).await;
    server.setup("t", "b", &["s"]).await;
    let t0 = crate::support::now_minute_ms() - 40 * 86_400_000;
    for chunk in 0..4 {
        let readings: Vec<serde_json::Value> = (0..10_000)
            .map(|i| crate::support::reading("s", t0 + (chunk * 10_000 + i) * 60_000, 1.0))
            .collect();
        let r = server
            .post_json(&serde_json::json!({"readings": readings}))
            .await;
        assert_eq!(r.status(), 202);
    }
    let rows = server.sql("SELECT * FROM readings LIMIT 10").await;
    assert_eq!(rows.len(), 10);
}

const RUNAWAY: &str =
    "SELECT count(*) FROM readings r1, readings r2, readings r3, readings r4, readings r5";

#[tokio::test]
async fn one_tenant_cannot_take_every_query_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config(
            "[query]\nmax_concurrent = 4\ntimeout = \"20s\"\nmax_join_rows = 100000000000\n",
        ),
    )
    .await;
    let (key_a, key_b) = two_tenants(&server, 150).await;
    server.flush().await;
    let runaways: Vec<_> = (0..8)
        .map(|_| {
            let req = server
                .with_key(&key_a, Method::POST, "/api/v1/sql")
                .json(&json!({"sql": RUNAWAY}));
            tokio::spawn(async move {
                let r = req.send().await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.text().await?))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let (status, v) = tokio::time::timeout(
        Duration::from_secs(5),
        ask(&server, &key_b, "SELECT count(*) FROM readings"),
    )
    .await
    .expect("tenant b's query answered within 5 s");
    assert_eq!((status, count_of(&v)), (200, 300), "{v}");
    eprintln!("tenant b's query took {:?}", started.elapsed());

    let end = now_minute_ms() + 3_600_000;
    let start = end - 7 * 24 * 3_600_000;
    let path = format!("/api/v1/buildings/bb/energy?resolution=hour&start={start}&end={end}");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        server.with_key(&key_b, Method::GET, &path).send(),
    )
    .await
    .expect("tenant b's energy answered within 5 s")
    .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(!v["points"].as_array().unwrap().is_empty(), "{v}");

    for h in runaways {
        if h.is_finished() {
            eprintln!("a runaway answered: {:?}", h.await);
        } else {
            h.abort();
        }
    }
}

#[tokio::test]
async fn join_output_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), with_config("[query]\nmax_join_rows = 1000\n")).await;
    let (key_a, _) = two_tenants(&server, 10).await;
    let (status, code, m) = sql_status(
        &server,
        &key_a,
        "SELECT count(*) FROM readings r1, readings r2, readings r3",
    )
    .await;
    assert_eq!(status, 400, "{code}: {m}");
    assert!(m.contains("max_join_rows"), "{m}");
    let v = server
        .sql_with(&key_a, "SELECT count(*) FROM readings r1, readings r2")
        .await;
    assert_eq!(count_of(&v), 400);
    let v = server
        .sql_with(
            &key_a,
            "SELECT count(*) FROM readings r JOIN sensors s ON r.sensor_id = s.sensor_id",
        )
        .await;
    assert_eq!(count_of(&v), 20);
}

#[tokio::test]
async fn client_disconnect_during_a_query_does_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    // A join bound far away, so the join runs until the timeout or until
    // the disconnect cancels it.
    let server = Server::start_with(
        dir.path(),
        with_config(
            "[query]\nmax_concurrent = 2\ntimeout = \"5s\"\nmax_join_rows = 100000000000\n",
        ),
    )
    .await;
    two_tenants(&server, 100).await;
    let impatient = crate::support::client_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = impatient
            .post(server.url("/api/v1/sql"))
            .bearer_auth(&server.admin)
            .json(&json!({"sql": RUNAWAY}))
            .send()
            .await;
        match r {
            Ok(r) => eprintln!("the runaway answered within 300 ms: {}", r.status()),
            Err(e) => assert!(e.is_timeout(), "{e}"),
        }
    }
    server.assert_alive().await;
    // The abandoned queries may hold the slots until their timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = ask(&server, &server.admin, "SELECT 1").await;
        if status == 200 {
            assert_eq!(v["rows"][0][0], 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SELECT 1 never answered: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}
