//! `POST /api/v1/sql` (SPEC 5): answer formats, limits, read-only
//! enforcement and tenant isolation.

use std::io::Cursor;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, error_code, now_minute_ms, reading, sql_status};

const QUARTER: i64 = 900_000;

/// Two tenants, each with a building and two sensors, and readings for all.
async fn two_tenants(server: &Server) -> (String, String) {
    server.setup("a", "ba", &["a1", "a2"]).await;
    server.setup("b", "bb", &["b1", "b2"]).await;
    let t = now_minute_ms() - 50 * QUARTER;
    let readings: Vec<Value> = ["a1", "a2", "b1", "b2"]
        .iter()
        .flat_map(|s| (0..10).map(move |i| reading(s, t + i * QUARTER, 1.0 + i as f64)))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({"readings": readings}))
            .await
            .status(),
        202
    );
    let key_a = server.create_key("tenant", Some("a")).await;
    let key_b = server.create_key("tenant", Some("b")).await;
    (key_a, key_b)
}

#[tokio::test]
async fn answers_in_json_csv_arrow_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    two_tenants(&server).await;
    let sql = "SELECT sensor_id, count(*) AS n, sum(value_kwh) AS kwh FROM readings GROUP BY sensor_id ORDER BY sensor_id";
    let v = server.sql_with(&server.admin, sql).await;
    assert_eq!(
        v["columns"],
        json!([{"name": "sensor_id", "type": "Utf8"}, {"name": "n", "type": "Int64"}, {"name": "kwh", "type": "Float64"}])
    );
    assert_eq!(v["rows"][0], json!(["a1", 10, 55.0]));
    assert_eq!(v["truncated"], false);

    let post = |query: &'static str, accept: Option<&'static str>| {
        let mut req = server
            .admin(Method::POST, &format!("/api/v1/sql{query}"))
            .json(&json!({"sql": sql}));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.send()
    };
    let csv = post("?format=csv", None).await.unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    assert_eq!(text.lines().next(), Some("sensor_id,n,kwh"));
    assert_eq!(text.lines().nth(1), Some("a1,10,55.0"));
    assert_eq!(text.lines().count(), 5);

    for (query, accept) in [
        ("?format=arrow", None),
        ("", Some("application/vnd.apache.arrow.stream")),
    ] {
        let r = post(query, accept).await.unwrap();
        assert_eq!(
            r.headers()["content-type"],
            "application/vnd.apache.arrow.stream"
        );
        let bytes = r.bytes().await.unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 4);
    }
    let r = post("", Some("application/vnd.apache.parquet"))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.apache.parquet"
    );
    let bytes = r.bytes().await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 4);

    let r = post("?format=xml", None).await.unwrap();
    assert_eq!(error_code(r).await.0, 400);
}

