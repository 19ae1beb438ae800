//! `wattline demo`: the daemon plus a demo tenant that looks alive.
//!
//! On the first run it creates tenant `demo` with four buildings in four
//! time zones (Berlin, New York, Kolkata, Sydney) and floor areas, six
//! meters each, and backfills three weeks of 15-minute readings with a
//! daily and weekly shape and noise, all through the real HTTP API. Then
//! the meters post live readings every few seconds until the daemon stops.
//! Every start creates a fresh tenant key and prints it with commands that
//! work as printed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::http_client::request;

const BUILDINGS: [(&str, &str, &str, f64); 4] = [
    ("berlin-hq", "Berlin head office", "Europe/Berlin", 4200.0),
    ("nyc-lab", "New York lab", "America/New_York", 1800.0),
    ("pune-plant", "Pune plant", "Asia/Kolkata", 9500.0),
    ("sydney-store", "Sydney store", "Australia/Sydney", 950.0),
];
const METERS_PER_BUILDING: usize = 6;
const BACKFILL_DAYS: i64 = 21;
const QUARTER_MS: i64 = 900_000;
/// How often the simulated meters post live readings.
const LIVE_EVERY: Duration = Duration::from_secs(5);

/// Energy of one meter over `span_ms` ending at `ts`: an office-hours shape
/// in the building's local time, lower at weekends, with noise; kWh at
/// watt-hour resolution.
fn energy(building: usize, meter: usize, ts: i64, span_ms: i64, rng: &mut u64) -> f64 {
    let offset_h = [1.0, -5.0, 5.5, 11.0][building];
    let local_h = ((ts as f64 / 3_600_000.0) + offset_h).rem_euclid(24.0);
    let weekday = ((ts / 86_400_000 + 4) % 7) as usize; // 0 = Sunday
    let weekend = weekday == 0 || weekday == 6;
    let office = if (7.0..19.0).contains(&local_h) {
        0.5 + 0.5 * (std::f64::consts::PI * (local_h - 7.0) / 12.0).sin()
    } else {
        0.0
    };
    let base = 0.25 + if weekend { 0.3 * office } else { office };
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let noise = 0.9 + (*rng % 2000) as f64 / 10_000.0;
    let size = BUILDINGS[building].3 / 1000.0 * (1.0 + meter as f64 * 0.3);
    let kwh = base * noise * size * span_ms as f64 / 3_600_000.0;
    (kwh * 1000.0).round() / 1000.0
}

fn meter_id(building: usize, meter: usize) -> String {
    format!("{}-m{}", BUILDINGS[building].0, meter + 1)
}

struct Api {
    addr: SocketAddr,
    key: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: &Value) -> Result<(u16, String)> {
        let (addr, key, method, path, body) = (
            self.addr,
            self.key.clone(),
            method.to_owned(),
            path.to_owned(),
            body.to_string(),
        );
        request(
            addr,
            &method,
            &path,
            &key,
            "application/json",
            &body,
            Duration::from_secs(60),
        )
    }

    fn post_ok(&self, path: &str, body: &Value) -> Result<String> {
        let (status, answer) = self.call("POST", path, body)?;
        if !(200..300).contains(&status) {
            bail!("POST {path} answered {status}: {answer}");
        }
        Ok(answer)
    }
}

/// Provisions (first run), backfills, prints the key and commands, then
/// runs the live meters until `stop`.
pub(crate) async fn run(
    addr: SocketAddr,
    data_dir: &Path,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let admin = Api {
        addr,
        key: crate::backup::admin_key(data_dir)?,
    };
    let setup = tokio::task::spawn_blocking(move || -> Result<String> {
        let (status, _) = admin.call(
            "POST",
            "/api/v1/tenants",
            &json!({"id": "demo", "name": "Demo Properties"}),
        )?;
        let fresh = status == 201;
        if fresh {
            // The whole site in one request and one commit.
            let buildings: Vec<Value> = BUILDINGS
                .iter()
                .map(|(id, name, tz, area)| {
                    json!({"id": id, "name": name, "timezone": tz, "floor_area_m2": area})
                })
                .collect();
            let sensors: Vec<Value> = BUILDINGS
                .iter()
                .enumerate()
                .flat_map(|(b, (id, ..))| {
                    (0..METERS_PER_BUILDING)
                        .map(move |m| json!({"id": meter_id(b, m), "building_id": id}))
                })
                .collect();
            admin.post_ok(
                "/api/v1/tenants/demo/bulk",
                &json!({"buildings": buildings, "sensors": sensors}),
            )?;
        }
        let answer = admin.post_ok(
            "/api/v1/keys",
            &json!({"role": "tenant", "tenant_id": "demo", "name": "demo"}),
        )?;
        let key: Value = serde_json::from_str(&answer)?;
        let key = key["key"].as_str().context("key in answer")?.to_owned();
        if fresh {
            backfill(&Api {
                addr,
                key: key.clone(),
            })?;
        }
        Ok(key)
    });
    let key = setup.await??;
    print_welcome(addr, &key);
    live(Api { addr, key }, stop).await
}

