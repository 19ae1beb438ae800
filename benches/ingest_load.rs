//! Ingest load generator: durable readings per second and acknowledgement
//! latency (p50/p95/p99) for batches of 100, 1,000 and 10,000 readings
//! posted by concurrent clients over HTTP.
//!
//! ```text
//! cargo bench --bench ingest_load
//! ```
//!
//! By default it starts the release `wattline` binary on a fresh data
//! directory in a temp folder (limits raised so that the rate limits do not
//! cap the measurement). To load a server that is already running, set
//! `WATTLINE_BENCH_URL` (e.g. `http://127.0.0.1:8080`) and
//! `WATTLINE_BENCH_KEY` (an admin key). `WATTLINE_BENCH_SECONDS` sets the
//! time per case (default 10) and `WATTLINE_BENCH_CLIENTS` the concurrency
//! (default 8).
//!
//! Every reading is acknowledged only after its write-ahead commit (fsync),
//! so "readings/s" here is durable throughput. The client runs on the same
//! machine and takes its share of the CPU; bodies are generated before the
//! clock starts so that the client spends its time sending.
//!
//! Run by `cargo test --all-targets` (without `--bench`) it does a short
//! smoke run of every case, which keeps the generator itself tested.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Daemon;
use reqwest::Client;
use serde_json::json;

const BODIES_PER_CLIENT: usize = 32;

#[derive(Clone, Copy)]
enum Format {
    Json,
    LineProtocol,
}

struct Case {
    batch: usize,
    format: Format,
    sensors: usize,
}

