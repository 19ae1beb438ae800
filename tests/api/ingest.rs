//! Ingestion (SPEC 4): the four formats, every validation rule, all or
//! nothing versus `partial=true`, and dedup with last-write-wins.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, error_code, now_minute_ms, reading, utc};

const QUARTER: i64 = 900_000;

async fn started(dir: &tempfile::TempDir) -> Server {
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s1", "s2"]).await;
    server
}

async fn post(server: &Server, path: &str, content_type: &str, body: String) -> reqwest::Response {
    server
        .admin(Method::POST, path)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_format_is_accepted_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = started(&dir).await;
    let t = now_minute_ms() - 10 * QUARTER;

    let r = server
        .post_json(&json!({"readings": [
            {"sensor_id": "s1", "ts": utc(t), "value_kwh": 1.0},
            {"sensor_id": "s1", "ts": t + QUARTER, "value_kwh": 2}
        ]}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"accepted": 2, "rejected": []})
    );

    let ndjson = format!(
        "{}\n\n{}\n",
        reading("s1", t + 2 * QUARTER, 3.0),
        json!({"sensor_id": "s1", "ts": "1970-01-01T00:00:00+00:00", "value_kwh": 0})
            .to_string()
            .replace(
                "1970-01-01T00:00:00+00:00",
                // An offset other than Z names the same instant.
                &chrono::DateTime::from_timestamp_millis(t + 3 * QUARTER)
                    .unwrap()
                    .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
                    .to_rfc3339()
            )
    );
    let r = post(&server, "/api/v1/readings", "application/x-ndjson", ndjson).await;
    assert_eq!(r.status(), 202);

    let csv = format!(
        "sensor_id,ts,value_kwh\r\ns1,{},5.5\r\ns1,{},-1.25\r\n",
        utc(t + 4 * QUARTER),
        t + 5 * QUARTER
    );
    let r = post(&server, "/api/v1/readings", "text/csv; charset=utf-8", csv).await;
    assert_eq!(r.status(), 202);

    let lp = format!(
        "energy,sensor_id=s1,site=x value_kwh=6.5 {}\n\
         energy,sensor_id=s1 value_kwh=7i {}\n",
        (t + 6 * QUARTER) * 1_000_000,
        (t + 7 * QUARTER) * 1_000_000
    );
    let r = post(&server, "/api/v1/write", "text/plain", lp).await;
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    for (precision, factor, step) in [("us", 1_000, 8), ("ms", 1, 9), ("s", 0, 10)] {
        let ts_ms = t + step * QUARTER;
        let ts = if factor == 0 {
            ts_ms / 1000
        } else {
            ts_ms * factor
        };
        let r = post(
            &server,
            &format!("/api/v1/write?precision={precision}&db=ignored"),
            "text/plain",
            format!("m,sensor_id=s1 value_kwh={step} {ts}"),
        )
        .await;
        assert_eq!(r.status(), 204, "precision {precision}");
    }

    let got = server.readings("s1").await;
    let want: Vec<(String, f64)> = [1.0, 2.0, 3.0, 0.0, 5.5, -1.25, 6.5, 7.0, 8.0, 9.0, 10.0]
        .iter()
        .enumerate()
        .map(|(i, v)| (utc(t + i as i64 * QUARTER), *v))
        .collect();
    assert_eq!(got, want);
}

