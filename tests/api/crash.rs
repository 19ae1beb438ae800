//! Crash safety: several clients ingest concurrently, the daemon is killed
//! with SIGKILL at an arbitrary moment, and after a restart every
//! acknowledged reading is present exactly once with its acknowledged
//! value. Repeated over several kill/restart rounds on one data directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, now_minute_ms, utc};

const CLIENTS: usize = 6;
const ROUNDS: usize = 4;
const BATCH: i64 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_ingestion_loses_no_acknowledged_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    server.create_building("t", "b").await;
    for c in 0..CLIENTS {
        server.create_sensor("b", &format!("s{c}")).await;
    }
    let base = now_minute_ms() - 30 * 86_400_000;
    // What each sensor must hold: ts -> value, for acknowledged batches.
    let acked: Arc<Mutex<BTreeMap<(usize, i64), f64>>> = Arc::default();

    for round in 0..ROUNDS {
        let url = server.url("/api/v1/readings");
        let key = server.admin.clone();
        let client = crate::support::client();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (url, key, client, acked) =
                (url.clone(), key.clone(), client.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0i64.. {
                    // Each round rewrites part of the previous round's
                    // timestamps with new values (corrections), so
                    // last-write-wins is checked across crashes too.
                    let start = (round as i64 * 40 + n) * BATCH / 2;
                    let value = |i: i64| (round * 1000) as f64 + n as f64 + i as f64 / 1000.0;
                    let readings: Vec<Value> = (0..BATCH)
                        .map(|i| {
                            json!({"sensor_id": format!("s{c}"), "ts": base + (start + i) * 60_000, "value_kwh": value(i)})
                        })
                        .collect();
                    let sent = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"readings": readings}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            let mut acked = acked.lock().unwrap();
                            for i in 0..BATCH {
                                acked.insert((c, base + (start + i) * 60_000), value(i));
                            }
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        // The daemon died under us: this batch may or may
                        // not be stored, and that is allowed.
                        Err(_) => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 150 * round as u64)).await;
        server.kill();
        for t in tasks {
            t.await.unwrap();
        }

        server = Server::start(dir.path()).await;
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing was acknowledged");
        for c in 0..CLIENTS {
            let points = server.readings(&format!("s{c}")).await;
            let stored: BTreeMap<String, f64> = points.iter().cloned().collect();
            assert_eq!(
                points.len(),
                stored.len(),
                "round {round}: a timestamp appears twice"
            );
            for ((sensor, ts), value) in acked.iter().filter(|((s, _), _)| *s == c) {
                let got = stored.get(&utc(*ts));
                assert!(
                    got.is_some(),
                    "round {round}: s{sensor} lost acknowledged {}",
                    utc(*ts)
                );
                // A later, unacknowledged batch may have overwritten an
                // acknowledged value only with a value of a later write.
                let got = *got.unwrap();
                assert!(
                    got >= *value,
                    "round {round}: s{sensor} {} went back from {value} to {got}",
                    utc(*ts)
                );
            }
        }
    }
}

/// Rounds of [`many_sigkill_rounds_across_every_background_step`]; set
/// `WATTLINE_CRASH_ROUNDS` for a longer run.
const MANY_ROUNDS: usize = 50;