/// A request: path, content type and body text.
type Body = (String, &'static str, String);

struct Outcome {
    readings: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = env_or("WATTLINE_BENCH_SECONDS", if full { 10.0 } else { 0.5 });
    let clients: usize = env_or("WATTLINE_BENCH_CLIENTS", 8);
    let sensors: usize = if full { 2_000 } else { 100 };
    let (base, key, _server) = target().await;
    let client = common::client_builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let run_id = now_ms();
    setup(&client, &base, &key, run_id, sensors).await;

    let cases = [
        (100, Format::Json),
        (1_000, Format::Json),
        (10_000, Format::Json),
        (10_000, Format::LineProtocol),
    ];
    let cases = cases.map(|(batch, format)| Case {
        batch,
        format,
        sensors,
    });
    println!(
        "ingest_load: {clients} clients, {seconds} s per case, {sensors} sensors, target {base}"
    );
    println!(
        "{:<22} {:>14} {:>10} {:>10} {:>10} {:>8}",
        "case", "readings/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for (i, case) in cases.iter().enumerate() {
        let out = run_case(&client, &base, &key, case, clients, seconds, run_id, i).await;
        let mut lat = out.latencies;
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        let name = format!(
            "{} x {}",
            match case.format {
                Format::Json => "json",
                Format::LineProtocol => "line-protocol",
            },
            case.batch
        );
        println!(
            "{:<22} {:>14.0} {:>10.2} {:>10.2} {:>10.2} {:>8}",
            name,
            out.readings as f64 / out.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.95),
            pct(0.99),
            out.errors
        );
        assert!(out.readings > 0, "{name}: nothing was acknowledged");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_case(
    client: &Client,
    base: &str,
    key: &str,
    case: &Case,
    clients: usize,
    seconds: f64,
    run_id: i64,
    case_no: usize,
) -> Outcome {
    // Distinct timestamps per case, client and body: every reading is new.
    let base_ts = run_id - 80 * 86_400_000 + case_no as i64 * 10 * 86_400_000;
    let per_client = if seconds < 2.0 { 2 } else { BODIES_PER_CLIENT };
    let all_bodies: Vec<Arc<Vec<Body>>> = (0..clients)
        .map(|c| {
            Arc::new(
                (0..per_client)
                    .map(|b| body(case, base_ts, (c * per_client + b) as i64))
                    .collect(),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    for bodies in all_bodies {
        let (client, base, key) = (client.clone(), base.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut readings, mut errors) = (0u64, 0u64);
            let mut i = 0;
            while Instant::now() < deadline {
                let (path, content_type, text) = &bodies[i % bodies.len()];
                i += 1;
                let sent = Instant::now();
                let r = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(&key)
                    .header("content-type", *content_type)
                    .body(text.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        latencies.push(sent.elapsed());
                        readings += case_batch(text, content_type);
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!(
                                "error {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("request failed: {e}");
                    }
                }
            }
            (readings, latencies, errors)
        }));
    }
    let mut out = Outcome {
        readings: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (n, lat, e) = t.await.unwrap();
        out.readings += n;
        out.latencies.extend(lat);
        out.errors += e;
    }
    out.elapsed = started.elapsed();
    out
}

/// Number of readings in a body (counted once per body shape).
fn case_batch(text: &str, content_type: &str) -> u64 {
    if content_type == "text/plain" {
        text.lines().count() as u64
    } else {
        text.matches("\"sensor_id\"").count() as u64
    }
}

/// One request body: `batch` readings spread over the sensors, 15-minute
/// grid, values like a real meter's.
fn body(case: &Case, base_ts: i64, slot: i64) -> Body {
    let per_slot = case.batch.div_ceil(case.sensors) as i64;
    let reading = |i: usize| {
        let sensor = i % case.sensors;
        let step = slot * per_slot + (i / case.sensors) as i64;
        let ts = base_ts + step * 900_000;
        let value = 0.5 + ((sensor * 31 + i * 7) % 400) as f64 / 100.0;
        (format!("bench-{sensor}"), ts, value)
    };
    match case.format {
        Format::Json => {
            let readings: Vec<_> = (0..case.batch)
                .map(|i| {
                    let (s, ts, v) = reading(i);
                    json!({"sensor_id": s, "ts": ts, "value_kwh": v})
                })
                .collect();
            (
                "/api/v1/readings".into(),
                "application/json",
                json!({"readings": readings}).to_string(),
            )
        }
        Format::LineProtocol => {
            let lines: String = (0..case.batch)
                .map(|i| {
                    let (s, ts, v) = reading(i);
                    format!("energy,sensor_id={s} value_kwh={v} {ts}\n")
                })
                .collect();
            ("/api/v1/write?precision=ms".into(), "text/plain", lines)
        }
    }
}

/// The server to load: the one named by the environment, or a fresh one.
async fn target() -> (String, String, Option<ServerGuard>) {
    if let (Ok(url), Ok(key)) = (
        std::env::var("WATTLINE_BENCH_URL"),
        std::env::var("WATTLINE_BENCH_KEY"),
    ) {
        return (url.trim_end_matches('/').to_owned(), key, None);
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &dir.path().join("data"));
    (
        daemon.base.clone(),
        daemon.key.clone(),
        Some(ServerGuard {
            _daemon: daemon,
            _dir: dir,
        }),
    )
}

/// Keeps the started daemon and its temporary folder for the run.
struct ServerGuard {
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

/// Tenant, building and sensors for the run (ids unique per run, so a
/// long-running target server can be loaded repeatedly).
async fn setup(client: &Client, base: &str, key: &str, run_id: i64, sensors: usize) {
    let tenant = format!("bench-{run_id}");
    let post = |path: String, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let r = post(
        "/api/v1/tenants".into(),
        json!({"id": tenant, "name": "bench"}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "create tenant: {}", r.status());
    let building = format!("bench-b-{run_id}");
    post(
        format!("/api/v1/tenants/{tenant}/buildings"),
        json!({"id": building, "name": "bench"}),
    )
    .await
    .unwrap();
    for s in 0..sensors {
        let r = post(
            format!("/api/v1/buildings/{building}/sensors"),
            json!({"id": format!("bench-{s}")}),
        )
        .await
        .unwrap();
        // 409: the sensor exists from an earlier run against this server.
        assert!(r.status().is_success() || r.status() == 409);
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