/// Each kind of bad reading is refused with its index (and line), and the
/// whole batch is dropped: nothing of it is stored.
#[tokio::test]
async fn each_invalid_reading_is_named_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        crate::support::Options {
            config: Some("[retention]\nraw = \"30d\"\n[ingest]\nmax_future = \"5m\"\n".into()),
            ..Default::default()
        },
    )
    .await;
    server.setup("t", "b", &["s1", "off"]).await;
    server
        .admin(Method::PATCH, "/api/v1/sensors/off")
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    let t = now_minute_ms();
    let good = reading("s1", t, 1.0);
    let bad = [
        (reading("ghost", t, 1.0), "unknown sensor"),
        (reading("off", t, 1.0), "inactive"),
        (
            json!({"sensor_id": "s1", "ts": t, "value_kwh": "1"}),
            "invalid type",
        ),
        (
            json!({"sensor_id": "s1", "ts": t}),
            "missing field `value_kwh`",
        ),
        (
            json!({"sensor_id": "s1", "value_kwh": 1}),
            "missing field `ts`",
        ),
        (
            json!({"ts": t, "value_kwh": 1}),
            "missing field `sensor_id`",
        ),
        (
            json!({"sensor_id": "s1", "ts": "yesterday", "value_kwh": 1}),
            "RFC 3339",
        ),
        (
            json!({"sensor_id": "s1", "ts": "2025-01-01T00:00:00", "value_kwh": 1}),
            "RFC 3339",
        ),
        (reading("s1", t - 31 * 86_400_000, 1.0), "retention"),
        (reading("s1", t + 3_600_000, 1.0), "future"),
        (
            json!({"sensor_id": "s1", "ts": t, "value_kwh": 1, "unit": "Wh"}),
            "unknown field",
        ),
        (json!("not an object"), "invalid type"),
    ];
    for (reading, needle) in bad {
        let r = server
            .post_json(&json!({"readings": [good.clone(), reading.clone()]}))
            .await;
        let (status, code, body) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_readings"),
            "{reading}"
        );
        let details = body["error"]["details"].as_array().unwrap();
        assert_eq!(details.len(), 1, "{body}");
        assert_eq!(details[0]["index"], 1);
        let msg = details[0]["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{reading}: {msg}");
    }
    // JSON has no infinity; a number too large for f64 is the nearest thing.
    let r = server
        .admin(Method::POST, "/api/v1/readings")
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"readings":[{good},{{"sensor_id":"s1","ts":{t},"value_kwh":1e999}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_code(r).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["details"][0]["error"]
            .as_str()
            .unwrap()
            .contains("out of range")
    );
    // NaN and infinity can only be spelled in CSV and line protocol.
    for value in ["NaN", "inf", "-infinity"] {
        let r = post(
            &server,
            "/api/v1/readings",
            "text/csv",
            format!("sensor_id,ts,value_kwh\ns1,{t},1\ns1,{t},{value}\n"),
        )
        .await;
        let (status, _, body) = error_code(r).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["details"][0]["line"], 3);
        assert_eq!(body["error"]["details"][0]["index"], 1);
        assert!(
            body["error"]["details"][0]["error"]
                .as_str()
                .unwrap()
                .contains("finite")
        );
        let r = post(
            &server,
            "/api/v1/write?precision=ms",
            "text/plain",
            format!("e,sensor_id=s1 value_kwh=1 {t}\ne,sensor_id=s1 value_kwh={value} {t}"),
        )
        .await;
        let (status, _, body) = error_code(r).await;
        assert_eq!(status, 400, "{value}");
        assert_eq!(body["error"]["details"][0]["line"], 2);
    }
    assert!(server.readings("s1").await.is_empty());
}

#[tokio::test]
async fn every_bad_reading_of_a_batch_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = started(&dir).await;
    let t = now_minute_ms();
    let body = format!(
        "{}\n{}\nnot json\n{}\n",
        reading("s1", t, 1.0),
        reading("nope", t, 1.0),
        reading("s2", t, 1.0)
    );
    let r = post(&server, "/api/v1/readings", "application/x-ndjson", body).await;
    let (status, _, v) = error_code(r).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["index"].as_u64().unwrap(), d["line"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        vec![(1, 2), (2, 3)]
    );
    assert!(server.readings("s1").await.is_empty());
    assert!(server.readings("s2").await.is_empty());
}