#[tokio::test]
async fn answers_are_cut_at_max_rows_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("[query]\nmax_rows = 7\n".into()),
            ..Options::default()
        },
    )
    .await;
    two_tenants(&server).await;
    let v = server
        .sql_with(&server.admin, "SELECT * FROM readings")
        .await;
    assert_eq!(v["rows"].as_array().unwrap().len(), 7);
    assert_eq!(v["truncated"], true);
    let v = server
        .sql_with(&server.admin, "SELECT * FROM readings LIMIT 7")
        .await;
    assert_eq!(v["truncated"], false);
    let r = server
        .admin(Method::POST, "/api/v1/sql?format=csv")
        .json(&json!({"sql": "SELECT * FROM readings"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-wattline-truncated"], "true");
    assert_eq!(r.text().await.unwrap().lines().count(), 8);
}

#[tokio::test]
async fn only_one_read_only_query_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    two_tenants(&server).await;
    let target = dir.path().join("copied.csv");
    let refused = [
        ("CREATE TABLE x (a INT)", "read_only"),
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            "read_only",
        ),
        ("DROP TABLE readings", "read_only"),
        (
            "INSERT INTO readings VALUES ('a1','ba','a',now(),1.0,1.0,'measured')",
            "read_only",
        ),
        ("DELETE FROM readings", "read_only"),
        (
            &format!("COPY (SELECT 1) TO '{}'", target.display()),
            "read_only",
        ),
        ("SET datafusion.execution.batch_size = 1", "read_only"),
        ("EXPLAIN ANALYZE SELECT * FROM readings", "read_only"),
        ("CREATE VIEW v AS SELECT * FROM readings", "read_only"),
        ("SELECT 1; SELECT 2", "invalid_sql"),
        ("SELECT * FROM '/etc/passwd'", "invalid_sql"),
        ("SELECT * FROM read_parquet('/etc/passwd')", "invalid_sql"),
        ("SELECT * FROM information_schema.tables", "invalid_sql"),
        ("SELEC 1", "invalid_sql"),
        ("SELECT nope FROM readings", "invalid_sql"),
        ("SELECT * FROM nowhere", "invalid_sql"),
    ];
    for (sql, code) in refused {
        let (status, got, message) = sql_status(&server, &server.admin, sql).await;
        assert_eq!((status, got.as_str()), (400, code), "{sql}: {message}");
    }
    assert!(!target.exists(), "COPY must not write files");
    // Errors name the problem.
    let (_, _, message) = sql_status(&server, &server.admin, "SELEC 1").await;
    assert!(message.contains("Line: 1, Column: 1"), "{message}");
    let (_, _, message) = sql_status(&server, &server.admin, "SELECT nope FROM readings").await;
    assert!(message.contains("nope"), "{message}");
    // ... and where it is, as details a console can point at: a syntax
    // error and an unknown column on the second line alike.
    for (sql, line, column) in [
        ("SELECT ts,\n  FROM FROM readings", 2, 8),
        ("SELECT ts,\n  nope FROM readings", 2, 3),
    ] {
        let r = server
            .admin(Method::POST, "/api/v1/sql")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let (status, code, v) = error_code(r).await;
        assert_eq!((status, code.as_str()), (400, "invalid_sql"), "{v}");
        assert_eq!(
            v["error"]["details"],
            json!({"line": line, "column": column}),
            "{sql}: {v}"
        );
    }
    // A plain EXPLAIN and ordinary queries are fine.
    assert!(
        !server
            .sql("EXPLAIN SELECT * FROM readings")
            .await
            .is_empty()
    );
    assert_eq!(server.sql("SELECT count(*) FROM readings").await[0][0], 40);
    // Ingest keys cannot query.
    let ingest = server.create_key("ingest", Some("a")).await;
    assert_eq!(sql_status(&server, &ingest, "SELECT 1").await.0, 403);
    let r = server
        .admin(Method::POST, "/api/v1/sql")
        .json(&json!({"query": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);
}

/// A join of `readings` with a catalog table builds its hash table once
/// from the catalog, whichever side the SQL names first, and streams the
/// readings through it, even when the catalog is too big for DataFusion's
/// default (1 MiB): repartitioning every reading by sensor id, or holding
/// the readings as the build side, costs seconds and gigabytes at scale.
#[tokio::test]
async fn joins_to_the_catalog_build_on_the_catalog_side() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    two_tenants(&server).await;
    // The spec's catalog size: 50,000 more sensors, without readings.
    let csv: String = std::iter::once("sensor_id,building_id\n".to_owned())
        .chain((0..50_000).map(|i| format!("spare-meter-of-building-ba-{i:06},ba\n")))
        .collect();
    let r = server.post_csv("/api/v1/tenants/a/bulk", csv).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    server.flush().await;
    let direct = server
        .sql("SELECT building_id, sum(value_kwh) FROM readings GROUP BY 1 ORDER BY 1")
        .await;
    for join in [
        "readings r JOIN sensors s ON r.sensor_id = s.sensor_id",
        "sensors s JOIN readings r ON r.sensor_id = s.sensor_id",
    ] {
        let query =
            format!("SELECT s.building_id, sum(r.value_kwh) FROM {join} GROUP BY 1 ORDER BY 1");
        assert_eq!(server.sql(&query).await, direct, "{join}");
        let rows = server.sql(&format!("EXPLAIN {query}")).await;
        let plan = rows
            .iter()
            .find(|r| r[0] == "physical_plan")
            .and_then(|r| r[1].as_str())
            .unwrap_or_else(|| panic!("no physical plan in {rows:?}"));
        let line = |what: &dyn Fn(&str) -> bool| plan.lines().position(what);
        let hash_join = line(&|l| l.contains("HashJoinExec")).expect("a hash join");
        let catalog = line(&|l| l.contains("DataSourceExec") && l.contains("partition_sizes"));
        let readings = line(&|l| l.contains("table=readings"));
        assert!(plan.contains("mode=CollectLeft"), "{join}:\n{plan}");
        assert!(
            matches!((catalog, readings), (Some(c), Some(r)) if hash_join < c && c < r),
            "{join}: the build (first) side must be the catalog's:\n{plan}"
        );
    }
}

/// Attack queries from tenant a: every table, joins, unions, CTEs and
/// subqueries see only a's rows, whatever the SQL says.
#[tokio::test]
async fn a_tenant_sees_only_its_own_rows_whatever_the_sql() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (key_a, _) = two_tenants(&server).await;
    // Half of the data cold, half hot, so both paths are attacked.
    server.flush().await;
    let t = now_minute_ms();
    let more: Vec<Value> = ["a1", "b1"].iter().map(|s| reading(s, t, 100.0)).collect();
    assert_eq!(
        server.post_json(&json!({"readings": more})).await.status(),
        202
    );

    let foreign = |row: &Value| {
        row.as_array().unwrap().iter().any(|cell| {
            ["b", "bb", "b1", "b2", "Tenant b", "Building bb"]
                .iter()
                .any(|id| cell.as_str() == Some(id))
        })
    };
    let queries = [
        "SELECT * FROM readings",
        "SELECT * FROM readings WHERE tenant_id = 'b'",
        "SELECT * FROM readings WHERE tenant_id <> 'a' OR 1 = 1",
        "SELECT * FROM readings WHERE sensor_id IN ('b1', 'b2')",
        "SELECT * FROM readings WHERE building_id = 'bb'",
        "SELECT * FROM readings UNION ALL SELECT * FROM readings WHERE tenant_id = 'b'",
        "WITH x AS (SELECT * FROM readings) SELECT * FROM x WHERE tenant_id != 'a'",
        "SELECT * FROM sensors WHERE sensor_id IN (SELECT sensor_id FROM readings)",
        "SELECT r.* FROM readings r JOIN sensors s ON r.sensor_id = s.sensor_id WHERE s.tenant_id = 'b'",
        "SELECT * FROM tenants",
        "SELECT * FROM buildings",
        "SELECT * FROM sensors",
        "SELECT (SELECT count(*) FROM readings WHERE tenant_id = 'b') AS n",
        "SELECT tenant_id, count(*) FROM readings GROUP BY tenant_id",
        "SELECT * FROM sensor_hourly",
        "SELECT * FROM sensor_hourly WHERE tenant_id = 'b'",
        "SELECT * FROM building_quarterly WHERE tenant_id = 'b' OR building_id = 'bb'",
        "SELECT * FROM building_hourly",
        "SELECT * FROM building_daily UNION ALL SELECT * FROM building_daily WHERE building_id = 'bb'",
        "SELECT * FROM building_monthly",
        "SELECT * FROM building_yearly",
    ];
    for sql in queries {
        let v = server.sql_with(&key_a, sql).await;
        for row in v["rows"].as_array().unwrap() {
            assert!(!foreign(row), "{sql} leaked {row}");
        }
    }
    let n = server
        .sql_with(&key_a, "SELECT count(*) FROM readings")
        .await;
    assert_eq!(n["rows"][0][0], 21);
    let n = server
        .sql_with(
            &key_a,
            "SELECT (SELECT count(*) FROM readings WHERE tenant_id = 'b') AS n",
        )
        .await;
    assert_eq!(n["rows"][0][0], 0);
    let all = server.sql("SELECT count(*) FROM readings").await;
    assert_eq!(all[0][0], 42);
    let n = server
        .sql_with(&key_a, "SELECT count(*) FROM sensor_hourly")
        .await;
    assert!(
        n["rows"][0][0].as_i64().unwrap() > 0,
        "tenant a has rollups"
    );
    let all = server
        .sql("SELECT count(DISTINCT tenant_id) FROM building_daily")
        .await;
    assert_eq!(all[0][0], 2);
}

