//! Fleet publishing at the spec's scale (feature `fleet`): one appliance
//! with 2,500 buildings and 50,000 sensors publishing a day of 15-minute
//! readings (4.8 M, `WATTLINE_BENCH_DAYS` days) to an S3 server; then 100
//! simulated sites committing to one shared table at once (on a local
//! folder standing in for the bucket: the single-threaded S3 server
//! cannot take 100 clients at once).
//!
//! ```text
//! cargo bench --bench fleet --features fleet
//! ```
//!
//! The S3 server is moto's (from PyPI, served one request at a time, as in
//! the tests), on the same two cores: its Python request handling is part
//! of what is measured, and a real S3 endpoint takes uploads in parallel.
//! Phases, timed apart: readings appended through the durable write path
//! (50,000 a batch), the rollup steps, then publishing rounds until the
//! change feed is empty. "Ingest to visible" is rollups plus publishing
//! after the last reading was acknowledged (the daemon adds up to one
//! `fleet.interval` of waiting). Run by `cargo test --all-targets
//! --features fleet` (without `--bench`) it does the same at a tiny scale
//! against a local folder standing in for the bucket, and checks that
//! every reading was published once.

mod common;
#[allow(dead_code)]
#[path = "../tests/api/pydeps.rs"]
mod pydeps;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DAY_MS, Shape, ZONES, load_day, provision};
use wattline_fleet::datasets::{Dataset, Retention, Unit};
use wattline_fleet::deltalake_core::kernel::Action;
use wattline_fleet::deltalake_core::protocol::{DeltaOperation, SaveMode};
use wattline_fleet::s3::Bucket;
use wattline_fleet::table::FleetTable;
use wattline_fleet::{FleetConfig, Publisher};
use wattline_storage::{Catalog, ReadingStore};

const SITES: usize = 100;
const COMMITS_PER_SITE: u64 = 3;

/// moto's S3 server, one request at a time; stopped when dropped.
struct S3Server(Child, String);