fn backfill(api: &Api) -> Result<()> {
    let end = wattline_storage::now_ms() / QUARTER_MS * QUARTER_MS;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut batch = Vec::new();
    for t in ((end - BACKFILL_DAYS * 86_400_000)..end).step_by(QUARTER_MS as usize) {
        for b in 0..BUILDINGS.len() {
            for m in 0..METERS_PER_BUILDING {
                batch.push(json!({"sensor_id": meter_id(b, m), "ts": t, "value_kwh": energy(b, m, t, QUARTER_MS, &mut rng)}));
            }
        }
        if batch.len() >= 9000 {
            api.post_ok(
                "/api/v1/readings",
                &json!({"readings": std::mem::take(&mut batch)}),
            )?;
        }
    }
    if !batch.is_empty() {
        api.post_ok("/api/v1/readings", &json!({"readings": batch}))?;
    }
    Ok(())
}

async fn live(api: Api, mut stop: watch::Receiver<bool>) -> Result<()> {
    let api = std::sync::Arc::new(api);
    let mut rng = wattline_storage::now_ms() as u64 | 1;
    let mut last = wattline_storage::now_ms();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LIVE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let now = wattline_storage::now_ms();
        let span = now - last;
        last = now;
        let readings: Vec<Value> = (0..BUILDINGS.len())
            .flat_map(|b| (0..METERS_PER_BUILDING).map(move |m| (b, m)))
            .map(|(b, m)| json!({"sensor_id": meter_id(b, m), "ts": now - span, "value_kwh": energy(b, m, now, span, &mut rng)}))
            .collect();
        let api = api.clone();
        let sent = tokio::task::spawn_blocking(move || {
            api.post_ok("/api/v1/readings", &json!({"readings": readings}))
        })
        .await;
        if let Ok(Err(e)) = sent {
            tracing::warn!(error = %e, "demo meters could not post");
        }
    }
}

fn print_welcome(addr: SocketAddr, key: &str) {
    let base = format!("http://{addr}");
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(BACKFILL_DAYS - 1);
    println!(
        "\nwattline demo is running at {base}\n\
         dashboard: open {base}/ and sign in with the tenant key below\n\n\
         tenant key: {key}\n\
         tenant \"demo\": buildings berlin-hq, nyc-lab, pune-plant, sydney-store; {n} meters each;\n\
         {days} days of backfilled 15-minute readings; live meters post every {live} s.\n\n\
         Try:\n\
         curl -s -H 'Authorization: Bearer {key}' {base}/api/v1/tenants/demo/buildings\n\
         curl -s -H 'Authorization: Bearer {key}' '{base}/api/v1/buildings/berlin-hq/energy?resolution=day'\n\
         curl -s -H 'Authorization: Bearer {key}' '{base}/api/v1/buildings/pune-plant/energy?resolution=hour'\n\
         curl -s -H 'Authorization: Bearer {key}' {base}/api/v1/sql -d '{{\"sql\": \"SELECT building_id, round(sum(kwh), 1) AS kwh FROM building_daily GROUP BY building_id ORDER BY kwh DESC\"}}'\n\
         curl -s -H 'Authorization: Bearer {key}' '{base}/api/v1/sql?format=csv' -d '{{\"sql\": \"SELECT * FROM readings ORDER BY ts DESC LIMIT 10\"}}'\n\n\
         A report (PDF, CSV or JSON) is a job: ask, then fetch it by the id it answers with:\n\
         curl -s -H 'Authorization: Bearer {key}' {base}/api/v1/reports -d '{{\"building_id\": \"berlin-hq\", \"start\": \"{from}\", \"end\": \"{today}\", \"format\": \"pdf\"}}'\n\
         curl -s -o report.pdf -H 'Authorization: Bearer {key}' {base}/api/v1/reports/ID/result\n",
        n = METERS_PER_BUILDING,
        days = BACKFILL_DAYS,
        live = LIVE_EVERY.as_secs(),
    );
}
