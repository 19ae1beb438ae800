//! Shared by the benchmarks: a catalog at the spec's shape and days of
//! generated meter readings loaded through the storage write path.

#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wattline_storage::{
    BuildingId, Catalog, Meter, NewBuilding, NewSensor, Reading, ReadingBatch, ReadingStore,
    SensorId, SensorKey, TenantId,
};

pub const QUARTER_MS: i64 = 900_000;
pub const DAY_MS: i64 = 86_400_000;

pub struct Shape {
    pub tenants: usize,
    pub buildings_per_tenant: usize,
    pub sensors_per_building: usize,
    pub days: i64,
}

/// Four zones with whole-hour, half-hour and southern DST offsets.
pub const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
];

impl Shape {
    /// The spec's scale with `--bench` (50 tenants, 2,500 buildings,
    /// 50,000 sensors, `days` days, or `WATTLINE_BENCH_DAYS` when
    /// `days_from_env`); a tiny smoke shape otherwise.
    pub fn from_args(days: i64, days_from_env: bool, smoke_days: i64) -> (bool, Shape) {
        let full = std::env::args().any(|a| a == "--bench");
        let shape = if full {
            Shape {
                tenants: 50,
                buildings_per_tenant: 50,
                sensors_per_building: 20,
                days: std::env::var("WATTLINE_BENCH_DAYS")
                    .ok()
                    .filter(|_| days_from_env)
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(days),
            }
        } else {
            Shape {
                tenants: 2,
                buildings_per_tenant: 3,
                sensors_per_building: 2,
                days: smoke_days,
            }
        };
        (full, shape)
    }
}

/// Tenants `t-i`, buildings `b-i-j`, sensors `s-i-j-k`, created in bulk.
pub fn provision(catalog: &Catalog, shape: &Shape, zones: &[&str]) -> Vec<SensorKey> {
    provision_with(catalog, shape, zones, |_| Meter::default())
}

/// As [`provision`], the `i`th sensor reporting as `meter(i)`.
pub fn provision_with(
    catalog: &Catalog,
    shape: &Shape,
    zones: &[&str],
    meter: impl Fn(usize) -> Meter,
) -> Vec<SensorKey> {
    let mut new_sensors = Vec::new();
    for t in 0..shape.tenants {
        let tenant = TenantId::parse(&format!("t-{t}")).unwrap();
        catalog
            .create_tenant(tenant.clone(), format!("Tenant {t}"))
            .unwrap();
        for b in 0..shape.buildings_per_tenant {
            let building = BuildingId::parse(&format!("b-{t}-{b}")).unwrap();
            catalog
                .create_building(NewBuilding {
                    id: building.clone(),
                    tenant_id: tenant.clone(),
                    name: format!("Building {t}-{b}"),
                    floor_area_m2: Some(1000.0),
                    timezone: Some(
                        zones[(t * shape.buildings_per_tenant + b) % zones.len()].into(),
                    ),
                })
                .unwrap();
            for s in 0..shape.sensors_per_building {
                new_sensors.push(NewSensor {
                    id: SensorId::parse(&format!("s-{t}-{b}-{s}")).unwrap(),
                    building_id: building.clone(),
                    kind: None,
                    unit: None,
                    is_active: None,
                    meter: meter(new_sensors.len()),
                });
            }
        }
    }
    catalog
        .create_sensors(new_sensors)
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect()
}

/// One day of 15-minute readings for every sensor: a daily shape, a
/// per-sensor scale and noise, at meter (watt-hour) resolution.
pub async fn load_day(store: &ReadingStore, sensors: &[SensorKey], day_start: i64) -> u64 {
    let mut batch = Vec::with_capacity(50_000);
    let mut n = 0u64;
    let mut rng = day_start as u64 | 1;
    for (i, &sensor) in sensors.iter().enumerate() {
        let scale = 0.2 + (i % 17) as f64 * 0.15;
        for q in 0..96 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let hour = q as f64 / 4.0;
            let shape = 0.6 + 0.4 * (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0);
            let noise = (rng % 1000) as f64 / 1000.0 * 0.1;
            let value = ((scale * shape + noise) * 1000.0).round() / 1000.0;
            batch.push(Reading {
                sensor,
                ts_ms: day_start + q * QUARTER_MS,
                value_kwh: value,
            });
            if batch.len() == 50_000 {
                n += batch.len() as u64;
                store
                    .append(ReadingBatch {
                        readings: std::mem::take(&mut batch),
                    })
                    .await
                    .unwrap();
            }
        }
    }
    n += batch.len() as u64;
    if !batch.is_empty() {
        store
            .append(ReadingBatch { readings: batch })
            .await
            .unwrap();
    }
    n
}

/// The release daemon on a data directory, with limits raised so that
/// rate limits do not cap a measurement; killed when dropped.
pub struct Daemon {
    child: Child,
    pub base: String,
    pub key: String,
}

impl Daemon {
    pub fn start(root: &std::path::Path, data: &std::path::Path) -> Daemon {
        Self::start_with(root, data, "")
    }

    /// As [`Daemon::start`], with more TOML appended to the config.
    pub fn start_with(root: &std::path::Path, data: &std::path::Path, extra: &str) -> Daemon {
        let config = root.join("bench.toml");
        std::fs::write(
            &config,
            format!("[ingest]\nmax_body_bytes = 4194304\nrate_limit_per_key = 1000000000\nrate_limit_per_ip = 1000000\n{extra}"),
        )
        .unwrap();
        let log_path = root.join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wattline"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn,wattline::serve=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        let addr = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(rest) = text.split("ready on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "daemon did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let key = std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        Daemon {
            child,
            base: format!("http://{addr}"),
            key,
        }
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client builder; reqwest shares the daemon's TLS set-up
/// (rustls without a built-in provider), so ring is installed first.
#[allow(dead_code)]
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A `kB` field of `/proc/<pid>/status` (`pid` a number or `self`), such
/// as `VmRSS` or `VmHWM`; 0 when unreadable.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Prints one figure for the suite's one table (`benches/suite.sh`
/// collects these lines from every benchmark): what was measured,
/// wattline's figure and, where DuckDB ran the same on the same data,
/// DuckDB's and the ratio wattline / DuckDB.
pub fn summary(what: &str, unit: &str, wattline: f64, duckdb: Option<f64>) {
    let shown = |v: f64| format!("{} {unit}", significant(v));
    println!(
        "summary\t{what}\t{}\t{}\t{}",
        shown(wattline),
        duckdb.map_or_else(String::new, shown),
        duckdb.map_or_else(String::new, |d| format!("{:.2}", wattline / d))
    );
}

/// `v` with three significant digits (no fewer whole digits).
fn significant(v: f64) -> String {
    let digits = if v == 0.0 {
        0
    } else {
        (2 - v.abs().log10().floor() as i64).clamp(0, 6) as usize
    };
    format!("{v:.digits$}")
}

/// Bytes of the files under `dir`, each counted once however many links
/// it has (readers' links to chunk files are hard links).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    files_bytes(dir, &mut seen)
}

fn files_bytes(dir: &std::path::Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => bytes += files_bytes(&entry.path(), seen),
            Ok(m) if seen.insert((m.dev(), m.ino())) => bytes += m.len(),
            _ => {}
        }
    }
    bytes
}
