//! Meter types over HTTP: sensors created as cumulative registers or power
//! meters, their readings sent late and out of order, and the building
//! energy they give equal to an interval meter's fed the same consumption.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, error_code, reading};

const QUARTER: i64 = 900_000;

async fn building_with(server: &Server, id: &str, sensor: Value) {
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": id, "name": id, "timezone": "Asia/Kolkata"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_sensor_with(id, sensor).await;
}

async fn kwh(server: &Server, building: &str, query: &str) -> Vec<(String, f64)> {
    let v = server
        .get_json(&format!("/api/v1/buildings/{building}/energy?{query}"))
        .await;
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ts"].as_str().unwrap().into(), p["kwh"].as_f64().unwrap()))
        .collect()
}

#[tokio::test]
async fn registers_and_power_meters_give_interval_energy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    building_with(&server, "ib", json!({"id": "ib-1"})).await;
    building_with(
        &server,
        "rb",
        json!({"id": "rb-1", "meter_type": "cumulative", "register_max": 100000, "max_kw": 50}),
    )
    .await;
    building_with(
        &server,
        "pb",
        json!({"id": "pb-1", "meter_type": "power", "max_gap_s": 900}),
    )
    .await;
    let got = server.get_json("/api/v1/sensors/rb-1").await;
    assert_eq!(got["meter_type"], "cumulative");
    assert_eq!(got["unit"], "kWh");
    assert_eq!(got["register_max"], 100000.0);
    assert_eq!(got["max_gap_s"], 3600);
    assert_eq!(server.get_json("/api/v1/sensors/pb-1").await["unit"], "kW");

    // Yesterday (UTC) from 00:00, a quarter each: the interval meter sends
    // each quarter's energy, the register its total at each quarter's
    // start (wrapping at 100000 kWh), one more to close the last quarter.
    let now = crate::support::now_minute_ms();
    let start = now / 86_400_000 * 86_400_000 - 86_400_000;
    let used: Vec<f64> = (0..96).map(|i| f64::from((i * 37) % 11) * 0.125).collect();
    let mut total = 99_990.5;
    let mut register = Vec::new();
    let mut interval = Vec::new();
    for (i, u) in used.iter().enumerate() {
        let ts = start + i as i64 * QUARTER;
        register.push(reading("rb-1", ts, total));
        interval.push(reading("ib-1", ts, *u));
        total = (total + u) % 100_000.0;
    }
    register.push(reading("rb-1", start + 96 * QUARTER, total));
    // A glitch mid-hour (01:45 UTC is 07:15 local).
    register[7]["value_kwh"] = json!(12.0);
    // Newest first, in two batches, one sent twice.
    register.reverse();
    let older = register.split_off(50);
    for batch in [&register, &older, &register] {
        assert_eq!(
            server
                .post_json(&json!({ "readings": batch }))
                .await
                .status(),
            202
        );
    }
    assert_eq!(
        server
            .post_json(&json!({ "readings": interval }))
            .await
            .status(),
        202
    );
    // A power meter at a constant 2 kW, a sample every 5 minutes over the
    // same day and the first sample of the next.
    let power: Vec<Value> = (0..=288)
        .map(|i| reading("pb-1", start + i * 300_000, 2.0))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({ "readings": power }))
            .await
            .status(),
        202
    );
    server.flush().await;

    let day = chrono::DateTime::from_timestamp_millis(start)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let end = chrono::DateTime::from_timestamp_millis(start + 86_400_000)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let range = format!("start={day}&end={end}");
    // Hours start at :30 UTC in this zone; the glitch at quarter 7 moved
    // its energy to quarter 6, in the same local hour.
    for res in ["hour", "day"] {
        let want = kwh(&server, "ib", &format!("resolution={res}&{range}")).await;
        assert!(!want.is_empty());
        assert_eq!(
            kwh(&server, "rb", &format!("resolution={res}&{range}")).await,
            want,
            "{res}"
        );
    }
    let quarters = kwh(&server, "rb", &format!("resolution=15m&{range}")).await;
    let want = kwh(&server, "ib", &format!("resolution=15m&{range}")).await;
    assert_eq!(
        quarters.len(),
        want.len() - 1,
        "the glitch's quarter is empty"
    );
    let sum = |v: &[(String, f64)]| v.iter().map(|p| p.1).sum::<f64>();
    assert!((sum(&quarters) - sum(&want)).abs() < 1e-9);
    // 2 kW for 24 hours.
    let day_kwh = kwh(&server, "pb", &format!("resolution=hour&{range}")).await;
    assert_eq!(day_kwh.len(), 24);
    // The last local hour starts at 23:30 UTC: half of it has samples.
    assert!(day_kwh[..23].iter().all(|(_, k)| *k == 2.0), "{day_kwh:?}");
    assert_eq!(day_kwh[23].1, 1.0);
    let q = kwh(&server, "pb", &format!("resolution=15m&{range}")).await;
    assert_eq!(q.len(), 96);
    assert!(q.iter().all(|(_, k)| *k == 0.5), "{q:?}");

    // SQL: the sensors' meter types; sensor hours hold derived energy,
    // readings both what the meter sent and the derived energy.
    let rows = server
        .sql("SELECT sensor_id, meter_type FROM sensors ORDER BY sensor_id")
        .await;
    assert_eq!(
        rows,
        vec![
            json!(["ib-1", "interval"]),
            json!(["pb-1", "power"]),
            json!(["rb-1", "cumulative"])
        ]
    );
    let rows = server
        .sql("SELECT sensor_id, round(sum(kwh), 3) FROM sensor_hourly GROUP BY sensor_id ORDER BY sensor_id")
        .await;
    assert_eq!(rows[0][1], rows[2][1], "{rows:?}");
    let rows = server
        .sql("SELECT max(value), max(value_kwh) FROM readings WHERE sensor_id = 'rb-1'")
        .await;
    assert!(rows[0][0].as_f64().unwrap() > 99_990.0, "{rows:?}");
    assert_eq!(rows[0][1].as_f64(), Some(1.25), "the largest quarter");
    let rows = server
        .sql(
            "SELECT quality, count(*), count(value_kwh) FROM readings \
             WHERE sensor_id = 'rb-1' GROUP BY 1 ORDER BY 1",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!(["gap", 1, 0]),
            json!(["glitch", 1, 0]),
            json!(["measured", 94, 94]),
            json!(["wrap", 1, 1])
        ]
    );
    // A reading's energy needs the next reading, outside the filter; a
    // glitch-skipped reading's energy goes to the one before it.
    for (i, want) in [
        (10, json!(used[10])),
        (6, json!(used[6] + used[7])),
        (7, Value::Null),
    ] {
        let sql = format!(
            "SELECT value_kwh FROM readings WHERE sensor_id = 'rb-1' \
             AND ts = to_timestamp_millis({})",
            start + i * QUARTER
        );
        assert_eq!(server.sql(&sql).await, vec![json!([want])], "{sql}");
    }
    let sql = format!(
        "SELECT sensor_id, round(sum(value_kwh), 3) FROM readings \
         WHERE ts >= to_timestamp_millis({start}) AND ts < to_timestamp_millis({}) \
         GROUP BY 1 ORDER BY 1",
        start + 86_400_000
    );
    let rows = server.sql(&sql).await;
    assert_eq!(rows[1], json!(["pb-1", 48.0]));
    assert_eq!(rows[0][1], rows[2][1], "{rows:?}");
    // The raw read-back is what the meter sent, the glitch included.
    let raw = server.get_json("/api/v1/sensors/rb-1/readings").await;
    let raw = raw["readings"].as_array().unwrap();
    assert_eq!(raw.len(), 97);
    assert_eq!(raw[0]["value_kwh"], 99_990.5);
    assert_eq!(raw[7]["value_kwh"], 12.0);
    // Rows without the derived columns are read as they are.
    let rows = server
        .sql("SELECT count(*), count(value) FROM readings WHERE sensor_id = 'rb-1'")
        .await;
    assert_eq!(rows, vec![json!([97, 97])]);
}