/// SIGKILL at a random moment, round after round on one data directory,
/// while clients write new readings, late readings and corrections, and
/// the daemon flushes (every second), compacts (after each flush, and on
/// the admin flush a client sends now and then), rolls up (every second)
/// and applies retention (at each start). After every restart: every
/// acknowledged reading is there once with its value or a later one, and
/// every few rounds the building's daily rollups equal the sums of its raw
/// readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_sigkill_rounds_across_every_background_step() {
    let rounds: usize = std::env::var("WATTLINE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MANY_ROUNDS);
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::support::Options {
        config: Some("[storage]\nflush_interval = \"1s\"\n[retention]\nraw = \"6d\"\n".into()),
        ..Default::default()
    };
    let mut server = Server::start_with(dir.path(), opts.clone()).await;
    server.setup("t", "b", &["s0", "s1", "s2"]).await;
    // Five days of minute slots, inside retention.raw, so retention runs
    // at every start without dropping what the test checks.
    let base = now_minute_ms() - 5 * 86_400_000;
    const SLOTS: i64 = 5 * 1440;
    let acked: Arc<Mutex<BTreeMap<(usize, i64), f64>>> = Arc::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..rounds {
        let (url, key) = (server.url(""), server.admin.clone());
        let client = crate::support::client();
        let mut tasks = Vec::new();
        for c in 0..3usize {
            let (url, key, client, acked) =
                (url.clone(), key.clone(), client.clone(), acked.clone());
            let seed = next();
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    // One writer per sensor, values growing with every
                    // write: "a later value" is "a larger value".
                    let value = (round as u64 * 100_000 + n * 100) as f64;
                    let slots: Vec<i64> = (0..60u64)
                        .map(|i| ((seed.wrapping_add(n * 7919 + i * 104_729)) % SLOTS as u64) as i64)
                        .collect();
                    let readings: Vec<Value> = slots
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            json!({"sensor_id": format!("s{c}"), "ts": base + s * 60_000, "value_kwh": value + i as f64})
                        })
                        .collect();
                    let sent = client
                        .post(format!("{url}/api/v1/readings"))
                        .bearer_auth(&key)
                        .json(&json!({"readings": readings}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            let mut acked = acked.lock().unwrap();
                            for (i, s) in slots.iter().enumerate() {
                                // A slot twice in one batch: the last wins.
                                acked.insert((c, base + s * 60_000), value + i as f64);
                            }
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return,
                    }
                    if c == 0 && n % 25 == 24 {
                        // Flush and compact everything now and then.
                        let _ = client
                            .post(format!("{url}/api/v1/admin/flush"))
                            .bearer_auth(&key)
                            .send()
                            .await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200 + next() % 1300)).await;
        server.kill();
        for t in tasks {
            t.await.unwrap();
        }
        server = Server::start_with(dir.path(), opts.clone()).await;
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing was acknowledged");
        for c in 0..3 {
            let points = server.readings(&format!("s{c}")).await;
            let stored: BTreeMap<String, f64> = points.iter().cloned().collect();
            assert_eq!(points.len(), stored.len(), "round {round}: a reading twice");
            for ((_, ts), value) in acked.iter().filter(|((s, _), _)| *s == c) {
                let got = stored.get(&utc(*ts));
                assert!(
                    got.is_some_and(|g| *g >= *value),
                    "round {round}: s{c} {} is {got:?}, acknowledged {value}",
                    utc(*ts)
                );
            }
        }
        if round % 10 == 9 || round + 1 == rounds {
            rollups_match_raw(&server, round).await;
        }
    }
}

/// Waits (up to 30 s) until the building's daily rollups equal the raw
/// readings' daily sums (the building is in UTC).
async fn rollups_match_raw(server: &Server, round: usize) {
    let raw_sql = "SELECT date_trunc('day', ts) AS d, sum(value_kwh) AS kwh, count(*) AS n \
                   FROM readings GROUP BY d ORDER BY d";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let raw: Vec<(f64, i64)> = server
            .sql(raw_sql)
            .await
            .iter()
            .map(|r| (r[1].as_f64().unwrap(), r[2].as_i64().unwrap()))
            .collect();
        let energy = server
            .get_json("/api/v1/buildings/b/energy?resolution=day&start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z")
            .await;
        let rolled: Vec<(f64, i64)> = energy["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kwh"].as_f64().unwrap(), p["readings"].as_i64().unwrap()))
            .collect();
        let same = raw.len() == rolled.len()
            && raw
                .iter()
                .zip(&rolled)
                .all(|(a, b)| a.1 == b.1 && (a.0 - b.0).abs() < 1e-6 * a.0.abs().max(1.0));
        if same {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "round {round}: daily rollups {rolled:?} never matched the raw sums {raw:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