/// A server with 50,000 readings and the given `[query]` settings.
async fn loaded(dir: &tempfile::TempDir, query_config: &str) -> Server {
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(format!("[query]\n{query_config}")),
            ..Options::default()
        },
    )
    .await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    for chunk in 0..5 {
        let readings: Vec<Value> = (0..10_000)
            .map(|i| reading("s", t - (chunk * 10_000 + i) * 60_000, (i % 977) as f64))
            .collect();
        assert_eq!(
            server
                .post_json(&json!({"readings": readings}))
                .await
                .status(),
            202
        );
    }
    server
}

#[tokio::test]
async fn a_slow_query_times_out_with_408_and_the_daemon_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    // No join bound: the cross join must run into the timeout.
    let server = loaded(&dir, "timeout = \"1s\"\nmax_join_rows = 1000000000000000\n").await;
    let started = std::time::Instant::now();
    let (status, code, msg) = sql_status(
        &server,
        &server.admin,
        "SELECT sum(a.value_kwh * b.value_kwh) FROM readings a, readings b",
    )
    .await;
    assert_eq!((status, code.as_str()), (408, "query_timeout"), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The runaway still burns CPU until its operators yield; other
    // requests are served meanwhile (a query may need a retry on a busy
    // machine, with a 1 s timeout).
    let r = server
        .admin(Method::GET, "/api/v1/tenants")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut answered = false;
    for _ in 0..5 {
        let (status, body) = {
            let r = server
                .admin(Method::POST, "/api/v1/sql")
                .json(&json!({"sql": "SELECT count(*) FROM readings"}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        };
        if status == 200 {
            assert_eq!(body["rows"][0][0], 50_000);
            answered = true;
            break;
        }
        assert_eq!(status, 408, "{body}");
    }
    assert!(answered, "no query was answered while a runaway ran");
}

#[tokio::test]
async fn a_greedy_query_hits_the_memory_limit_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = loaded(&dir, "memory_limit = 2000000\n").await;
    let (status, code, message) = sql_status(
        &server,
        &server.admin,
        "SELECT count(*) FROM (SELECT sensor_id || repeat('x', 200) || ts AS k FROM readings) a \
         JOIN (SELECT sensor_id || repeat('x', 200) || ts AS k FROM readings) b ON a.k = b.k",
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "memory_limit"), "{message}");
    assert!(message.contains("query.memory_limit"), "{message}");
    assert_eq!(
        server.sql("SELECT count(*) FROM readings").await[0][0],
        50_000
    );
}