#[tokio::test]
async fn meter_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &[]).await;
    for (body, what) in [
        (json!({"id": "x", "meter_type": "gas"}), "cumulative"),
        (
            json!({"id": "x", "meter_type": "power", "max_gap_s": 0}),
            "max_gap",
        ),
        (
            json!({"id": "x", "meter_type": "power", "max_gap_s": 86400}),
            "max_gap",
        ),
        (json!({"id": "x", "register_max": 1000}), "register_max"),
        (
            json!({"id": "x", "meter_type": "cumulative", "max_kw": -1}),
            "max_kw",
        ),
        (
            json!({"id": "x", "meter_type": "cumulative", "register_max": "big"}),
            "big",
        ),
    ] {
        let r = server
            .admin(Method::POST, "/api/v1/buildings/b/sensors")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, v) = error_code(r).await;
        assert_eq!(status, 400, "{body}");
        assert!(v.to_string().contains(what), "{body}: {v}");
    }
    // Bulk CSV names the line of a bad meter type; good lines create
    // meters of each type.
    let csv = "sensor_id,building_id,meter_type,register_max,max_gap_s\n\
               r1,b,cumulative,1000000,1800\n\
               p1,b,power,,\n\
               x1,b,water,,\n";
    let r = server.post_csv("/api/v1/tenants/t/bulk", csv).await;
    let (status, _, v) = error_code(r).await;
    assert_eq!(status, 400);
    assert!(v.to_string().contains("line 4"), "{v}");
    let csv = csv.lines().take(3).collect::<Vec<_>>().join("\n");
    let r = server.post_csv("/api/v1/tenants/t/bulk", csv).await;
    assert_eq!(r.status(), 201);
    let r1 = server.get_json("/api/v1/sensors/r1").await;
    assert_eq!(
        (r1["meter_type"].clone(), r1["max_gap_s"].clone()),
        (json!("cumulative"), json!(1800))
    );
    assert_eq!(
        server.get_json("/api/v1/sensors/p1").await["meter_type"],
        "power"
    );
}
