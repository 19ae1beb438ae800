//! Reports under load: 100 concurrent report requests for different
//! buildings while another client measures `/energy` latency, against the
//! release daemon.
//!
//! ```text
//! cargo bench --bench reports
//! ```
//!
//! 2 tenants, 100 buildings in four time zones, 10 sensors each, 90 days
//! of 15-minute readings (8.6 million) loaded through the storage write
//! path, rollups caught up; then the daemon starts on that data directory
//! with the default two report workers. Reports: `/energy` (a week at hour
//! resolution, a different building each time) p50/p95 with no report
//! running, then while 100 PDF reports of the 90 days (with a 14-day
//! forecast) are requested at once; each report's time from its request
//! to `done` (p50/p95/max; each job is polled every 100 ms, so these are
//! up to 100 ms late); the daemon's resident memory before and its
//! largest sample during the reports. Run by `cargo test --all-targets`
//! (without `--bench`) it does the same at a tiny scale.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{DAY_MS, Daemon, Shape, ZONES, load_day, provision, status_kib};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wattline_storage::{Catalog, ReadingStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (full, mut shape) = Shape::from_args(90, true, 21);
    if full {
        shape.tenants = 2;
        shape.buildings_per_tenant = 50;
        shape.sensors_per_building = 10;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let today = (now_ms()).div_euclid(DAY_MS);
    let first_day = today - shape.days;
    let buildings: Vec<String> = (0..shape.tenants)
        .flat_map(|t| (0..shape.buildings_per_tenant).map(move |b| format!("b-{t}-{b}")))
        .collect();
    {
        let catalog = Arc::new(Catalog::open(&data).unwrap());
        let sensors = provision(&catalog, &shape, &ZONES);
        let store = Arc::new(ReadingStore::open(&data, catalog).unwrap().0);
        let started = Instant::now();
        let mut n = 0;
        for d in 0..shape.days {
            n += load_day(&store, &sensors, (first_day + d) * DAY_MS).await;
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.flush())
                .await
                .unwrap()
                .unwrap();
        }
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.catch_up_rollups())
            .await
            .unwrap()
            .unwrap();
        println!(
            "reports: {} buildings, {} sensors, {} days; loaded {n} readings and caught up rollups in {:.1} s",
            buildings.len(),
            sensors.len(),
            shape.days,
            started.elapsed().as_secs_f64()
        );
    }

    let daemon = Daemon::start(dir.path(), &data);
    let client = common::client_builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let rss_before = status_kib(&daemon.pid().to_string(), "VmRSS");
    let target = DaemonRef {
        base: daemon.base.clone(),
        key: daemon.key.clone(),
    };

    // /energy with nothing else running.
    let samples = if full { 500 } else { 50 };
    let mut idle = Vec::with_capacity(samples);
    for i in 0..samples {
        idle.push(energy_at(&client, &target, &buildings[i % buildings.len()]).await);
    }

    // The same while 100 reports are requested at once.
    let stop = Arc::new(AtomicBool::new(false));
    let loaded = Arc::new(Mutex::new(Vec::new()));
    let peak_rss = Arc::new(Mutex::new(rss_before));
    let measurer = {
        let (client, base, key) = (client.clone(), daemon.base.clone(), daemon.key.clone());
        let (stop, loaded, peak_rss, buildings) = (
            stop.clone(),
            loaded.clone(),
            peak_rss.clone(),
            buildings.clone(),
        );
        let pid = daemon.pid();
        tokio::spawn(async move {
            let d = DaemonRef { base, key };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = energy_at(&client, &d, &buildings[i % buildings.len()]).await;
                loaded.lock().await.push(t);
                let rss = status_kib(&pid.to_string(), "VmRSS");
                let mut p = peak_rss.lock().await;
                *p = (*p).max(rss);
                i += 1;
            }
        })
    };
    let end = (today * DAY_MS).to_string();
    let start = ((today - shape.days) * DAY_MS).to_string();
    let started = Instant::now();
    let jobs: Vec<_> = (0..100)
        .map(|i| {
            let (client, base, key) = (client.clone(), daemon.base.clone(), daemon.key.clone());
            let building = buildings[i % buildings.len()].clone();
            // Distinct requests also where buildings repeat (the tiny
            // run): the forecast length differs.
            let forecast_days = 14 + i / buildings.len();
            let (start, end) = (start.clone(), end.clone());
            tokio::spawn(async move {
                let asked = Instant::now();
                let body = json!({"building_id": building, "start": start, "end": end,
                    "format": "pdf", "forecast_days": forecast_days});
                let r = client
                    .post(format!("{base}/api/v1/reports"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let id = r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                loop {
                    let job: Value = client
                        .get(format!("{base}/api/v1/reports/{id}"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    match job["status"].as_str() {
                        Some("done") => return asked.elapsed(),
                        Some("failed") => panic!("report failed: {job}"),
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        })
        .collect();
    let mut done = Vec::new();
    for j in jobs {
        done.push(j.await.unwrap());
    }
    let all_done = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    measurer.await.unwrap();
    let mut loaded = loaded.lock().await.clone();
    let peak_rss = *peak_rss.lock().await;

    println!(
        "/energy (a week, hourly) with no report running: p50 {:.2} ms, p95 {:.2} ms ({} requests)",
        pct(&mut idle, 0.5),
        pct(&mut idle, 0.95),
        idle.len()
    );
    println!(
        "/energy while 100 PDF reports run: p50 {:.2} ms, p95 {:.2} ms ({} requests)",
        pct(&mut loaded, 0.5),
        pct(&mut loaded, 0.95),
        loaded.len()
    );
    println!(
        "100 reports of {} days (PDF, 14-day forecast), requested at once: from request to done p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; all done in {:.2} s",
        shape.days,
        pct(&mut done, 0.5),
        pct(&mut done, 0.95),
        pct(&mut done, 1.0),
        all_done.as_secs_f64()
    );
    println!(
        "daemon resident memory: {} MiB before, at most {} MiB while the reports ran",
        rss_before / 1024,
        peak_rss / 1024
    );
}

struct DaemonRef {
    base: String,
    key: String,
}

async fn energy_at(client: &reqwest::Client, d: &DaemonRef, building: &str) -> Duration {
    let started = Instant::now();
    let r = client
        .get(format!(
            "{}/api/v1/buildings/{building}/energy?resolution=hour",
            d.base
        ))
        .bearer_auth(&d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    started.elapsed()
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
