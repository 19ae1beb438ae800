//! Rollups and building energy (SPEC 5): local-calendar buckets across DST
//! changes and odd offsets, late data and corrections, restarts with rollup
//! work pending, raw retention, time zone changes, and a year of real
//! metered data against an independent recomputation.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike};
use chrono_tz::Tz;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, error_code, reading};

const QUARTER: i64 = 900_000;
const HOUR: i64 = 3_600_000;

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

async fn energy(server: &Server, building: &str, query: &str) -> Value {
    server
        .get_json(&format!("/api/v1/buildings/{building}/energy?{query}"))
        .await
}

fn points(v: &Value) -> Vec<(String, f64, i64)> {
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ts"].as_str().unwrap().to_owned(),
                p["kwh"].as_f64().unwrap(),
                p["readings"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn building(server: &Server, id: &str, tz: &str) {
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": id, "name": id, "timezone": tz}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_sensor(id, &format!("{id}-m")).await;
}

/// One reading of 1 kWh every 15 minutes over `[from, to)`.
async fn quarters(server: &Server, sensor: &str, from: i64, to: i64) {
    let all: Vec<Value> = (from..to)
        .step_by(QUARTER as usize)
        .map(|t| reading(sensor, t, 1.0))
        .collect();
    for chunk in all.chunks(5000) {
        assert_eq!(
            server.post_json(&json!({"readings": chunk})).await.status(),
            202
        );
    }
}

#[tokio::test]
async fn local_days_follow_dst_and_odd_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    building(&server, "ber", "Europe/Berlin").await;
    building(&server, "nyc", "America/New_York").await;
    building(&server, "lhi", "Australia/Lord_Howe").await;
    building(&server, "kol", "Asia/Kolkata").await;
    quarters(
        &server,
        "ber-m",
        ms("2026-10-24T12:00:00Z"),
        ms("2026-10-26T12:00:00Z"),
    )
    .await;
    quarters(
        &server,
        "nyc-m",
        ms("2026-10-31T12:00:00Z"),
        ms("2026-11-02T12:00:00Z"),
    )
    .await;
    quarters(
        &server,
        "lhi-m",
        ms("2026-10-03T00:00:00Z"),
        ms("2026-10-05T00:00:00Z"),
    )
    .await;
    quarters(
        &server,
        "kol-m",
        ms("2026-11-10T00:00:00Z"),
        ms("2026-11-12T00:00:00Z"),
    )
    .await;
    server.flush().await;

    // Berlin, 2026-10-25: 25 local hours, the repeated 02:00 twice.
    let v = energy(
        &server,
        "ber",
        "start=2026-10-25&end=2026-10-26&resolution=hour",
    )
    .await;
    let hours = points(&v);
    assert_eq!(hours.len(), 25);
    assert_eq!(hours[0].0, "2026-10-25T00:00:00+02:00");
    assert_eq!(hours[2].0, "2026-10-25T02:00:00+02:00");
    assert_eq!(hours[3].0, "2026-10-25T02:00:00+01:00");
    assert!(hours.iter().all(|h| h.1 == 4.0 && h.2 == 4));
    let v = energy(
        &server,
        "ber",
        "start=2026-10-25&end=2026-10-26&resolution=day",
    )
    .await;
    assert_eq!(
        points(&v),
        vec![("2026-10-25T00:00:00+02:00".to_string(), 100.0, 100)]
    );
    assert_eq!(v["timezone"], "Europe/Berlin");
    assert_eq!(v["unit"], "kWh");

    // New York, 2026-11-01: 25 hours.
    let v = energy(
        &server,
        "nyc",
        "start=2026-11-01&end=2026-11-02&resolution=day",
    )
    .await;
    assert_eq!(
        points(&v),
        vec![("2026-11-01T00:00:00-04:00".to_string(), 100.0, 100)]
    );

    // Lord Howe, 2026-10-04: the clocks skip 02:00-02:30, a 23.5-hour day.
    let v = energy(
        &server,
        "lhi",
        "start=2026-10-04&end=2026-10-05&resolution=day",
    )
    .await;
    assert_eq!(points(&v)[0].1, 94.0);
    let v = energy(
        &server,
        "lhi",
        "start=2026-10-04&end=2026-10-05&resolution=hour",
    )
    .await;
    let hours = points(&v);
    assert_eq!(hours.len(), 24);
    assert!(
        hours
            .iter()
            .any(|h| h.0 == "2026-10-04T02:30:00+11:00" && h.1 == 2.0)
    );

    // Kolkata: local hours start at :30 UTC.
    let v = energy(
        &server,
        "kol",
        "start=2026-11-11T00:00:00Z&end=2026-11-11T03:00:00Z&resolution=hour",
    )
    .await;
    let hours = points(&v);
    assert_eq!(hours[0].0, "2026-11-11T06:00:00+05:30");
    assert_eq!(hours.len(), 3);

    // 15-minute buckets come from the raw readings.
    let v = energy(
        &server,
        "ber",
        "start=2026-10-25T00:00:00Z&end=2026-10-25T01:00:00Z&resolution=15m",
    )
    .await;
    assert_eq!(points(&v).len(), 4);
    assert_eq!(points(&v)[0].0, "2026-10-25T02:00:00+02:00");

    // Months and bad parameters.
    let v = energy(
        &server,
        "ber",
        "start=2026-10-01&end=2026-11-01&resolution=month",
    )
    .await;
    assert_eq!(
        points(&v),
        vec![("2026-10-01T00:00:00+02:00".to_string(), 192.0, 192)]
    );
    for bad in [
        "resolution=week",
        "start=yesterday",
        "start=2026-11-02&end=2026-11-01",
    ] {
        let r = server
            .admin(Method::GET, &format!("/api/v1/buildings/ber/energy?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn late_data_and_corrections_repair_exactly_the_buckets_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    building(&server, "b", "Europe/Berlin").await;
    let day = ms("2026-11-20T00:00:00Z");
    quarters(&server, "b-m", day, day + 24 * HOUR).await;
    server.flush().await;
    let before = points(
        &energy(
            &server,
            "b",
            "start=2026-11-19&end=2026-11-22&resolution=day",
        )
        .await,
    );
    assert_eq!(before.iter().map(|p| p.1).sum::<f64>(), 96.0);

    // Days later: a correction and a late reading, then a crash before the
    // rollup worker's next tick.
    let fix = json!({"readings": [reading("b-m", day + 5 * HOUR, 11.0), reading("b-m", day + 24 * HOUR + 7 * HOUR, 3.0)]});
    assert_eq!(server.post_json(&fix).await.status(), 202);
    server.kill();
    let server = Server::start(dir.path()).await;
    server.flush().await;
    let after = points(
        &energy(
            &server,
            "b",
            "start=2026-11-19&end=2026-11-22&resolution=day",
        )
        .await,
    );
    assert_eq!(after.iter().map(|p| p.1).sum::<f64>(), 96.0 + 10.0 + 3.0);
    let hours = points(
        &energy(
            &server,
            "b",
            "start=2026-11-20T05:00:00Z&end=2026-11-20T06:00:00Z&resolution=hour",
        )
        .await,
    );
    assert_eq!(
        hours,
        vec![("2026-11-20T06:00:00+01:00".to_string(), 14.0, 4)]
    );

    // The SQL rollup tables agree with the endpoint.
    let sql = server
        .sql("SELECT sum(kwh), sum(readings) FROM building_daily WHERE building_id = 'b'")
        .await;
    assert_eq!(sql[0], json!([109.0, 97]));
    let sql = server
        .sql("SELECT sum(kwh) FROM sensor_hourly WHERE sensor_id = 'b-m'")
        .await;
    assert_eq!(sql[0][0], 109.0);
    let sql = server.sql("SELECT sum(kwh) FROM building_monthly").await;
    assert_eq!(sql[0][0], 109.0);
}

#[tokio::test]
async fn a_time_zone_change_rebuilds_days_and_rollups_outlive_raw_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    building(&server, "b", "UTC").await;
    let day = ms("2026-11-20T00:00:00Z");
    quarters(&server, "b-m", day, day + 24 * HOUR).await;
    server.flush().await;
    let utc_days = points(
        &energy(
            &server,
            "b",
            "start=2026-11-19&end=2026-11-22&resolution=day",
        )
        .await,
    );
    assert_eq!(
        utc_days,
        vec![("2026-11-20T00:00:00Z".to_string(), 96.0, 96)]
    );

    let r = server
        .admin(Method::PATCH, "/api/v1/buildings/b")
        .json(&json!({"timezone": "America/New_York"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ny_days = points(
        &energy(
            &server,
            "b",
            "start=2026-11-19&end=2026-11-22&resolution=day",
        )
        .await,
    );
    assert_eq!(
        ny_days,
        vec![
            ("2026-11-19T00:00:00-05:00".to_string(), 20.0, 20),
            ("2026-11-20T00:00:00-05:00".to_string(), 76.0, 76)
        ]
    );
    server.terminate();

    // Raw retention shorter than the data's age: the raw readings go, the
    // rollups stay.
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("[retention]\nraw = \"2d\"\n".into()),
            ..Options::default()
        },
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.sql("SELECT count(*) FROM readings").await[0][0] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "raw retention did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept = points(
        &energy(
            &server,
            "b",
            "start=2026-11-19&end=2026-11-22&resolution=day",
        )
        .await,
    );
    assert_eq!(kept, ny_days);
}

/// A year of real hourly data (Cambridge University Estates, 2019) through
/// HTTP; daily and monthly totals in Europe/London equal a recomputation
/// done here with chrono-tz.
#[tokio::test]
async fn a_year_of_real_data_rolls_up_to_independent_totals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            // The data are from 2019.
            config: Some("[retention]\nraw = \"3650d\"\n".into()),
            ..Options::default()
        },
    )
    .await;
    server.create_tenant("t").await;
    let csv = include_str!("../fixtures/cambridge_2019_excerpt.csv");
    let mut buildings = std::collections::BTreeSet::new();
    for line in csv.lines().skip(1) {
        let sensor = line.split(',').next().unwrap();
        let b = sensor.split('-').next().unwrap().to_owned();
        if buildings.insert(b.clone()) {
            let r = server
                .admin(Method::POST, "/api/v1/tenants/t/buildings")
                .json(&json!({"id": b, "name": b, "timezone": "Europe/London"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        if server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .is_ok()
            && server
                .admin(Method::GET, &format!("/api/v1/sensors/{sensor}"))
                .send()
                .await
                .unwrap()
                .status()
                == 404
        {
            // Hourly meters: peak demand spreads an hour over its quarters.
            server
                .create_sensor_with(&b, json!({"id": sensor, "interval_s": 3600}))
                .await;
        }
    }
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    for chunk in lines.chunks(8000) {
        let body = format!("sensor_id,ts,value_kwh\n{}\n", chunk.join("\n"));
        let r = server.post_csv("/api/v1/readings", body).await;
        assert_eq!(r.status(), 202);
    }
    server.flush().await;

    let tz: Tz = "Europe/London".parse().unwrap();
    let mut daily: BTreeMap<(String, String), (f64, i64)> = BTreeMap::new();
    let mut monthly: BTreeMap<(String, String), f64> = BTreeMap::new();
    // Peak demand by hand: the building's hourly sums are its average kW
    // in each quarter of the hour; a month's peak is the largest.
    let mut hours: BTreeMap<(String, String), f64> = BTreeMap::new();
    for line in &lines {
        let mut f = line.split(',');
        let (sensor, ts, v) = (
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap().parse::<f64>().unwrap(),
        );
        let b = sensor.split('-').next().unwrap().to_owned();
        *hours.entry((b.clone(), ts.to_owned())).or_default() += v;
        let local = DateTime::parse_from_rfc3339(ts)
            .unwrap()
            .with_timezone(&tz)
            .date_naive();
        let d = daily.entry((b.clone(), local.to_string())).or_default();
        d.0 += v;
        d.1 += 1;
        *monthly
            .entry((b, format!("{}-{:02}", local.year(), local.month())))
            .or_default() += v;
    }
    for b in &buildings {
        let v = energy(&server, b, "start=2019-01-01&end=2020-01-01&resolution=day").await;
        let got = points(&v);
        assert_eq!(got.len(), 365, "{b}");
        for (ts, kwh, n) in got {
            let want = daily[&(b.clone(), ts[..10].to_string())];
            assert!((kwh - want.0).abs() < 1e-6, "{b} {ts}: {kwh} vs {}", want.0);
            assert_eq!(n, want.1, "{b} {ts}");
        }
        let v = energy(
            &server,
            b,
            "start=2019-01-01&end=2020-01-01&resolution=month",
        )
        .await;
        let got = points(&v);
        assert_eq!(got.len(), 12);
        for (ts, kwh, _) in got {
            let want = monthly[&(b.clone(), ts[..7].to_string())];
            assert!((kwh - want).abs() < 1e-6, "{b} {ts}: {kwh} vs {want}");
        }
        for p in v["points"].as_array().unwrap() {
            let month = &p["ts"].as_str().unwrap()[..7];
            let want = hours
                .iter()
                .filter(|((hb, ts), _)| {
                    hb == b
                        && DateTime::parse_from_rfc3339(ts)
                            .unwrap()
                            .with_timezone(&tz)
                            .format("%Y-%m")
                            .to_string()
                            == month
                })
                .map(|(_, kwh)| *kwh)
                .fold(f64::MIN, f64::max);
            let got = p["peak_kw"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-6, "{b} {month}: {got} kW vs {want}");
        }
    }
    // The DST days of 2019 in London: 23 and 25 hourly readings.
    let v = energy(
        &server,
        "b0",
        "start=2019-03-31&end=2019-04-01&resolution=day",
    )
    .await;
    assert_eq!(points(&v)[0].2, 23);
    let v = energy(
        &server,
        "b0",
        "start=2019-10-27&end=2019-10-28&resolution=day",
    )
    .await;
    assert_eq!(points(&v)[0].2, 25);
    let v = energy(
        &server,
        "b0",
        "start=2019-10-27&end=2019-10-28&resolution=hour",
    )
    .await;
    assert_eq!(points(&v).len(), 25);
    rollup_tables_filtered_in_sql_keep_exactly_the_rows_they_match(&server).await;
    building_buckets_in_time_order_need_no_sort(&server).await;
}

/// The building tables build only the rows a query's filters on building
/// and bucket can keep: each filtered answer equals the whole table
/// filtered here.
async fn rollup_tables_filtered_in_sql_keep_exactly_the_rows_they_match(server: &Server) {
    type Keep = fn(&str, i64) -> bool;
    // Days are days since the epoch: 18196 is 2019-10-27, 18231
    // 2019-12-01, 18189 2019-10-20, 18170 2019-10-01, 18201 2019-11-01.
    let cases: [(&str, &str, &str, Keep); 10] = [
        (
            "building_hourly",
            "CAST(hour AS BIGINT)",
            "building_id = 'b1' AND hour >= TIMESTAMP '2019-10-26T23:00:00Z' AND hour < TIMESTAMP '2019-10-28T00:00:00Z'",
            |b, h| b == "b1" && h >= ms("2019-10-26T23:00:00Z") && h < ms("2019-10-28T00:00:00Z"),
        ),
        (
            "building_hourly",
            "CAST(hour AS BIGINT)",
            "hour > TIMESTAMP '2019-12-31T20:00:00Z'",
            |_, h| h > ms("2019-12-31T20:00:00Z"),
        ),
        (
            "building_hourly",
            "CAST(hour AS BIGINT)",
            "hour <= TIMESTAMP '2019-01-01T03:00:00Z' AND building_id IN ('b0', 'b2')",
            |b, h| b != "b1" && h <= ms("2019-01-01T03:00:00Z"),
        ),
        (
            "building_hourly",
            "CAST(hour AS BIGINT)",
            "hour = TIMESTAMP '2019-10-27T01:00:00Z'",
            |_, h| h == ms("2019-10-27T01:00:00Z"),
        ),
        (
            "building_daily",
            "CAST(day AS INT)",
            "day >= DATE '2019-10-27' AND day < DATE '2019-12-01'",
            |_, d| (18196..18231).contains(&d),
        ),
        (
            "building_daily",
            "CAST(day AS INT)",
            "day > DATE '2019-10-27' AND building_id = 'b2'",
            |b, d| b == "b2" && d > 18196,
        ),
        (
            "building_daily",
            "CAST(day AS INT)",
            "day <= DATE '2019-10-27' AND day >= '2019-10-20'",
            |_, d| (18189..=18196).contains(&d),
        ),
        (
            "building_daily",
            "CAST(day AS INT)",
            "day = DATE '2019-12-01'",
            |_, d| d == 18231,
        ),
        (
            "building_monthly",
            "CAST(month AS INT)",
            "month BETWEEN DATE '2019-10-01' AND DATE '2019-11-01'",
            |_, d| (18170..=18201).contains(&d),
        ),
        ("building_yearly", "year", "building_id = 'b0'", |b, _| {
            b == "b0"
        }),
    ];
    for (table, key, filter, keep) in cases {
        let columns = format!("building_id, {key} AS k, kwh, readings");
        let all = server
            .sql(&format!("SELECT {columns} FROM {table} ORDER BY 1, 2"))
            .await;
        // The building tables declare their rows sorted by building and
        // bucket, so DataFusion may skip this sort: the rows must be so.
        let key_of = |r: &Value| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap());
        assert!(
            all.windows(2).all(|w| key_of(&w[0]) < key_of(&w[1])),
            "{table} not in order"
        );
        let want: Vec<&Value> = all
            .iter()
            .filter(|r| keep(r[0].as_str().unwrap(), r[1].as_i64().unwrap()))
            .collect();
        assert!(!want.is_empty(), "{table} {filter}");
        let got = server
            .sql(&format!(
                "SELECT {columns} FROM {table} WHERE {filter} ORDER BY 1, 2"
            ))
            .await;
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{table} {filter}");
    }
}

/// A building's buckets come in time order without a sort: the building
/// tables' rows are sorted by building and bucket, and the plan knows it.
async fn building_buckets_in_time_order_need_no_sort(server: &Server) {
    for (table, bucket) in [
        ("building_hourly", "hour"),
        ("building_daily", "day"),
        ("building_monthly", "month"),
    ] {
        let query =
            format!("SELECT {bucket}, kwh FROM {table} WHERE building_id = 'b1' ORDER BY {bucket}");
        let plan = server.sql(&format!("EXPLAIN {query}")).await;
        let physical = plan[1][1].as_str().unwrap();
        assert!(!physical.contains("SortExec"), "{table}: {physical}");
        let rows = server.sql(&query).await;
        assert!(rows.len() > 1, "{table}");
        let at: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{table}: {at:?}");
        // Newest first still sorts.
        let rows = server.sql(&format!("{query} DESC")).await;
        let desc: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        assert_eq!(
            desc,
            at.iter().rev().copied().collect::<Vec<_>>(),
            "{table}"
        );
    }
}

/// Sums read as the decimals they are: ten meters reading 0.1 kWh in one
/// quarter hour make 1 kWh in every resolution (binary addition gives
/// 0.9999999999999999), and the JSON says `1.0`, not noise.
#[tokio::test]
async fn sums_are_the_decimal_sums_of_the_readings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let sensors: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let names: Vec<&str> = sensors.iter().map(String::as_str).collect();
    server.setup("t", "b", &names).await;
    let q = crate::support::now_minute_ms() / 86_400_000 * 86_400_000 - 86_400_000 + 10 * HOUR;
    let readings: Vec<Value> = names.iter().map(|s| reading(s, q, 0.1)).collect();
    assert_eq!(
        server
            .post_json(&json!({ "readings": readings }))
            .await
            .status(),
        202
    );
    server.flush().await;
    let day = chrono::DateTime::from_timestamp_millis(q)
        .unwrap()
        .date_naive();
    let next = day.succ_opt().unwrap();
    for resolution in ["15m", "hour", "day"] {
        let v = energy(
            &server,
            "b",
            &format!("resolution={resolution}&start={day}&end={next}"),
        )
        .await;
        assert_eq!(
            points(&v),
            [(points(&v)[0].0.clone(), 1.0, 10)],
            "{resolution}"
        );
        let raw = server
            .admin(
                Method::GET,
                &format!(
                    "/api/v1/buildings/b/energy?resolution={resolution}&start={day}&end={next}"
                ),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(raw.contains("\"kwh\":1.0"), "{resolution}: {raw}");
    }
}

/// kWh per m2 of floor area for days, months and years in SQL; years are
/// the buildings' local calendar years summed from their months; a
/// building without a floor area has none.
#[tokio::test]
async fn days_months_and_years_per_square_metre_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("[retention]\nraw = \"20y\"\nrollups = \"20y\"\n".into()),
            env: vec![],
        },
    )
    .await;
    server.create_tenant("t").await;
    for (id, area) in [("big", json!(250.0)), ("bare", Value::Null)] {
        let r = server
            .admin(Method::POST, "/api/v1/tenants/t/buildings")
            .json(
                &json!({"id": id, "name": id, "floor_area_m2": area, "timezone": "Europe/Berlin"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        server.create_sensor(id, &format!("{id}-m")).await;
    }
    // New Year's Eve 23:30 Berlin is 2023 locally, 22:30 UTC; then 2024.
    let readings: Vec<Value> = ["big-m", "bare-m"]
        .iter()
        .flat_map(|s| {
            [
                reading(s, ms("2023-12-31T22:30:00Z"), 100.0),
                reading(s, ms("2023-12-31T23:15:00Z"), 50.0),
                reading(s, ms("2024-02-10T12:00:00Z"), 25.0),
            ]
        })
        .collect();
    assert_eq!(
        server
            .post_json(&json!({ "readings": readings }))
            .await
            .status(),
        202
    );
    server.flush().await;
    let years = server
        .sql("SELECT building_id, year, kwh, kwh_per_m2, readings FROM building_yearly ORDER BY building_id, year")
        .await;
    assert_eq!(
        years,
        [
            json!(["bare", 2023, 100.0, null, 1]),
            json!(["bare", 2024, 75.0, null, 2]),
            json!(["big", 2023, 100.0, 0.4, 1]),
            json!(["big", 2024, 75.0, 0.3, 2]),
        ]
    );
    let months = server
        .sql("SELECT month, kwh, kwh_per_m2 FROM building_monthly WHERE building_id = 'big' ORDER BY month")
        .await;
    assert_eq!(
        months,
        [
            json!(["2023-12-01", 100.0, 0.4]),
            json!(["2024-01-01", 50.0, 0.2]),
            json!(["2024-02-01", 25.0, 0.1]),
        ]
    );
    let days = server
        .sql("SELECT count(*), sum(kwh_per_m2) FROM building_daily WHERE building_id = 'big'")
        .await;
    assert_eq!(days[0], json!([3, 0.7]));
}

/// Readings finer than a milliwatt-hour count to the milliwatt-hour, the
/// same in every resolution and in the alerts' quarter totals; a reading
/// beyond a terawatt-hour is refused.
#[tokio::test]
async fn sub_milliwatt_hour_readings_count_alike_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["m"]).await;
    let q = crate::support::now_minute_ms() / 86_400_000 * 86_400_000 - 86_400_000 + 10 * HOUR;
    // 900 one-second readings of 0.5 mWh: each counts as 1 mWh.
    let readings: Vec<Value> = (0..900)
        .map(|i| reading("m", q + i * 1000, 0.0000005))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({ "readings": readings }))
            .await
            .status(),
        202
    );
    server.flush().await;
    let day = chrono::DateTime::from_timestamp_millis(q)
        .unwrap()
        .date_naive();
    let next = day.succ_opt().unwrap();
    for resolution in ["15m", "hour", "day"] {
        let v = energy(
            &server,
            "b",
            &format!("resolution={resolution}&start={day}&end={next}"),
        )
        .await;
        assert_eq!(points(&v)[0].1, 0.0009, "{resolution}");
    }
    let r = server
        .post_json(&json!({"readings": [reading("m", q, 2e9)]}))
        .await;
    let (status, _, v) = error_code(r).await;
    assert_eq!(status, 400);
    assert!(v.to_string().contains("beyond"), "{v}");
}
