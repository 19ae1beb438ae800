//! Alert benchmark at the spec's scale: 50 tenants, 2,500 buildings in
//! four time zones, 50,000 sensors, 5,000 rules (threshold on 15-minute
//! and daily windows, baseline on hours, offline meters), 90 days of
//! rollups.
//!
//! ```text
//! cargo bench --bench alerts
//! ```
//!
//! Data: for the 87 older days, one hourly reading per building (its
//! first meter) builds the building rollups the rules read; the last
//! three days (up to now) have a 15-minute reading from every sensor, so
//! 15-minute windows and the newest reading of every meter are at full
//! scale. Everything goes through the storage write path and the rollup
//! steps before measuring.
//!
//! Reports: the first pass (every rule reads its whole look-back), then
//! p50/p95/max of 120 passes with the clock advancing a minute per pass;
//! every 15th pass follows a quarter of fresh readings from every sensor
//! and the rollup step they cause (timed apart), so windows complete and
//! every building changes as in live operation. Then the outbox: the
//! release daemon on the same data directory delivers every pending event
//! to an SMTP server in this process (mailin-embedded, one message per
//! address per round), timed until the outbox is empty. Run by
//! `cargo test --all-targets` (without `--bench`) it does the same at a
//! tiny scale.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{DAY_MS, Daemon, QUARTER_MS, Shape, ZONES, provision};
use wattline_storage::{
    AlertStore, BuildingId, Catalog, EvalSettings, NewRule, Reading, ReadingBatch, ReadingStore,
    RuleKind, SensorKey, Silence, TenantId, WindowSpan,
};

