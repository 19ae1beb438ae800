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
//! so "readings/s" here is durable throughput. Every reading of a run is
//! distinct (its own sensor and 15-minute slot; no body is sent twice), so
//! the hot set grows, flushes and rollup steps happen inside the measured
//! time, as under real load. The client is this program (reqwest over
//! HTTP/1.1 keep-alive, one connection per client); it runs on the same
//! machine and takes its share of the CPU, including writing the bodies
//! (one generator thread per client, a few bodies ahead of the sender).
//! The catalog is the spec's sensor count (50,000, in 50 buildings),
//! created with one bulk request. After each case it prints the daemon's
//! peak resident memory so far, what waits for the background work, and
//! the CPU seconds the client (this process) and the daemon used.
//!
//! Run by `cargo test --all-targets` (without `--bench`) it does a short
//! smoke run of every case, which keeps the generator itself tested.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::Daemon;
use reqwest::Client;
use serde_json::json;

/// Bodies a client's generator writes ahead of its sender.
const BODIES_AHEAD: usize = 4;
/// Days of 15-minute slots each case has for its readings.
const CASE_DAYS: i64 = 10;

#[derive(Clone, Copy)]
enum Format {
    Json,
    LineProtocol,
}

#[derive(Clone, Copy)]
struct Case {
    batch: usize,
    format: Format,
    sensors: usize,
    /// Sensor ids are `r<tag>-<n>`: the run's, unique per run.
    tag: u32,
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
    let sensors: usize = if full { 50_000 } else { 100 };
    let (base, key, server) = target().await;
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
        tag: run_tag(run_id),
    });
    println!(
        "ingest_load: {clients} clients, {seconds} s per case, {sensors} sensors, target {base}"
    );
    println!(
        "{:<22} {:>14} {:>10} {:>10} {:>10} {:>8} {:>10} {:>12} {:>6} {:>14} {:>7}",
        "case",
        "readings/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "peak MiB",
        "hot at end",
        "dirty",
        "cpu s: client",
        "server"
    );
    for (i, case) in cases.iter().enumerate() {
        let server_pid = server.as_ref().map(|s| s._daemon.pid().to_string());
        let cpu = || {
            (
                cpu_seconds("self"),
                server_pid.as_deref().map_or(0.0, cpu_seconds),
            )
        };
        let cpu_before = cpu();
        let out = run_case(&client, &base, &key, case, clients, seconds, run_id, i).await;
        let cpu_after = cpu();
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
        let peak_mib = server.as_ref().map_or(0, |s| {
            common::status_kib(&s._daemon.pid().to_string(), "VmHWM") / 1024
        });
        let metrics = get_text(&client, &format!("{base}/metrics"), &key).await;
        println!(
            "{:<22} {:>14.0} {:>10.2} {:>10.2} {:>10.2} {:>8} {:>10} {:>12} {:>6} {:>14.1} {:>7.1}",
            name,
            out.readings as f64 / out.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.95),
            pct(0.99),
            out.errors,
            peak_mib,
            metric(&metrics, "wattline_hot_readings"),
            metric(&metrics, "wattline_rollup_dirty_days"),
            cpu_after.0 - cpu_before.0,
            cpu_after.1 - cpu_before.1,
        );
        assert!(out.readings > 0, "{name}: nothing was acknowledged");
        let what = format!("durable ingest over HTTP, {clients} clients, {name}");
        common::summary(
            &what,
            "M readings/s",
            out.readings as f64 / out.elapsed.as_secs_f64() / 1e6,
            None,
        );
        common::summary(&format!("{what}: p95 ack"), "ms", pct(0.95), None);
        if i + 1 == cases.len() {
            common::summary(
                "peak resident memory of the daemon under ingest load",
                "GiB",
                peak_mib as f64 / 1024.0,
                None,
            );
        }
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
    // Each case has its own days; each body its own slots of them.
    let base_ts = run_id - 80 * 86_400_000 + case_no as i64 * CASE_DAYS * 86_400_000;
    let capacity = (CASE_DAYS * 96) as usize * case.sensors / case.batch;
    let all_bodies: Vec<_> = (0..clients)
        .map(|c| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Body>(BODIES_AHEAD);
            let case = *case;
            std::thread::spawn(move || {
                // Body k of client c is body number k * clients + c.
                for n in (c..capacity).step_by(clients) {
                    if tx.blocking_send(body(&case, base_ts, n)).is_err() {
                        return;
                    }
                }
            });
            rx
        })
        .collect();
    // The generators fill their queues before the clock starts.
    std::thread::sleep(Duration::from_millis(200));
    let mut tasks = Vec::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    for mut bodies in all_bodies {
        let (client, base, key) = (client.clone(), base.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut readings, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                // Out of slots for the case: this client is done.
                let Some((path, content_type, text)) = bodies.recv().await else {
                    break;
                };
                let sent = Instant::now();
                let r = client
                    .post(format!("{base}{path}"))
                    .bearer_auth(&key)
                    .header("content-type", content_type)
                    .body(text.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        latencies.push(sent.elapsed());
                        readings += case_batch(&text, content_type);
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

/// Request body number `n` of a case: `batch` readings, reading `g` of
/// the case (`g = n * batch + i`) is sensor `g % sensors` in 15-minute
/// slot `g / sensors`, so no two readings share a key; values like a real
/// meter's.
fn body(case: &Case, base_ts: i64, n: usize) -> Body {
    let mut text = String::with_capacity(case.batch * 64);
    if let Format::Json = case.format {
        text.push_str("{\"readings\":[");
    }
    for i in 0..case.batch {
        let g = n * case.batch + i;
        let sensor = g % case.sensors;
        let ts = base_ts + (g / case.sensors) as i64 * 900_000;
        let value = 0.5 + ((sensor * 31 + g * 7) % 400) as f64 / 100.0;
        match case.format {
            Format::Json => {
                if i > 0 {
                    text.push(',');
                }
                let _ = write!(
                    text,
                    "{{\"sensor_id\":\"r{}-{sensor}\",\"ts\":{ts},\"value_kwh\":{value}}}",
                    case.tag
                );
            }
            Format::LineProtocol => {
                let _ = writeln!(
                    text,
                    "energy,sensor_id=r{}-{sensor} value_kwh={value} {ts}",
                    case.tag
                );
            }
        }
    }
    match case.format {
        Format::Json => {
            text.push_str("]}");
            ("/api/v1/readings".into(), "application/json", text)
        }
        Format::LineProtocol => ("/api/v1/write?precision=ms".into(), "text/plain", text),
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

/// Tenant, 50 buildings and the sensors for the run, in one bulk request
/// (ids unique per run, so a long-running target server can be loaded
/// repeatedly).
async fn setup(client: &Client, base: &str, key: &str, run_id: i64, sensors: usize) {
    let tenant = format!("bench-{run_id}");
    let r = client
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(key)
        .json(&json!({"id": tenant, "name": "bench"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create tenant: {}", r.status());
    let buildings: Vec<_> = (0..50)
        .map(|b| json!({"id": format!("bench-b{b}-{run_id}"), "name": "bench"}))
        .collect();
    let sensors: Vec<_> = (0..sensors)
        .map(|s| json!({"id": format!("r{}-{s}", run_tag(run_id)), "building_id": format!("bench-b{}-{run_id}", s % 50)}))
        .collect();
    let r = client
        .post(format!("{base}/api/v1/tenants/{tenant}/bulk"))
        .bearer_auth(key)
        .json(&json!({"buildings": buildings, "sensors": sensors}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        status.is_success(),
        "bulk catalog: {status} {}",
        r.text().await.unwrap_or_default()
    );
}

async fn get_text(client: &Client, url: &str, key: &str) -> String {
    match client.get(url).bearer_auth(key).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A gauge's value in a Prometheus text page, as printed.
fn metric(page: &str, name: &str) -> String {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("-")
        .to_owned()
}

/// CPU seconds (user and system) a process has used so far; 0 when
/// unreadable. `/proc/<pid>/stat` counts in clock ticks (100 a second on
/// Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is
    // the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

fn run_tag(run_id: i64) -> u32 {
    (run_id % 1_000_000) as u32
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
