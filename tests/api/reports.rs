//! Reports (SPEC 7): jobs answered at once, results equal to the rollups
//! in JSON and CSV, a PDF with its text, the shared job of identical
//! requests, jobs surviving SIGKILL, tenant isolation and bad requests.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, error_code, reading};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// The Monday of this week (UTC): the reports' periods end there, so
/// every day in them is complete and within raw retention.
fn monday() -> NaiveDate {
    let today = chrono::Utc::now().date_naive();
    today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()))
}

fn day(offset: i64) -> String {
    (monday() + chrono::Duration::days(offset)).to_string()
}

/// Tenant `t` with building `b` (Berlin, 1,200 m2) and two meters, and
/// twelve weeks of hourly readings up to [`monday`]: a weekly pattern
/// with noise.
async fn building_with_history(server: &Server) {
    server.create_tenant("t").await;
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": "b", "name": "Harbour Office", "timezone": "Europe/Berlin", "floor_area_m2": 1200.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_sensor("b", "m1").await;
    server.create_sensor("b", "m2").await;
    let end = ms(&format!("{}T00:00:00Z", day(0)));
    let start = end - 84 * DAY;
    let mut state: u64 = 88_172_645_463_325_252;
    let mut all = Vec::new();
    for t in (start..end).step_by(HOUR as usize) {
        let day = (t - start) / DAY;
        let hour = (t % DAY) / HOUR;
        // `start` is a Monday.
        let weekend = matches!(day % 7, 5 | 6);
        for (i, m) in ["m1", "m2"].iter().enumerate() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 1000) as f64 / 1000.0;
            let working = (7..19).contains(&hour) && !weekend;
            let v = if working { 6.0 } else { 2.0 } + i as f64 + noise;
            all.push(reading(m, t, (v * 1000.0).round() / 1000.0));
        }
    }
    for chunk in all.chunks(5000) {
        assert_eq!(
            server.post_json(&json!({"readings": chunk})).await.status(),
            202
        );
    }
    server.flush().await;
}

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

