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
        let client = reqwest::Client::new();
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