impl S3Server {
    fn start() -> S3Server {
        let path = pydeps::fleet_pythonpath();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet");
        let mut child = Command::new("python3")
            .arg(tests.join("s3_server.py"))
            .arg(port.to_string())
            .env("PYTHONPATH", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let endpoint = format!("http://127.0.0.1:{port}");
        let made = Command::new("python3")
            .arg(tests.join("fleet.py"))
            .args([&endpoint, "bucket", "fleet"])
            .env("PYTHONPATH", &path)
            .status()
            .unwrap();
        assert!(made.success());
        S3Server(child, endpoint)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(site: &str, endpoint: Option<&str>) -> FleetConfig {
    FleetConfig {
        site: site.into(),
        bucket: "fleet".into(),
        prefix: "bench".into(),
        endpoint: endpoint.map(str::to_owned),
        region: None,
        access_key_id: Some("fleet-test".into()),
        secret_access_key: Some("fleet-test-secret".into()),
        allow_http: true,
        interval: Duration::from_secs(30),
        take_over: None,
    }
}

fn bucket(server: Option<&S3Server>, site: &str, local: &Path) -> Bucket {
    match server {
        Some(s) => Bucket::s3(&config(site, Some(&s.1))).unwrap(),
        None => Bucket::local(local).unwrap(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (full, shape) = Shape::from_args(1, true, 1);
    let server = full.then(S3Server::start);
    let root = tempfile::tempdir().unwrap();
    let local = root.path().join("bucket");
    std::fs::create_dir_all(&local).unwrap();

    // One appliance at the spec's shape.
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let catalog = Arc::new(Catalog::open(&data).unwrap());
    let sensors = provision(&catalog, &shape, &ZONES);
    let store = Arc::new(ReadingStore::open(&data, catalog).unwrap().0);
    let today = chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS);
    println!(
        "fleet: {} sensors, {} days of 15-minute readings, S3 server: {}",
        sensors.len(),
        shape.days,
        if full {
            "moto (single-threaded)"
        } else {
            "a local folder"
        }
    );
    let started = Instant::now();
    let mut readings = 0;
    for d in 0..shape.days {
        readings += load_day(&store, &sensors, (today - shape.days + d) * DAY_MS).await;
    }
    let ingest = started.elapsed();
    let s = store.clone();
    let rollups_started = Instant::now();
    tokio::task::spawn_blocking(move || s.catch_up_rollups())
        .await
        .unwrap()
        .unwrap();
    let rollups = rollups_started.elapsed();
    let retention = Retention {
        raw: Duration::from_secs(90 * 86_400),
        rollups: Duration::from_secs(5 * 365 * 86_400),
    };
    let b = bucket(server.as_ref(), "site-0", &local);
    let publish_started = Instant::now();
    let mut publisher = Publisher::open_on(&b, config("site-0", None), store.clone(), retention)
        .await
        .unwrap();
    let (mut rows, mut commits) = (0, 0);
    loop {
        let round = publisher.round().await.unwrap();
        rows += round.rows;
        commits += round.commits;
        if round.commits == 0 {
            break;
        }
    }
    let publish = publish_started.elapsed();
    // Raw readings plus the three rollup tables' rows.
    assert!(
        rows >= readings,
        "published {rows} rows of {readings} readings"
    );
    let table = FleetTable::open(&b, &config("site-0", None), Dataset::Readings)
        .await
        .unwrap();
    let files = table.files(Some("site-0")).unwrap();
    let mut published = 0;
    for f in &files {
        published += table.read(f).await.unwrap().num_rows() as u64;
    }
    assert_eq!(published, readings, "every reading in the fleet once");
    println!(
        "one appliance: ingest {readings} readings {:.2} s ({:.0}/s); rollups {:.2} s; \
         publishing {:.2} s: {commits} commits, {rows} rows in 4 tables ({:.0} raw readings/s)",
        ingest.as_secs_f64(),
        readings as f64 / ingest.as_secs_f64(),
        rollups.as_secs_f64(),
        publish.as_secs_f64(),
        readings as f64 / publish.as_secs_f64(),
    );
    println!(
        "ingest to visible in the fleet: {:.2} s after the last acknowledged reading; \
         peak RSS of the process (store, rollups, publisher): {} MiB",
        (rollups + publish).as_secs_f64(),
        common::status_kib("self", "VmHWM") / 1024
    );

    // Many sites committing to one table at once, on a local folder: the
    // single-threaded S3 server cannot take 100 clients at once (its
    // listen queue overflows), and the commit protocol is the same.
    let sites = if full { SITES } else { 4 };
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mut tables = Vec::new();
    for i in 0..sites {
        let site = format!("site-{:03}", i + 1);
        let b = bucket(None, &site, &shared);
        tables.push(
            FleetTable::open(&b, &config(&site, None), Dataset::Readings)
                .await
                .unwrap(),
        );
    }
    let one_row = arrow::array::RecordBatch::try_new(
        Dataset::Readings.file_schema(),
        vec![
            Arc::new(arrow::array::StringArray::from(vec!["s"])),
            Arc::new(arrow::array::StringArray::from(vec!["b"])),
            Arc::new(arrow::array::StringArray::from(vec!["t"])),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(vec![today * DAY_MS * 1000])
                    .with_timezone("UTC"),
            ),
            Arc::new(arrow::array::Float64Array::from(vec![1.0])),
        ],
    )
    .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = tables
        .into_iter()
        .map(|mut table| {
            let batch = one_row.clone();
            tokio::spawn(async move {
                let mut gave_up = 0u64;
                for seq in 1..=COMMITS_PER_SITE {
                    let unit = Unit {
                        key: format!("2026-01-{seq:02}"),
                        month: "2026-01".into(),
                    };
                    let add = table.upload(&unit, seq, &batch).await.unwrap();
                    let op = DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    };
                    // As the daemon does: a commit that lost too many
                    // races is tried again (next round).
                    loop {
                        match table
                            .commit(vec![Action::Add(add.clone())], Some(seq), op.clone(), None)
                            .await
                        {
                            Ok(_) => break,
                            Err(wattline_fleet::Error::CommitContended { .. }) => gave_up += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                (table, gave_up)
            })
        })
        .collect();
    let mut gave_up = 0;
    for t in tasks {
        let (mut table, g) = t.await.unwrap();
        assert_eq!(table.published_seq().await.unwrap(), Some(COMMITS_PER_SITE));
        gave_up += g;
    }
    let elapsed = started.elapsed();
    let total = sites as u64 * COMMITS_PER_SITE;
    println!(
        "{sites} sites committing at once: {total} commits in {:.2} s ({:.1} commits/s); \
         {gave_up} times a commit lost {} races in a row and was tried again",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        wattline_fleet::table::COMMIT_ATTEMPTS
    );
}
