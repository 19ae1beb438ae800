//! `GET /api/v1/sensors/{s}/readings` (SPEC 5): UTC timestamps, order,
//! half-open ranges, the row cap, and data surviving restarts.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, error_code, now_minute_ms, reading, utc};

const QUARTER: i64 = 900_000;

#[tokio::test]
async fn ranges_are_half_open_ordered_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("[query]\nmax_rows = 5\n".into()),
            ..Options::default()
        },
    )
    .await;
    server.setup("t", "b", &["s"]).await;
    let t0 = now_minute_ms() - 20 * QUARTER;
    // Sent out of order.
    let readings: Vec<Value> = (0..8)
        .rev()
        .map(|i| reading("s", t0 + i * QUARTER, i as f64))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({"readings": readings}))
            .await
            .status(),
        202
    );

    let get = |query: String| {
        server
            .admin(Method::GET, &format!("/api/v1/sensors/s/readings{query}"))
            .send()
    };
    let v: Value = get(format!(
        "?start={}&end={}",
        utc(t0 + QUARTER),
        utc(t0 + 4 * QUARTER)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        v,
        json!({"sensor_id": "s", "truncated": false, "readings": [
            {"ts": utc(t0 + QUARTER), "value_kwh": 1.0},
            {"ts": utc(t0 + 2 * QUARTER), "value_kwh": 2.0},
            {"ts": utc(t0 + 3 * QUARTER), "value_kwh": 3.0},
        ]})
    );
    // Epoch milliseconds work as bounds too; an offset names the same instant.
    let v: Value = get(format!(
        "?start={}&end={}",
        t0 + 6 * QUARTER,
        t0 + 100 * QUARTER
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["readings"].as_array().unwrap().len(), 2);
    assert!(v["readings"][0]["ts"].as_str().unwrap().ends_with('Z'));

    let v: Value = get(String::new()).await.unwrap().json().await.unwrap();
    assert_eq!(v["truncated"], true);
    assert_eq!(v["readings"].as_array().unwrap().len(), 5);
    assert_eq!(v["readings"][0]["ts"], utc(t0));

    for bad in [
        "?start=noon",
        "?end=2025-13-01T00:00:00Z",
        "?start=5&end=1",
        "?color=red",
    ] {
        let r = get(bad.to_string()).await.unwrap();
        assert_eq!(error_code(r).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn acknowledged_readings_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    let first = json!({"readings": [reading("s", t, 1.0), reading("s", t - QUARTER, 2.0)]});
    assert_eq!(server.post_json(&first).await.status(), 202);
    server.terminate();

    let mut server = Server::start(dir.path()).await;
    assert_eq!(server.readings("s").await.len(), 2);
    let fix = json!({"readings": [reading("s", t, 3.0)]});
    assert_eq!(server.post_json(&fix).await.status(), 202);
    server.kill();

    let server = Server::start(dir.path()).await;
    assert_eq!(
        server.readings("s").await,
        vec![(utc(t - QUARTER), 2.0), (utc(t), 3.0)]
    );
    let log = server.log();
    let ready = log
        .lines()
        .rfind(|l| l.contains("wattline ready on"))
        .unwrap();
    assert!(
        ready.contains("recovered_readings=3") && ready.contains("recovered_batches=2"),
        "{ready}"
    );
}