const HOUR_MS: i64 = 3_600_000;
const PASSES: usize = 120;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (full, shape) = Shape::from_args(90, false, 30);
    let buildings = shape.tenants * shape.buildings_per_tenant;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let today = now.div_euclid(DAY_MS);

    let catalog = Arc::new(Catalog::open(&data).unwrap());
    let sensors = provision(&catalog, &shape, &ZONES);
    let store = Arc::new(ReadingStore::open(&data, catalog.clone()).unwrap().0);
    let started = Instant::now();
    let mut loaded = 0u64;
    // Older days: one hourly reading per building, on its first meter.
    let mains: Vec<SensorKey> = sensors
        .iter()
        .step_by(shape.sensors_per_building)
        .copied()
        .collect();
    for day in today - shape.days..today - 2 {
        let mut readings = Vec::new();
        for (i, &m) in mains.iter().enumerate() {
            for h in 0..24 {
                let ts = day * DAY_MS + h * HOUR_MS;
                readings.push(Reading {
                    sensor: m,
                    ts_ms: ts,
                    value_kwh: value(i, ts) * 4.0 * shape.sensors_per_building as f64,
                });
            }
        }
        loaded += append(&store, readings).await;
        flush(&store).await;
    }
    // The last three days up to now: every sensor, every quarter, but
    // every 50th meter went silent an hour ago (for the offline rules).
    let mut q = (today - 2) * DAY_MS;
    while q + QUARTER_MS <= now {
        loaded += if q < now - HOUR_MS {
            quarter(&store, &sensors, shape.sensors_per_building, q, false).await
        } else {
            let live: Vec<SensorKey> = sensors
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 50 != 7)
                .map(|(_, s)| *s)
                .collect();
            quarter(&store, &live, shape.sensors_per_building, q, false).await
        };
        if q.rem_euclid(DAY_MS) == DAY_MS - QUARTER_MS {
            flush(&store).await;
        }
        q += QUARTER_MS;
    }
    let load_time = started.elapsed();
    let started = Instant::now();
    catch_up(&store).await;
    let rollup_time = started.elapsed();

    // 5,000 rules: two per building.
    let alerts = Arc::new(AlertStore::open(&data).unwrap());
    let view_buildings: Vec<(BuildingId, TenantId)> = {
        let view = catalog.view();
        view.tenants()
            .flat_map(|t| view.buildings_of(t.id.as_str()))
            .map(|b| (b.id.clone(), b.tenant_id.clone()))
            .collect()
    };
    let mut kinds = [0usize; 3];
    for (i, (b, t)) in view_buildings.iter().enumerate() {
        let base = NewRule {
            building_id: b.clone(),
            tenant_id: t.clone(),
            kind: RuleKind::Threshold,
            threshold_kwh: None,
            window: WindowSpan::Quarter,
            emails: vec![format!("ops@{b}.test")],
            webhook_url: None,
            enabled: true,
            weeks: None,
            percent: None,
            silent_for: None,
            sensor_id: None,
        };
        let per_quarter = shape.sensors_per_building as f64 * 0.45;
        let first = match i % 3 {
            0 => NewRule {
                threshold_kwh: Some(per_quarter),
                ..base.clone()
            },
            1 => NewRule {
                kind: RuleKind::Baseline,
                window: WindowSpan::Hour,
                weeks: Some(4),
                percent: Some(30.0),
                ..base.clone()
            },
            _ => NewRule {
                kind: RuleKind::Offline,
                silent_for: Some(Silence::try_from("30m".to_owned()).unwrap()),
                ..base.clone()
            },
        };
        kinds[i % 3] += 1;
        alerts.create_rule(first).unwrap();
        alerts
            .create_rule(NewRule {
                window: WindowSpan::Day,
                threshold_kwh: Some(per_quarter * 96.0),
                ..base
            })
            .unwrap();
    }
    let settings = EvalSettings {
        lookback_ms: 24 * HOUR_MS,
        renotify_ms: 6 * HOUR_MS,
        settle_ms: 60_000,
    };
    let pass = |at: i64| {
        let (a, s) = (alerts.clone(), store.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let report = a
                    .evaluate(at, s.rollups(), s.last_seen(), s.catalog(), &settings)
                    .unwrap();
                (started.elapsed(), report)
            })
            .await
            .unwrap()
        }
    };
    // The passes replay the last two hours, a minute apart, so that the
    // events they record are due when the daemon starts below.
    let mut clock = now - (PASSES as i64 + 1) * 60_000;
    let (first_time, first) = pass(clock).await;
    let mut times = Vec::new();
    let mut detect = Vec::new();
    let mut commits = Vec::new();
    let mut events = first.events.len();
    let mut windows = 0;
    let mut fresh_time = Duration::ZERO;
    let mut fresh_rounds = 0;
    for i in 0..PASSES {
        clock += 60_000;
        if i % 15 == 14 {
            let started = Instant::now();
            // The quarter just ended, sent again by every sensor with
            // other values (corrections), so every building changes.
            let ended = clock - clock.rem_euclid(QUARTER_MS) - QUARTER_MS;
            quarter(&store, &sensors, shape.sensors_per_building, ended, true).await;
            catch_up(&store).await;
            fresh_time += started.elapsed();
            fresh_rounds += 1;
        }
        let (t, report) = pass(clock).await;
        times.push(t);
        detect.push(report.detect);
        if !report.commit.is_zero() {
            commits.push(report.commit);
        }
        events += report.events.len();
        windows += report.windows_read;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |times: &mut Vec<Duration>, q: f64| {
        times.sort();
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| ms(*d))
    };
    println!(
        "alerts: {} buildings, {} sensors, {} rules ({} threshold 15m, {} baseline 1h, {} offline 30m, {} threshold 1d); {} days of rollups",
        buildings,
        sensors.len(),
        2 * buildings,
        kinds[0],
        kinds[1],
        kinds[2],
        buildings,
        shape.days
    );
    println!(
        "loaded {loaded} readings in {:.1} s; rollups caught up in {:.1} s",
        load_time.as_secs_f64(),
        rollup_time.as_secs_f64()
    );
    println!(
        "first pass (the whole 24 h look-back of every rule): {:.2} ms, {} events",
        ms(first_time),
        first.events.len()
    );
    println!(
        "{PASSES} passes, a minute apart: p50 {:.3} ms, p95 {:.3} ms, max {:.3} ms; {} windows read, {} events",
        p(&mut times, 0.5),
        p(&mut times, 0.95),
        p(&mut times, 1.0),
        windows,
        events - first.events.len()
    );
    println!(
        "  of which detection in memory: p50 {:.3} ms, p95 {:.3} ms; commit of events and state ({} passes): p50 {:.3} ms, p95 {:.3} ms",
        p(&mut detect, 0.5),
        p(&mut detect, 0.95),
        commits.len(),
        p(&mut commits, 0.5),
        p(&mut commits, 0.95),
    );
    if fresh_rounds > 0 {
        println!(
            "between passes, {fresh_rounds} rounds of a corrected quarter from every sensor and the rollup step: {:.0} ms each",
            ms(fresh_time) / fresh_rounds as f64
        );
    }

    // For a profiler: steady passes (nothing changed) for this many seconds.
    if let Some(secs) = std::env::var("WATTLINE_BENCH_PROFILE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        println!("profiling: steady passes for {secs} s");
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            pass(clock).await;
        }
    }

    // The outbox, delivered by the release daemon to an SMTP server here.
    let pending = alerts.outbox_depth().unwrap();
    drop(alerts);
    drop(store);
    drop(catalog);
    let mails = Arc::new(Mutex::new(0usize));
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = smtp.local_addr().unwrap().port();
    let counter = Count(mails.clone());
    std::thread::spawn(move || {
        let mut server = mailin_embedded::Server::new(counter);
        // More threads than the daemon has mails in flight: its pooled
        // connections each hold one.
        server.with_tcp_listener(smtp).with_num_threads(32);
        let _ = server.serve();
    });
    let daemon = Daemon::start_with(
        dir.path(),
        &data,
        &format!("[alerts]\ninterval = \"1h\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\n"),
    );
    let started = Instant::now();
    let client = common::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let delivered = loop {
        let text = client
            .get(format!("{}/metrics", daemon.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let metric = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        let delivered =
            metric("wattline_alert_deliveries_total{channel=\"email\",outcome=\"delivered\"}")
                .unwrap_or(0.0);
        if metric("wattline_alert_outbox_depth") == Some(0.0) && delivered >= pending as f64 {
            break delivered;
        }
        let limit = Duration::from_secs(if full { 1800 } else { 60 });
        assert!(
            started.elapsed() < limit,
            "outbox not drained: {delivered} of {pending}\n{}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    let mails = *mails.lock().unwrap();
    println!(
        "outbox: {delivered} deliveries in {} mails in {:.2} s from the daemon being ready = {:.0} events/s ({:.0} mails/s) to a local SMTP server",
        mails,
        took.as_secs_f64(),
        delivered / took.as_secs_f64(),
        mails as f64 / took.as_secs_f64()
    );
}

/// A meter's energy in the quarter at `ts`: a daily shape per building.
fn value(i: usize, ts: i64) -> f64 {
    let hour = ts.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    let shape = 0.6 + 0.4 * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0);
    ((0.4 + (i % 7) as f64 * 0.05) * shape * 1000.0).round() / 1000.0
}

/// One reading from every sensor for the quarter at `q`; `again` sends
/// other values (a correction of every reading).
async fn quarter(
    store: &ReadingStore,
    sensors: &[SensorKey],
    per_building: usize,
    q: i64,
    again: bool,
) -> u64 {
    let scale = if again { 1.3 } else { 1.0 };
    let readings = sensors
        .iter()
        .enumerate()
        .map(|(i, &s)| Reading {
            sensor: s,
            ts_ms: q + 60_000,
            value_kwh: value(i / per_building, q) * scale,
        })
        .collect();
    append(store, readings).await
}

async fn append(store: &ReadingStore, readings: Vec<Reading>) -> u64 {
    let mut n = 0;
    for chunk in readings.chunks(50_000) {
        n += chunk.len() as u64;
        store
            .append(ReadingBatch {
                readings: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
    n
}

async fn flush(store: &Arc<ReadingStore>) {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush())
        .await
        .unwrap()
        .unwrap();
}

async fn catch_up(store: &Arc<ReadingStore>) {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.catch_up_rollups())
        .await
        .unwrap()
        .unwrap();
}

/// Counts the messages an SMTP server receives.
#[derive(Clone)]
struct Count(Arc<Mutex<usize>>);

impl mailin_embedded::Handler for Count {
    fn data_end(&mut self) -> mailin_embedded::Response {
        *self.0.lock().unwrap() += 1;
        mailin_embedded::response::OK
    }
}