#[tokio::test]
async fn partial_stores_the_valid_readings_and_lists_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = started(&dir).await;
    let t = now_minute_ms();
    let r = server
        .admin(Method::POST, "/api/v1/readings?partial=true")
        .json(&json!({"readings": [
            reading("s1", t, 1.0),
            reading("ghost", t, 1.0),
            reading("s2", t, 2.0),
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"][0]["index"], 1);
    assert_eq!(server.readings("s1").await.len(), 1);
    assert_eq!(server.readings("s2").await.len(), 1);

    // With nothing valid, partial is the all-or-nothing 400.
    let r = server
        .admin(Method::POST, "/api/v1/readings?partial=true")
        .json(&json!({"readings": [reading("ghost", t, 1.0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);
    let r = post(
        &server,
        "/api/v1/write?precision=ms&partial=true",
        "text/plain",
        format!(
            "e,sensor_id=s1 value_kwh=5 {}\ne,sensor_id=ghost value_kwh=1 {t}",
            t - QUARTER
        ),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(server.readings("s1").await.len(), 2);
}

#[tokio::test]
async fn resending_is_a_no_op_and_a_new_value_is_a_correction() {
    let dir = tempfile::tempdir().unwrap();
    let server = started(&dir).await;
    let t = now_minute_ms();
    let batch = json!({"readings": [reading("s1", t, 1.0), reading("s1", t - QUARTER, 2.0)]});
    for _ in 0..3 {
        assert_eq!(server.post_json(&batch).await.status(), 202);
    }
    assert_eq!(
        server.readings("s1").await,
        vec![(utc(t - QUARTER), 2.0), (utc(t), 1.0)]
    );
    // A correction, and a duplicate inside one batch: the last one wins.
    let r = server
        .post_json(&json!({"readings": [reading("s1", t, 9.0), reading("s1", t, 4.0)]}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        server.readings("s1").await,
        vec![(utc(t - QUARTER), 2.0), (utc(t), 4.0)]
    );
}

#[tokio::test]
async fn malformed_bodies_and_parameters_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = started(&dir).await;
    let t = now_minute_ms();
    let cases = [
        (
            "/api/v1/readings",
            "application/json",
            "{\"readings\": [".to_string(),
            "invalid_body",
        ),
        (
            "/api/v1/readings",
            "application/json",
            "[]".to_string(),
            "invalid_body",
        ),
        (
            "/api/v1/readings",
            "application/json",
            "{\"readings\": []}".to_string(),
            "invalid_readings",
        ),
        (
            "/api/v1/readings",
            "application/json",
            "{\"readings\": [], \"more\": 1}".to_string(),
            "invalid_body",
        ),
        (
            "/api/v1/readings",
            "application/x-ndjson",
            "\n\n".to_string(),
            "invalid_readings",
        ),
        (
            "/api/v1/readings",
            "text/csv",
            "sensor,time,kwh\ns1,1,1\n".to_string(),
            "invalid_body",
        ),
        (
            "/api/v1/readings",
            "text/csv",
            "sensor_id,ts,value_kwh\n".to_string(),
            "invalid_readings",
        ),
        (
            "/api/v1/readings?partial=maybe",
            "application/json",
            "{}".to_string(),
            "invalid_query",
        ),
        (
            "/api/v1/write?precision=h",
            "text/plain",
            format!("e,sensor_id=s1 value_kwh=1 {t}"),
            "invalid_query",
        ),
        (
            "/api/v1/write",
            "text/plain",
            String::new(),
            "invalid_readings",
        ),
        (
            "/api/v1/write",
            "text/plain",
            "\u{0}\u{1}garbage".to_string(),
            "invalid_readings",
        ),
    ];
    for (path, ct, body, code) in cases {
        let r = post(&server, path, ct, body.clone()).await;
        let (status, got, _) = error_code(r).await;
        assert_eq!((status, got.as_str()), (400, code), "{path} {body:?}");
    }
    let r = server
        .admin(Method::POST, "/api/v1/readings")
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);
    assert!(server.readings("s1").await.is_empty());
    // The daemon is still fine.
    assert_eq!(
        server
            .post_json(&json!({"readings": [reading("s1", t, 1.0)]}))
            .await
            .status(),
        202
    );
}
