//! Fleet publishing (`fleet` feature), tried as a fleet owner would: real
//! appliances publish to an S3-compatible server (moto's, one request at
//! a time; see `tests/fleet/s3_server.py`) and DuckDB's Delta extension,
//! an engine that is not wattline, reads the tables. Every check compares
//! its answer with the appliances' own SQL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pydeps::fleet_pythonpath;
use crate::support::{Options, Server, now_minute_ms, reading};

const BUCKET: &str = "fleet";
const PREFIX: &str = "wl";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fleet")
        .join(name)
}

/// The S3 server, stopped when dropped.
struct S3 {
    child: Child,
    endpoint: String,
}

impl S3 {
    fn start() -> S3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .arg(script("s3_server.py"))
            .arg(port.to_string())
            .env("PYTHONPATH", fleet_pythonpath())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 s3_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the S3 server did not start");
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        assert_eq!(s3.py(&["bucket", BUCKET]), json!("ok"));
        s3
    }

    fn py(&self, args: &[&str]) -> Value {
        let out = Command::new("python3")
            .arg(script("fleet.py"))
            .arg(&self.endpoint)
            .args(args)
            .env("PYTHONPATH", fleet_pythonpath())
            .output()
            .expect("python3 fleet.py");
        assert!(
            out.status.success(),
            "fleet.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// DuckDB on the tables as they are in the bucket.
    fn duckdb(&self, sql: &str) -> Vec<Value> {
        match self.py(&["query", BUCKET, PREFIX, sql]) {
            Value::Array(rows) => rows,
            other => panic!("{other}"),
        }
    }

    fn objects(&self, prefix: &str) -> Vec<String> {
        serde_json::from_value(self.py(&["objects", BUCKET, prefix])).unwrap()
    }

    fn config(&self, site: &str, extra: &str) -> String {
        format!(
            "{extra}\n[fleet]\nsite = \"{site}\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
             endpoint = \"{}\"\nallow_http = true\naccess_key_id = \"fleet-test\"\n\
             secret_access_key = \"fleet-test-secret\"\ninterval = \"1s\"\n",
            self.endpoint
        )
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the rollups have caught up and a whole publishing round
/// after that found nothing left to publish.
async fn wait_published(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let settled = |m: &str| {
        gauge(m, "wattline_rollup_dirty_days") == Some(0.0)
            && gauge(m, "wattline_fleet_outbox_depth") == Some(0.0)
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "never published\n{}",
            server.log()
        );
        if settled(&server.metrics().await) {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            if settled(&server.metrics().await) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The start of the last whole hour before this one, epoch ms.
fn last_whole_hour() -> i64 {
    let t = now_minute_ms() - HOUR;
    t - t % HOUR
}

/// A site: one tenant, one building, `sensors` sensors.
async fn site(s3: &S3, root: &Path, name: &str, opts: Options) -> Server {
    let opts = Options {
        config: Some(s3.config(name, opts.config.as_deref().unwrap_or(""))),
        ..opts
    };
    let server = Server::start_with(root, opts).await;
    server
        .setup(
            &format!("t-{name}"),
            &format!("b-{name}"),
            &[&format!("{name}-s1"), &format!("{name}-s2")],
        )
        .await;
    server
}

/// Hourly readings of the site's two sensors over `days` days ending at
/// `end`, with `value` (distinct per reading: sensor and hour in it).
fn hours(name: &str, end: i64, days: i64, value: f64) -> Value {
    let mut rows = Vec::new();
    for h in 0..days * 24 {
        for s in 1..=2 {
            let v = value + (h as f64) * 0.001 + s as f64;
            rows.push(reading(&format!("{name}-s{s}"), end - h * HOUR, v));
        }
    }
    json!({ "readings": rows })
}

/// The site's totals as the appliance answers them: readings (count,
/// sum), sensor hours, building days.
async fn own_totals(server: &Server) -> Vec<Value> {
    let one = |sql: &'static str| async move {
        let rows = server.sql(sql).await;
        rows[0].clone()
    };
    vec![
        one("SELECT count(*), round(sum(value_kwh), 6) FROM readings").await,
        one("SELECT count(*), round(sum(kwh), 6) FROM sensor_hourly").await,
        one("SELECT count(*), round(sum(kwh), 6) FROM building_daily").await,
    ]
}

/// The same, for `site`, as DuckDB reads the fleet tables.
fn fleet_totals(s3: &S3, site: &str) -> Vec<Value> {
    let rows = s3.duckdb(&format!(
        "SELECT (SELECT [count(*), round(sum(value_kwh), 6)] FROM {{readings}} WHERE site = '{site}'), \
                (SELECT [count(*), round(sum(kwh), 6)] FROM {{sensor_hourly}} WHERE site = '{site}'), \
                (SELECT [count(*), round(sum(kwh), 6)] FROM {{building_daily}} WHERE site = '{site}')"
    ));
    rows[0].as_array().unwrap().clone()
}

fn same(ours: &[Value], theirs: &[Value]) {
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(
            o[0].as_f64(),
            t[0].as_f64(),
            "counts: ours {ours:?}, fleet {theirs:?}"
        );
        let (o, t) = (o[1].as_f64().unwrap_or(0.0), t[1].as_f64().unwrap_or(0.0));
        assert!((o - t).abs() < 1e-6, "sums: ours {o}, fleet {t}");
    }
}

#[tokio::test]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn the_s3_server_lets_exactly_one_create_only_write_win() {
    let s3 = S3::start();
    for round in 0..3 {
        let won = s3.py(&["race", BUCKET, &format!("race/{round}"), "16"]);
        assert_eq!(won, json!(1), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn sites_publishing_at_once_are_read_by_another_engine_as_they_answer() {
    let s3 = S3::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["north", "south", "east"];
    let mut servers = Vec::new();
    for (dir, name) in dirs.iter().zip(names) {
        servers.push(site(&s3, dir.path(), name, Options::default()).await);
    }
    let end = last_whole_hour();
    // Three days of readings at each site at once, flushed to chunk files
    // at one of them so that both tiers are published.
    let posts = servers
        .iter()
        .zip(names)
        .map(|(s, n)| s.post_json_owned(hours(n, end, 3, 10.0)));
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status(), 202);
    }
    servers[0].flush().await;
    for s in &servers {
        wait_published(s).await;
    }
    for (s, n) in servers.iter().zip(names) {
        same(&own_totals(s).await, &fleet_totals(&s3, n));
    }
    // Corrections and late data: each reading of a sensor on one day
    // replaced, plus readings a week back. No reading twice in the fleet.
    let fix = hours("north", end, 1, 50.0);
    assert_eq!(servers[0].post_json(&fix).await.status(), 202);
    let late = hours("south", end - 7 * DAY, 1, 70.0);
    assert_eq!(servers[1].post_json(&late).await.status(), 202);
    for s in &servers {
        wait_published(s).await;
    }
    for (s, n) in servers.iter().zip(names) {
        same(&own_totals(s).await, &fleet_totals(&s3, n));
    }
    let dupes = s3.duckdb(
        "SELECT count(*) FROM (SELECT site, sensor_id, ts FROM {readings} GROUP BY ALL HAVING count(*) > 1)",
    );
    assert_eq!(dupes[0][0], 0);
    // Partitioned by site and month, timestamps in UTC microseconds.
    let ts = s3.duckdb(
        "SELECT any_value(typeof(ts)), count(DISTINCT site), min(month) <= max(month) FROM {readings}",
    );
    assert_eq!(ts[0], json!(["TIMESTAMP WITH TIME ZONE", 3, true]));
    let metrics = servers[0].metrics().await;
    assert!(
        metrics.contains("wattline_fleet_commits_total"),
        "{metrics}"
    );
    assert_eq!(gauge(&metrics, "wattline_fleet_lag_seconds"), Some(0.0));
    // The log names the site, never the secret.
    assert!(!servers[0].log().contains("fleet-test-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn a_publisher_killed_between_upload_and_commit_publishes_once_after_restart() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let crashing = Options {
        env: vec![("WATTLINE_FLEET_CRASH_AFTER_UPLOAD".into(), "1".into())],
        ..Options::default()
    };
    let mut server = site(&s3, dir.path(), "west", crashing).await;
    let end = last_whole_hour();
    assert_eq!(
        server.post_json(&hours("west", end, 2, 5.0)).await.status(),
        202
    );
    // The publisher uploads, then the process stops before the commit.
    let (status, _) = server.terminate_wait();
    assert!(!status.success());
    let uploaded = s3.objects(&format!("{PREFIX}/readings/site=west/"));
    assert!(
        !uploaded.is_empty(),
        "nothing was uploaded before the crash"
    );

    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(s3.config("west", "")),
            ..Options::default()
        },
    )
    .await;
    wait_published(&server).await;
    same(&own_totals(&server).await, &fleet_totals(&s3, "west"));
    // The crash's upload is in the bucket but in no commit; maintenance
    // deletes it, and the tables read the same after its checkpoint.
    let orphans = |s3: &S3| -> Vec<String> {
        let table = format!("{PREFIX}/readings");
        let live: Vec<String> = serde_json::from_value(s3.py(&["live", BUCKET, &table])).unwrap();
        s3.objects(&format!("{table}/site="))
            .into_iter()
            .filter(|k| !live.contains(k))
            .collect()
    };
    let before = orphans(&s3);
    assert!(
        uploaded.iter().all(|k| before.contains(k)),
        "the crash's files: {uploaded:?}, unreferenced: {before:?}"
    );
    // A vacuum that short could delete what appliances are committing:
    // refused unless asked for.
    let refused = Command::new(env!("CARGO_BIN_EXE_wattline"))
        .args(["fleet", "maintain", "--retention", "1s", "--config"])
        .arg(dir.path().join("wattline.toml"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-short-retention"));
    maintain(&dir.path().join("wattline.toml"));
    assert_eq!(orphans(&s3), Vec::<String>::new());
    same(&own_totals(&server).await, &fleet_totals(&s3, "west"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn retention_at_a_site_removes_its_rows_from_the_fleet() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let mut server = site(&s3, dir.path(), "old", Options::default()).await;
    let end = last_whole_hour();
    assert_eq!(
        server.post_json(&hours("old", end, 5, 1.0)).await.status(),
        202
    );
    server.flush().await;
    wait_published(&server).await;
    let before = fleet_totals(&s3, "old");
    assert_eq!(before[0][0].as_f64(), Some(240.0));
    server.terminate();

    // Restarted keeping two days of raw readings: retention drops the
    // older chunk files at start, and the fleet follows.
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(s3.config("old", "[retention]\nraw = \"2d\"\n")),
            ..Options::default()
        },
    )
    .await;
    wait_published(&server).await;
    let ours = own_totals(&server).await;
    assert!(
        ours[0][0].as_u64().unwrap() < 5 * 24 * 2,
        "retention dropped nothing: {ours:?}"
    );
    same(&ours, &fleet_totals(&s3, "old"));
    // Rollups are kept longer than raw readings, in the fleet as here.
    same(&ours[1..], &before[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn columns_a_newer_version_adds_read_as_null_in_older_rows() {
    let s3 = S3::start();
    // Written by another Delta writer, with the columns an older version
    // had: no peak demand, cost or quarantined counts.
    assert_eq!(s3.py(&["legacy", BUCKET, PREFIX]), json!(0));
    let dir = tempfile::tempdir().unwrap();
    let server = site(&s3, dir.path(), "new", Options::default()).await;
    let end = last_whole_hour();
    assert_eq!(
        server.post_json(&hours("new", end, 2, 3.0)).await.status(),
        202
    );
    wait_published(&server).await;
    same(&own_totals(&server).await, &fleet_totals(&s3, "new"));
    let rows = s3.duckdb(
        "SELECT site, count(*), count(peak_kw), count(quarantined), round(sum(kwh), 6) \
         FROM {building_daily} GROUP BY site ORDER BY site",
    );
    let days = server.sql("SELECT count(*) FROM building_daily").await[0][0].clone();
    assert_eq!(rows[0], json!(["legacy", 3, 0, 0, 4.5]));
    assert_eq!(rows[1][0], "new");
    assert_eq!(rows[1][1], days);
    assert_eq!(rows[1][2], days, "new rows carry peak demand");
    assert_eq!(rows[1][3], days);
}

/// Midnight UTC, epoch ms, of day 12 of the month before last: a month
/// `fleet maintain` compacts, whatever today is.
fn in_closed_month() -> i64 {
    use chrono::{Datelike, NaiveDate};
    let today = chrono::Utc::now().date_naive();
    let (y, m) = (today.year(), today.month0() as i32 - 2);
    let (y, m) = if m < 0 { (y - 1, m + 12) } else { (y, m) };
    let day = NaiveDate::from_ymd_opt(y, m as u32 + 1, 12).unwrap();
    day.and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

fn maintain(config: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_wattline"))
        .args([
            "fleet",
            "maintain",
            "--retention",
            "1s",
            "--allow-short-retention",
        ])
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "maintain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn compaction_keeps_the_rows_and_a_late_reading_after_it_replaces_them_once() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let server = site(&s3, dir.path(), "cmp", Options::default()).await;
    // Three days of a closed month, and today's readings.
    let closed_end = in_closed_month() + 3 * DAY - HOUR;
    let month = chrono::DateTime::from_timestamp_millis(closed_end)
        .unwrap()
        .format("%Y-%m")
        .to_string();
    assert_eq!(
        server
            .post_json(&hours("cmp", closed_end, 3, 2.0))
            .await
            .status(),
        202
    );
    let now = last_whole_hour();
    assert_eq!(
        server.post_json(&hours("cmp", now, 1, 4.0)).await.status(),
        202
    );
    server.flush().await;
    wait_published(&server).await;
    let files_of_month = |s3: &S3| -> Vec<String> {
        let live: Vec<String> =
            serde_json::from_value(s3.py(&["live", BUCKET, &format!("{PREFIX}/readings")]))
                .unwrap();
        live.into_iter()
            .filter(|f| f.contains(&format!("site=cmp/month={month}/")))
            .collect()
    };
    assert_eq!(files_of_month(&s3).len(), 3, "one file per day");
    let before = fleet_totals(&s3, "cmp");

    maintain(&dir.path().join("wattline.toml"));
    let merged = files_of_month(&s3);
    assert_eq!(merged.len(), 1, "{merged:?}");
    // Named as the month's; compaction names it from the first day its
    // files hold (`--from-<day>-`) when that is not the month's first.
    assert!(merged[0].contains(&format!("/{month}--")), "{merged:?}");
    same(&own_totals(&server).await, &fleet_totals(&s3, "cmp"));
    assert_eq!(before, fleet_totals(&s3, "cmp"));

    // A correction of one reading in the compacted month: the month's
    // file is replaced by its days, each reading once, the new value in.
    let fix = json!({"readings": [reading("cmp-s1", closed_end - DAY, 1000.0)]});
    assert_eq!(server.post_json(&fix).await.status(), 202);
    wait_published(&server).await;
    same(&own_totals(&server).await, &fleet_totals(&s3, "cmp"));
    assert_eq!(files_of_month(&s3).len(), 3);
    let dupes = s3.duckdb(
        "SELECT count(*) FROM (SELECT site, sensor_id, ts FROM {readings} GROUP BY ALL HAVING count(*) > 1)",
    );
    assert_eq!(dupes[0][0], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the network to install moto and DuckDB from PyPI; `.ci/run` runs it with --ignored"]
async fn a_tariff_change_republishes_the_costs_of_every_day_it_covers() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let server = site(&s3, dir.path(), "tariff", Options::default()).await;
    let end = last_whole_hour();
    assert_eq!(
        server
            .post_json(&hours("tariff", end, 3, 1.0))
            .await
            .status(),
        202
    );
    wait_published(&server).await;
    let cost = |s3: &S3| {
        s3.duckdb(
            "SELECT count(cost), round(sum(cost), 6) FROM {building_daily} WHERE site = 'tariff'",
        )[0]
        .clone()
    };
    assert_eq!(cost(&s3)[0], 0, "no tariff yet: no cost");
    let r = server
        .admin(reqwest::Method::POST, "/api/v1/tenants/t-tariff/tariffs")
        .json(
            &json!({"id": "flat", "currency": "EUR", "effective_from": "2020-01-01",
                      "price_per_kwh": 0.25}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Re-costing is a rollup step's work; then a publishing round.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        let ours = server
            .sql("SELECT count(cost), round(sum(cost), 6) FROM building_daily")
            .await[0]
            .clone();
        if ours[0].as_u64() > Some(0) {
            break ours;
        }
        assert!(Instant::now() < deadline, "never re-costed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_published(&server).await;
    let theirs = cost(&s3);
    assert_eq!(theirs[0].as_f64(), ours[0].as_f64());
    assert!((theirs[1].as_f64().unwrap() - ours[1].as_f64().unwrap()).abs() < 1e-6);
}
