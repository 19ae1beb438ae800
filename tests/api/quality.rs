//! Data quality over HTTP: each bucket's coverage (readings received over
//! those the active sensors' metering intervals expect), in `/energy`,
//! the SQL building tables and reports.

use serde_json::{Value, json};

use crate::support::{Server, reading};

const QUARTER: i64 = 900_000;

#[tokio::test]
async fn implausible_readings_are_quarantined_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &[]).await;
    server
        .create_sensor_with("b", json!({"id": "m", "max_kw": 10}))
        .await;
    // 10 kW over a quarter hour is 2.5 kWh: 25 kWh is a glitch of the
    // meter's counter, not consumption.
    let now = crate::support::now_minute_ms();
    let hour = now / 3_600_000 * 3_600_000 - 3_600_000;
    let readings: Vec<Value> = [1.0, 25.0, 2.0, 2.5]
        .iter()
        .enumerate()
        .map(|(i, v)| reading("m", hour + i as i64 * QUARTER, *v))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({ "readings": readings }))
            .await
            .status(),
        202
    );
    server.flush().await;
    let start = chrono::DateTime::from_timestamp_millis(hour)
        .unwrap()
        .to_rfc3339();
    let v = server
        .get_json(&format!(
            "/api/v1/buildings/b/energy?resolution=hour&start={}",
            start.replace('+', "%2B")
        ))
        .await;
    let p = &v["points"][0];
    assert_eq!(
        (p["kwh"].as_f64(), p["readings"].as_i64()),
        (Some(5.5), Some(3))
    );
    assert_eq!(p["quarantined"], 1);
    assert_eq!(p["peak_kwh"], 2.5);
    let v = server
        .get_json(&format!(
            "/api/v1/buildings/b/energy?resolution=15m&start={}",
            start.replace('+', "%2B")
        ))
        .await;
    assert_eq!(v["points"][1]["quarantined"], 1);
    assert_eq!(v["points"][1]["kwh"], 0.0);
    let rows = server
        .sql("SELECT kwh, readings, quarantined FROM sensor_hourly")
        .await;
    assert_eq!(rows, vec![json!([5.5, 3, 1])]);
    let rows = server
        .sql("SELECT sum(quarantined) FROM building_daily")
        .await;
    assert_eq!(rows[0][0], 1);
}

#[tokio::test]
async fn coverage_counts_what_arrived_against_what_the_meters_should_send() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["q1"]).await;
    // A second meter reporting hourly; an inactive one expects nothing.
    for body in [
        json!({"id": "h1", "interval_s": 3600}),
        json!({"id": "off", "is_active": false}),
    ] {
        server.create_sensor_with("b", body).await;
    }
    // Yesterday (UTC; the building is in UTC): q1 every quarter of the
    // day, h1 only in the first twelve hours. Expected: 96 + 24 = 120,
    // received 96 + 12 = 108.
    let now = crate::support::now_minute_ms();
    let start = now / 86_400_000 * 86_400_000 - 86_400_000;
    let mut readings: Vec<Value> = (0..96)
        .map(|i| reading("q1", start + i * QUARTER, 0.25))
        .collect();
    readings.extend((0..12).map(|i| reading("h1", start + i * 4 * QUARTER, 1.0)));
    assert_eq!(
        server
            .post_json(&json!({ "readings": readings }))
            .await
            .status(),
        202
    );
    server.flush().await;
    let day = chrono::DateTime::from_timestamp_millis(start)
        .unwrap()
        .date_naive();
    let next = day.succ_opt().unwrap();
    let server = &server;
    let energy = |res: &str| {
        let path = format!("/api/v1/buildings/b/energy?resolution={res}&start={day}&end={next}");
        async move { server.get_json(&path).await }
    };
    let v = energy("day").await;
    assert_eq!(v["points"][0]["coverage"], 0.9);
    let v = energy("hour").await;
    let hours = v["points"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[0]["coverage"], 1.0);
    // 4 of the 5 expected readings in an afternoon hour.
    assert_eq!(hours[20]["coverage"], 0.8);
    let v = energy("15m").await;
    assert_eq!(v["points"][0]["coverage"], 1.0);
    // SQL has the same figure.
    let rows = server
        .sql("SELECT coverage, readings FROM building_daily")
        .await;
    assert_eq!(rows, vec![json!([0.9, 108])]);
    let rows = server
        .sql("SELECT min(coverage), max(coverage) FROM building_hourly")
        .await;
    assert_eq!(rows, vec![json!([0.8, 1.0])]);

    // h1 is silent from noon on: no closing hour yet, so no gap. One more
    // reading at 20:00 closes a gap of 12:00 to 20:00.
    let r = server
        .post_json(&json!({"readings": [reading("h1", start + 80 * QUARTER, 1.0)]}))
        .await;
    assert_eq!(r.status(), 202);
    server.flush().await;
    let gaps = server
        .sql(
            "SELECT sensor_id, gap_start, gap_end, missing_hours FROM sensor_gaps \
             WHERE building_id = 'b' ORDER BY gap_start",
        )
        .await;
    let at = |q: i64| {
        chrono::DateTime::from_timestamp_millis(start + q * QUARTER)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    assert_eq!(gaps, vec![json!(["h1", at(48), at(80), 8])]);
    // Another tenant sees none of them.
    server.setup("u", "ub", &["u1"]).await;
    let key_u = server.create_key("tenant", Some("u")).await;
    let v = server
        .sql_with(&key_u, "SELECT count(*) FROM sensor_gaps")
        .await;
    assert_eq!(v["rows"][0][0], 0);
}
