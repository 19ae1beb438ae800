//! `wattline import` of real metered history: the Cambridge University
//! Estates 2019 set (40 buildings, 70 meters, 613,200 hourly readings; see
//! `tests/fixtures/README.md` for its origin and license).
//!
//! ```text
//! cargo bench --bench import            # the full set, from ../shared/data
//! ```
//!
//! Starts the release daemon (retention long enough for 2019), creates the
//! tenant, buildings and sensors from the set's CSV files with the bulk
//! route, times the bulk creation of the spec's catalog (2,500 buildings,
//! 50,000 sensors, one JSON request), runs
//! `wattline import readings.csv` (the client: the same binary, one batch
//! at a time over loopback HTTP), and reports its rate. Then checks that
//! what is stored has the CSV's count and kWh per sensor, and that a second
//! run adds nothing. Run by `cargo test --all-targets` (without `--bench`)
//! it does the same with the project's three-sensor excerpt.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::Daemon;
use serde_json::{Value, json};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start_with(
        dir.path(),
        &data,
        "[retention]\nraw = \"20y\"\nrollups = \"20y\"\n",
    );
    let client = common::client_builder().build().unwrap();
    let post = |path: &str, body: Value| {
        let req = client
            .post(format!("{}{path}", daemon.base))
            .bearer_auth(&daemon.key)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };

    let readings = if full {
        let set =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cambridge_estates_2019");
        assert!(set.exists(), "the full set is read from {}", set.display());
        post(
            "/api/v1/tenants",
            json!({"id": "ucam-estates", "name": "University of Cambridge Estates"}),
        )
        .await;
        // The set's own catalog files, through the bulk route.
        for file in ["buildings.csv", "sensors.csv"] {
            let r = client
                .post(format!("{}/api/v1/tenants/ucam-estates/bulk", daemon.base))
                .bearer_auth(&daemon.key)
                .header("Content-Type", "text/csv")
                .body(std::fs::read(set.join(file)).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{file}: {}", r.text().await.unwrap());
        }
        set.join("readings.csv")
    } else {
        post("/api/v1/tenants", json!({"id": "ucam", "name": "ucam"})).await;
        for (b, s) in [("b0", "b0-elec"), ("b1", "b1-elec"), ("b2", "b2-gas")] {
            post(
                "/api/v1/tenants/ucam/buildings",
                json!({"id": b, "name": b}),
            )
            .await;
            post(&format!("/api/v1/buildings/{b}/sensors"), json!({"id": s})).await;
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cambridge_2019_excerpt.csv")
    };
    // The spec's catalog (2,500 buildings, 50,000 sensors) in one bulk
    // request of JSON, timed from the client.
    let (buildings, per) = if full { (2_500, 20) } else { (10, 5) };
    post("/api/v1/tenants", json!({"id": "spec", "name": "spec"})).await;
    let body = json!({
        "buildings": (0..buildings).map(|b| json!({"id": format!("s-b{b}"), "name": format!("Building {b}"),
            "floor_area_m2": 1000.0, "timezone": "Europe/Berlin"})).collect::<Vec<_>>(),
        "sensors": (0..buildings * per).map(|i| json!({"id": format!("s-m{i}"),
            "building_id": format!("s-b{}", i / per)})).collect::<Vec<_>>(),
    });
    let started = Instant::now();
    post("/api/v1/tenants/spec/bulk", body).await;
    println!(
        "bulk catalog: {buildings} buildings and {} sensors in one request in {:.2} s",
        buildings * per,
        started.elapsed().as_secs_f64()
    );

    let expected = csv_totals(&readings);
    let lines: u64 = expected.values().map(|(n, _)| n).sum();

    for run in ["first", "second"] {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_wattline"))
            .args(["import", "--data-dir"])
            .arg(&data)
            .args(["--listen", daemon.base.trim_start_matches("http://")])
            .arg("--rejects")
            .arg(dir.path().join("rejected"))
            .arg(&readings)
            .output()
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = stored_totals(&client, &daemon).await;
        assert_same(&expected, &stored);
        println!(
            "{run} import: {lines} readings in {secs:.2} s = {:.0} readings/s; stored per sensor = the CSV ({} sensors, {:.1} kWh)",
            lines as f64 / secs,
            stored.len(),
            stored.values().map(|(_, k)| k).sum::<f64>()
        );
    }
}

/// The rows of a CSV file with a header, as maps.
fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| ((*h).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// Per sensor: readings and kWh of a `sensor_id,ts,value_kwh` file.
fn csv_totals(path: &Path) -> BTreeMap<String, (u64, f64)> {
    let mut totals = BTreeMap::new();
    for r in rows(path) {
        let e = totals.entry(r["sensor_id"].clone()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += r["value_kwh"].parse::<f64>().unwrap();
    }
    totals
}

async fn stored_totals(client: &reqwest::Client, daemon: &Daemon) -> BTreeMap<String, (u64, f64)> {
    let v: Value = client
        .post(format!("{}/api/v1/sql", daemon.base))
        .bearer_auth(&daemon.key)
        .json(&json!({"sql": "SELECT sensor_id, count(*), sum(value_kwh) FROM readings GROUP BY sensor_id"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                (r[1].as_u64().unwrap(), r[2].as_f64().unwrap()),
            )
        })
        .collect()
}

fn assert_same(a: &BTreeMap<String, (u64, f64)>, b: &BTreeMap<String, (u64, f64)>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, (n, kwh)) in a {
        let (m, other) = b[k];
        assert_eq!(*n, m, "{k}");
        assert!(
            (kwh - other).abs() <= 1e-6 * kwh.abs().max(1.0),
            "{k}: {kwh} vs {other}"
        );
    }
}
