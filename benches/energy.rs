//! Rollup and building-energy benchmark at the spec's scale: 50 tenants,
//! 2,500 buildings in four time zones, 50,000 sensors, 30 days of
//! 15-minute readings (144 million).
//!
//! ```text
//! cargo bench --bench energy
//! ```
//!
//! Reports: the time rollups take to catch up with the 30 loaded days;
//! p50/p95/p99 latency over HTTP of `/energy` for a month at hour
//! resolution and a year at month resolution, of the tenant building
//! list, and of SQL on `building_hourly` for the same month of hours
//! (and a week of hours both ways); and how long rollups take to catch
//! up after a backfill of one day of data for every sensor, posted
//! through the HTTP API. The 30 days are
//! loaded through the storage write path (write-ahead, memtable, flush)
//! before the release daemon starts on the same data directory.
//! `WATTLINE_BENCH_DAYS` changes the 30. Run by `cargo test --all-targets`
//! (without `--bench`) it does the same at a tiny scale.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DAY_MS, Daemon, QUARTER_MS, Shape, ZONES, load_day, provision};
use serde_json::{Value, json};
use wattline_storage::{Catalog, ReadingStore};

const SAMPLES: usize = 200;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (_, shape) = Shape::from_args(30, true, 3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let today = now_ms().div_euclid(DAY_MS);
    let first_day = today - shape.days;

    // Load the days through the storage write path, then catch up rollups.
    let (loaded, load_time, catch_up) = {
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
        let load_time = started.elapsed();
        let started = Instant::now();
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.catch_up_rollups())
            .await
            .unwrap()
            .unwrap();
        (n, load_time, started.elapsed())
    };

    let server = Daemon::start(dir.path(), &data);
    let client = common::client_builder().build().unwrap();
    let get = |path: String| {
        let (client, url, key) = (
            client.clone(),
            format!("{}{path}", server.base),
            server.key.clone(),
        );
        async move {
            let started = Instant::now();
            let r = client.get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            started.elapsed()
        }
    };
    let month_start = common_day(first_day.max(today - 30));
    let mut month_hour = Vec::new();
    let mut year_month = Vec::new();
    let mut list = Vec::new();
    let mut sql_month_hour = Vec::new();
    let mut week_hour = Vec::new();
    let mut sql_week_hour = Vec::new();
    let sql = |body: Value| {
        let (client, url, key) = (
            client.clone(),
            format!("{}/api/v1/sql", server.base),
            server.key.clone(),
        );
        async move {
            let started = Instant::now();
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            started.elapsed()
        }
    };
    let (week_start, end) = (common_day(today - 7), common_day(today));
    for i in 0..SAMPLES {
        let (t, b) = (i % shape.tenants, i % shape.buildings_per_tenant);
        let building = format!("b-{t}-{b}");
        let (energy, query) = hours_both_ways(&building, &month_start, &end);
        month_hour.push(get(energy).await);
        year_month.push(
            get(format!(
                "/api/v1/buildings/{building}/energy?resolution=month&start={}&end={}",
                common_day(today - 365),
                common_day(today + 1)
            ))
            .await,
        );
        list.push(get(format!("/api/v1/tenants/t-{t}/buildings")).await);
        sql_month_hour.push(sql(json!({ "sql": query })).await);
        // The last 7 UTC days of hours, both ways (issue 14's case).
        let (energy, query) = hours_both_ways(&building, &week_start, &end);
        week_hour.push(get(energy).await);
        sql_week_hour.push(sql(json!({ "sql": query })).await);
    }

    // A backfill of one more (earlier) day for every sensor, over HTTP,
    // then wait until building_daily holds all of it.
    let late_day = first_day - 1;
    let per_day = shape.tenants * shape.buildings_per_tenant * shape.sensors_per_building * 96;
    let started = Instant::now();
    post_day(&client, &server, &shape, late_day).await;
    let posted = started.elapsed();
    let sql = format!(
        "SELECT coalesce(sum(readings), 0) FROM building_hourly WHERE hour >= to_timestamp_millis({}) AND hour < to_timestamp_millis({})",
        late_day * DAY_MS,
        (late_day + 1) * DAY_MS
    );
    loop {
        let r = client
            .post(format!("{}/api/v1/sql", server.base))
            .bearer_auth(&server.key)
            .json(&json!({"sql": sql}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v["rows"][0][0].as_i64() == Some(per_day as i64) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "rollups never caught up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = started.elapsed();

    println!(
        "energy: {} sensors, {} buildings, {} days = {} readings loaded in {:.1} s; rollups caught up with them in {:.1} s",
        shape.tenants * shape.buildings_per_tenant * shape.sensors_per_building,
        shape.tenants * shape.buildings_per_tenant,
        shape.days,
        loaded,
        load_time.as_secs_f64(),
        catch_up.as_secs_f64()
    );
    println!(
        "{:<48} {:>9} {:>9} {:>9}",
        "HTTP latency, ms (200 requests each)", "p50", "p95", "p99"
    );
    let mut summaries = Vec::new();
    for (name, mut samples) in [
        ("/energy, a month at hour resolution", month_hour),
        ("/energy, a year at month resolution", year_month),
        ("tenant building list", list),
        ("SQL, a month of hours (building_hourly)", sql_month_hour),
        ("/energy, a week at hour resolution", week_hour),
        ("SQL, a week of hours (building_hourly)", sql_week_hour),
    ] {
        samples.sort();
        let p = |q: f64| {
            samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64()
                * 1e3
        };
        println!(
            "{name:<48} {:>9.2} {:>9.2} {:>9.2}",
            p(0.5),
            p(0.95),
            p(0.99)
        );
        summaries.push((format!("HTTP p50: {name}"), p(0.5)));
    }
    common::summary(
        "rollups caught up after the load",
        "s",
        catch_up.as_secs_f64(),
        None,
    );
    for (what, ms) in summaries {
        common::summary(&what, "ms", ms, None);
    }
    println!(
        "backfill of one day for every sensor ({per_day} readings): posted in {:.1} s, rollups complete {:.1} s after the first post",
        posted.as_secs_f64(),
        caught_up.as_secs_f64()
    );
}

/// A building's hours over the UTC days `[start, end)`: the `/energy`
/// path and the same rows through SQL.
fn hours_both_ways(building: &str, start: &str, end: &str) -> (String, String) {
    let energy =
        format!("/api/v1/buildings/{building}/energy?resolution=hour&start={start}&end={end}");
    let sql = format!(
        "SELECT hour, kwh, readings FROM building_hourly WHERE building_id = '{building}' \
         AND hour >= TIMESTAMP '{start}T00:00:00Z' AND hour < TIMESTAMP '{end}T00:00:00Z' \
         ORDER BY hour"
    );
    (energy, sql)
}

fn common_day(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Posts one day of readings for every sensor in 10,000-reading batches
/// from four concurrent clients.
async fn post_day(client: &reqwest::Client, server: &Daemon, shape: &Shape, day: i64) {
    let mut bodies = Vec::new();
    let mut batch = Vec::new();
    for t in 0..shape.tenants {
        for b in 0..shape.buildings_per_tenant {
            for s in 0..shape.sensors_per_building {
                for q in 0..96 {
                    batch.push(json!({"sensor_id": format!("s-{t}-{b}-{s}"), "ts": day * DAY_MS + q * QUARTER_MS, "value_kwh": 0.25 + (q % 7) as f64 / 100.0}));
                    if batch.len() == 10_000 {
                        bodies.push(json!({"readings": std::mem::take(&mut batch)}).to_string());
                    }
                }
            }
        }
    }
    if !batch.is_empty() {
        bodies.push(json!({"readings": batch}).to_string());
    }
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, key, bodies) = (
            client.clone(),
            format!("{}/api/v1/readings", server.base),
            server.key.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = bodies.lock().unwrap().pop() else {
                    return;
                };
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