pub(crate) async fn request(server: &Server, key: &str, body: &Value) -> reqwest::Response {
    server
        .with_key(key, Method::POST, "/api/v1/reports")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Polls the job until it is done or failed.
pub(crate) async fn finished(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = server.get_json(&format!("/api/v1/reports/{id}")).await;
        if job["status"] == "done" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "report never finished: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn result(server: &Server, id: &str) -> reqwest::Response {
    let r = server
        .admin(Method::GET, &format!("/api/v1/reports/{id}/result"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

fn period(format: &str) -> Value {
    json!({"building_id": "b", "start": day(-28), "end": day(0), "format": format})
}

/// Sums of the local days of `[start, end)` from `/energy`.
async fn energy_days(server: &Server, start: &str, end: &str) -> Vec<(String, f64)> {
    let v = server
        .get_json(&format!(
            "/api/v1/buildings/b/energy?start={start}&end={end}&resolution=day"
        ))
        .await;
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ts"].as_str().unwrap()[..10].to_owned(),
                p["kwh"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn json_and_csv_reports_hold_the_rollups_a_profile_and_a_tested_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    building_with_history(&server).await;
    let admin = server.admin.clone();

    let started = Instant::now();
    let r = request(&server, &admin, &period("json")).await;
    let answered = started.elapsed();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert!(["queued", "running", "done"].contains(&job["status"].as_str().unwrap()));
    assert!(answered < Duration::from_secs(2), "{answered:?}");
    let id = job["id"].as_str().unwrap().to_owned();
    // The same request again shares the job.
    let again: Value = request(&server, &admin, &period("json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], job["id"]);

    let done = finished(&server, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        done["result_url"],
        format!("/api/v1/reports/{id}/result").as_str()
    );
    let r = result(&server, &id).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let report: Value = r.json().await.unwrap();

    let days = energy_days(&server, &day(-28), &day(0)).await;
    assert_eq!(days.len(), 28);
    let total: f64 = days.iter().map(|d| d.1).sum();
    assert!((report["total_kwh"].as_f64().unwrap() - total).abs() < 1e-6);
    let report_days: Vec<(String, f64)> = report["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["kwh"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(report_days.len(), 28);
    for (a, b) in report_days.iter().zip(&days) {
        assert_eq!(a.0, b.0);
        assert!((a.1 - b.1).abs() < 1e-9, "{a:?} {b:?}");
    }
    let previous: f64 = energy_days(&server, &day(-56), &day(-28))
        .await
        .iter()
        .map(|d| d.1)
        .sum();
    assert!((report["previous_period"]["total_kwh"].as_f64().unwrap() - previous).abs() < 1e-6);
    assert!(
        (report["kwh_per_m2"].as_f64().unwrap() - total / 1200.0).abs() < 1e-9,
        "{}",
        report["kwh_per_m2"]
    );
    // Peak: the largest local hour of the period.
    let hours = server
        .get_json(&format!(
            "/api/v1/buildings/b/energy?start={}&end={}&resolution=hour",
            day(-28),
            day(0)
        ))
        .await;
    let peak = hours["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kwh"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(report["peak"]["kwh"].as_f64().unwrap(), peak);
    let hour = report["peak"]["hour"].as_str().unwrap();
    assert!(
        hour.ends_with("+01:00") || hour.ends_with("+02:00"),
        "{hour}"
    );
    // Working hours on weekdays are well above the night and the weekend.
    let weekday = &report["profile"]["weekday"];
    let weekend = &report["profile"]["weekend"];
    assert_eq!(weekday.as_array().unwrap().len(), 24);
    assert!(weekday[12].as_f64().unwrap() > 2.0 * weekday[3].as_f64().unwrap());
    assert!(weekday[12].as_f64().unwrap() > 2.0 * weekend[12].as_f64().unwrap());
    // The forecast: seven days from the period's end, with its back-test.
    let forecast = report["forecast"].as_array().unwrap();
    assert_eq!(forecast.len(), 7);
    assert_eq!(forecast[0]["day"], day(0).as_str());
    assert_eq!(forecast[6]["day"], day(6).as_str());
    for f in forecast {
        let (k, lo, hi) = (
            f["kwh"].as_f64().unwrap(),
            f["low"].as_f64().unwrap(),
            f["high"].as_f64().unwrap(),
        );
        assert!(lo <= k && k <= hi && k > 0.0, "{f}");
    }
    let model = &report["forecast_model"];
    assert_eq!(model["level"], 0.8);
    assert_eq!(model["backtest"]["metric"], "MAPE");
    assert_eq!(model["backtest"]["weeks"], 4);
    assert!(model["backtest"]["baseline_error"].as_f64().unwrap() > 0.0);

    // CSV of the same period: the same days, then the forecast.
    let r = request(&server, &admin, &period("csv")).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished(&server, &id).await["status"], "done");
    let r = result(&server, &id).await;
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "day,kwh,kind,peak_kw,cost,coverage");
    assert_eq!(lines.len(), 1 + 28 + 7);
    for (line, (day, kwh)) in lines[1..29].iter().zip(&days) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!((cells[0], cells[2]), (day.as_str(), "actual"));
        assert!((cells[1].parse::<f64>().unwrap() - kwh).abs() < 1e-9);
    }
    assert!(lines[29].starts_with(&format!("{},", day(0))) && lines[29].ends_with(",forecast,,,"));
    let csv_total: f64 = lines[1..29]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((csv_total - total).abs() < 1e-6);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wattline_reports_total{format=\"json\",outcome=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("wattline_report_queue_depth"));
}

#[tokio::test]
async fn a_pdf_report_is_a_real_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    building_with_history(&server).await;
    let r = request(&server, &server.admin, &period("pdf")).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished(&server, &id).await["status"], "done");
    let r = result(&server, &id).await;
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".pdf")
    );
    let pdf = r.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(
        pdf.len() > 2_000 && pdf.len() < 500_000,
        "{} bytes",
        pdf.len()
    );
    // The font travels with the document.
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("/FontFile2"), "font not embedded");
    std::fs::write(dir.path().join("report.pdf"), &pdf).unwrap();
}

/// Needs poppler-utils (`.ci/run` installs it): the PDF's text holds the
/// building's name and the total, and its pages render.
#[tokio::test]
#[ignore = "needs pdftotext and pdftoppm (poppler-utils, installed by .ci/run)"]
async fn a_pdf_report_has_the_name_and_total_in_its_text_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    building_with_history(&server).await;
    let r = request(&server, &server.admin, &period("pdf")).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished(&server, &id).await["status"], "done");
    let pdf = result(&server, &id).await.bytes().await.unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let total: f64 = energy_days(&server, &day(-28), &day(0))
        .await
        .iter()
        .map(|d| d.1)
        .sum();
    assert!(text.contains("Harbour Office"), "{text}");
    assert!(
        text.contains(&format!("{total:.1} kWh")),
        "{total:.1} not in {text}"
    );
    assert!(text.contains(&day(-1)) && text.contains(&day(6)));
    let png = dir.path().join("page");
    let out = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-f", "1", "-l", "1"])
        .arg(&path)
        .arg(&png)
        .output()
        .expect("pdftoppm (poppler-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("page"))
        .expect("a rendered page");
    assert!(page.metadata().unwrap().len() > 5_000);
}

#[tokio::test]
async fn reports_are_another_tenants_404_and_bad_requests_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["m1"]).await;
    server.create_tenant("other").await;
    let mine = server.create_key("tenant", Some("t")).await;
    let theirs = server.create_key("tenant", Some("other")).await;
    let ingest = server.create_key("ingest", Some("t")).await;
    let body =
        json!({"building_id": "b", "start": "2026-11-01", "end": "2026-11-08", "format": "json"});

    let (status, code, _) = error_code(request(&server, &theirs, &body).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, _, _) = error_code(request(&server, &ingest, &body).await).await;
    assert_eq!(status, 403);
    let r = request(&server, &mine, &body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/api/v1/reports/{id}"),
        format!("/api/v1/reports/{id}/result"),
    ] {
        let r = server
            .with_key(&theirs, Method::GET, &path)
            .send()
            .await
            .unwrap();
        let (status, code, body) = error_code(r).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("report"), "{message}");
        let r = server
            .with_key(&mine, Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 200 || r.status() == 409,
            "{path}: {}",
            r.status()
        );
    }
    // A building of nobody's and a report id nobody has answer alike.
    let (status, _, _) = error_code(
        request(
            &server,
            &mine,
            &json!({"building_id": "nope", "start": "2026-11-01", "end": "2026-11-08", "format": "json"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    let r = server
        .with_key(&mine, Method::GET, "/api/v1/reports/p0000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    for (bad, needle) in [
        (
            json!({"building_id": "b", "start": "2026-11-08", "end": "2026-11-01", "format": "json"}),
            "before",
        ),
        (
            json!({"building_id": "b", "start": "2026-11-01", "end": "2026-11-08", "format": "xls"}),
            "format",
        ),
        (
            json!({"building_id": "b", "start": "2020-01-01", "end": "2026-11-08", "format": "csv"}),
            "at most",
        ),
        (
            json!({"building_id": "b", "start": "2026-11-01", "end": "2026-11-08", "format": "csv", "forecast_days": 365}),
            "forecast_days",
        ),
        (
            json!({"building_id": "b", "start": "yesterday", "end": "2026-11-08", "format": "csv"}),
            "start",
        ),
        (
            json!({"building_id": "b", "start": "2026-11-01", "end": "2026-11-08", "format": "csv", "colour": "red"}),
            "colour",
        ),
        (json!({"building_id": "b", "format": "csv"}), "start"),
        (
            json!({"building_id": "b", "start": "9000000000000000000", "end": "9000000000000000001", "format": "json"}),
            "years",
        ),
        (
            json!({"building_id": "b", "start": "-9223372036854775808", "end": "9223372036854775807", "format": "json"}),
            "years",
        ),
        (
            json!({"building_id": "b", "start": "2026-11-01T10:00:00Z", "end": "2026-11-01T11:00:00Z", "format": "json"}),
            "whole local day",
        ),
    ] {
        let (status, _, body) = error_code(request(&server, &mine, &bad).await).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert_eq!(status, 400, "{bad}: {message}");
        assert!(message.contains(needle), "{bad}: {message}");
    }
    server.assert_alive().await;
}

#[tokio::test]
async fn queued_jobs_survive_sigkill_and_complete_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        config: Some("[reports]\nworkers = 1\n".into()),
        ..Options::default()
    };
    let mut server = Server::start_with(dir.path(), opts.clone()).await;
    building_with_history(&server).await;
    // Many distinct jobs, one worker: most are still queued (and one may
    // be running) when the daemon is killed.
    let mut ids = Vec::new();
    for k in 0..12 {
        let body = json!({"building_id": "b", "start": day(-84 + k), "end": day(0), "format": "pdf", "forecast_days": 14});
        let r = request(&server, &server.admin, &body).await;
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let last = server
        .get_json(&format!("/api/v1/reports/{}", ids[11]))
        .await;
    assert_ne!(last["status"], "done", "all rendered before the kill");
    server.kill();
    let server = Server::start_with(dir.path(), opts).await;
    for id in &ids {
        let job = finished(&server, id).await;
        assert_eq!(job["status"], "done", "{job}");
        let pdf = result(&server, id).await.bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_year_of_a_building_with_a_thousand_meters_costs_a_report_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        config: Some("[retention]\nraw = \"400d\"\n".into()),
        ..Options::default()
    };
    let server = Server::start_with(dir.path(), opts).await;
    server.create_tenant("t").await;
    server.create_building("t", "big").await;
    let sensors: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    for s in &sensors {
        server.create_sensor("big", s).await;
    }
    // A year of one daily reading per meter: 365,000 readings.
    let end = monday();
    let first = end - chrono::Duration::days(365);
    let mut batch = Vec::new();
    for d in 0..365 {
        let at = ms(&format!("{}T12:00:00Z", first + chrono::Duration::days(d)));
        for (i, s) in sensors.iter().enumerate() {
            batch.push(reading(s, at, 1.0 + (i % 10) as f64 / 10.0));
        }
        if batch.len() >= 10_000 {
            let r = server.post_json(&json!({"readings": batch})).await;
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            batch.clear();
        }
    }
    let r = server.post_json(&json!({"readings": batch})).await;
    assert_eq!(r.status(), 202);
    server.flush().await;
    let before = rss_kib(server.pid());
    let body = json!({"building_id": "big", "start": first.to_string(), "end": end.to_string(), "format": "json", "forecast_days": 30});
    let r = request(&server, &server.admin, &body).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished(&server, &id).await["status"], "done");
    let after = rss_kib(server.pid());
    let report: Value = result(&server, &id).await.json().await.unwrap();
    assert_eq!(report["days"].as_array().unwrap().len(), 365);
    // 1,450 kWh a day (1,000 meters, 1.0 to 1.9 kWh each).
    let total = report["total_kwh"].as_f64().unwrap();
    assert!((total - 365.0 * 1450.0).abs() < 1e-3, "{total}");
    assert_eq!(report["forecast"].as_array().unwrap().len(), 30);
    // The report read the building's rollups, not 365,000 readings.
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn a_report_that_cannot_be_stored_fails_with_a_message_and_its_result_is_409() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["m1"]).await;
    // The results folder replaced by a file: no result can be written
    // (also as root, unlike a permission).
    let results = server.data_dir.join("reports");
    std::fs::remove_dir_all(&results).unwrap();
    std::fs::write(&results, b"not a folder").unwrap();
    let body = json!({"building_id": "b", "start": day(-7), "end": day(0), "format": "csv"});
    let r = request(&server, &server.admin, &body).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = finished(&server, &id).await;
    assert_eq!(job["status"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("storing the result failed"), "{error}");
    assert!(
        !error.contains(server.data_dir.to_str().unwrap()),
        "{error}"
    );
    assert!(job.get("result_url").is_none());
    let r = server
        .admin(Method::GET, &format!("/api/v1/reports/{id}/result"))
        .send()
        .await
        .unwrap();
    let (status, code, answer) = error_code(r).await;
    assert_eq!((status, code.as_str()), (409, "report_not_ready"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed")
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wattline_reports_total{format=\"csv\",outcome=\"failed\"} 1"),
        "{metrics}"
    );
    // The same request asks anew instead of sharing the failed job.
    let again: Value = request(&server, &server.admin, &body)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["id"].as_str(), Some(id.as_str()), "{again}");
}
