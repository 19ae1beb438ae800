//! The dashboard's files and the two routes it opens with (`/api/v1/me`,
//! the tenant overview), over HTTP. (In a browser: see the issue notes.)

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, error_code, reading};

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_and_loads_nothing_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let r = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let policy = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("/assets/app.js") && html.contains("/assets/app.css"));
    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
    ] {
        let r = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} names another origin"
        );
    }
    let r = server
        .client
        .get(server.url("/assets/secret.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = server
        .client
        .get(server.url("/assets/..%2Fadmin.key"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn me_names_the_key_and_the_overview_sums_each_buildings_local_day_and_month() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": "b", "name": "Depot", "timezone": "Asia/Kolkata", "floor_area_m2": 500.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_building("t", "empty").await;
    server.create_sensor("b", "m1").await;
    server.create_sensor("b", "m2").await;
    server.create_tenant("other").await;
    let key = server.create_key("tenant", Some("t")).await;
    let theirs = server.create_key("tenant", Some("other")).await;
    let ingest = server.create_key("ingest", Some("t")).await;

    let me: Value = server
        .with_key(&key, Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["role"].as_str(), me["tenant_id"].as_str()),
        (Some("tenant"), Some("t"))
    );
    let me: Value = server
        .with_key(&ingest, Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "ingest");
    // No browser keeps an API answer.
    let r = server
        .with_key(&key, Method::GET, "/api/v1/tenants/t/overview")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = server
        .with_key("wl_nope", Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Readings every 15 minutes of the last two days, up to now.
    let now = crate::support::now_minute_ms();
    let from = now - 2 * 86_400_000;
    let readings: Vec<Value> = (from..now)
        .step_by(900_000)
        .flat_map(|t| [reading("m1", t, 1.0), reading("m2", t, 0.5)])
        .collect();
    assert_eq!(
        server
            .post_json(&json!({"readings": readings}))
            .await
            .status(),
        202
    );
    server.flush().await;

    let overview: Value = server
        .with_key(&key, Method::GET, "/api/v1/tenants/t/overview")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = overview["buildings"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let b = rows.iter().find(|r| r["id"] == "b").unwrap();
    assert_eq!(b["sensor_count"], 2);
    // The building's local day and month now (none yet just after
    // midnight: zero).
    let local = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    let point = |v: &Value, prefix: &str| {
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["ts"].as_str().unwrap().starts_with(prefix))
            .map_or(0.0, |p| p["kwh"].as_f64().unwrap())
    };
    let day = server
        .get_json("/api/v1/buildings/b/energy?resolution=day&start=2000-01-01")
        .await;
    let today = point(&day, &local.to_string());
    assert_eq!(b["today_kwh"].as_f64().unwrap(), today);
    let month = server
        .get_json("/api/v1/buildings/b/energy?resolution=month&start=2000-01-01")
        .await;
    let this_month = point(&month, &local.format("%Y-%m-01").to_string());
    assert_eq!(b["month_kwh"].as_f64().unwrap(), this_month);
    assert!((b["month_kwh_per_m2"].as_f64().unwrap() - this_month / 500.0).abs() < 1e-12);
    // The newest reading is at most a quarter before now.
    assert!(b["last_reading_age_s"].as_i64().unwrap() < 1_000);
    assert!(b["last_reading"].as_str().unwrap().ends_with("+05:30"));
    let empty = rows.iter().find(|r| r["id"] == "empty").unwrap();
    assert_eq!(
        (empty["today_kwh"].as_f64(), empty.get("last_reading")),
        (Some(0.0), None)
    );
    assert_eq!(overview["total"]["sensor_count"], 2);
    assert_eq!(overview["total"]["today_kwh"].as_f64().unwrap(), today);

    // Another tenant's overview is a 404 like a missing tenant's; an
    // ingest key may not read it.
    for (k, path, status) in [
        (&theirs, "/api/v1/tenants/t/overview", 404),
        (&theirs, "/api/v1/tenants/nope/overview", 404),
        (&ingest, "/api/v1/tenants/t/overview", 403),
    ] {
        let r = server.with_key(k, Method::GET, path).send().await.unwrap();
        let (s, _, _) = error_code(r).await;
        assert_eq!(s, status, "{path}");
    }
}

/// In Debian's chromium through chromedriver (installed by `.ci/run`):
/// sign in (a wrong key, then a tenant key), see the tenant's buildings
/// and not another tenant's, open a building, switch the chart's
/// resolution; screenshots of each page (desktop and phone width) go to
/// `target/dashboard/`.
#[tokio::test]
#[ignore = "needs chromium and chromedriver (installed by .ci/run)"]
async fn in_a_real_browser_a_tenant_signs_in_sees_its_buildings_and_their_chart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "hq", &["m1"]).await;
    server.create_building("t", "depot").await;
    server.setup("other", "secret-site", &["x1"]).await;
    let key = server.create_key("tenant", Some("t")).await;
    let now = crate::support::now_minute_ms();
    // Three days of quarter hours with an outage of five whole hours.
    let outage = (now - 2 * 86_400_000) / 3_600_000 * 3_600_000;
    let readings: Vec<Value> = (now - 3 * 86_400_000..now)
        .step_by(900_000)
        .filter(|t| !(outage..outage + 5 * 3_600_000).contains(t))
        .map(|t| reading("m1", t, 1.0 + ((t / 3_600_000) % 24) as f64 / 10.0))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({"readings": readings}))
            .await
            .status(),
        202
    );
    server.flush().await;
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    std::fs::create_dir_all(&shots).unwrap();

    for (width, height, name) in [(1200, 900, "desktop"), (390, 844, "phone")] {
        let b = crate::webdriver::Browser::start(width, height).await;
        b.goto(&server.url("/")).await;
        b.clear_and_type("#key", "wl_not_a_key").await;
        b.click("button[type=submit]").await;
        b.wait_text(".error", |t| t.contains("unknown or revoked"))
            .await;
        b.screenshot(&shots.join(format!("signin-{name}.png")))
            .await;

        let started = std::time::Instant::now();
        b.clear_and_type("#key", &key).await;
        b.click("button[type=submit]").await;
        b.find("#buildings tbody tr").await;
        assert_eq!(b.count("#buildings tbody tr").await, 2);
        let table = b.text("#buildings").await;
        assert!(
            table.contains("Building hq") && table.contains("Building depot"),
            "{table}"
        );
        assert!(!table.contains("secret-site"), "{table}");
        b.screenshot(&shots.join(format!("buildings-{name}.png")))
            .await;

        b.click("a[href='#/building/hq']").await;
        let note = b
            .wait_text("#chart-note", |t| t.contains("hour buckets"))
            .await;
        let first_chart = started.elapsed();
        let hours: usize = note.split_whitespace().next().unwrap().parse().unwrap();
        assert!(hours >= 67, "{note}");
        assert!(
            note.ends_with("1 gap without readings, the longest 5 hours."),
            "{note}"
        );
        b.screenshot(&shots.join(format!("building-{name}.png")))
            .await;
        b.click("button[data-resolution=day]").await;
        let note = b
            .wait_text("#chart-note", |t| t.contains("day buckets"))
            .await;
        let days: usize = note.split_whitespace().next().unwrap().parse().unwrap();
        assert!((3..=5).contains(&days), "{note}");
        let total = b.text("#total").await;
        assert!(
            total.ends_with("kWh") && !total.starts_with("0.0"),
            "{total}"
        );
        // Days carry peak demand and coverage; no tariff, no cost.
        let peak = b.text("#peak").await;
        assert!(peak.ends_with(" kW"), "{peak}");
        assert!(b.text("#coverage").await.ends_with('%'));
        assert_eq!(b.text("#cost").await, "–");
        eprintln!("{name}: sign-in to first chart {first_chart:?}");

        // Sensors: the meter with its last reading; add one, deactivate it.
        let sensors = b.wait_text("#sensors", |t| t.contains("m1")).await;
        let m1 = sensors.lines().find(|l| l.starts_with("m1")).unwrap();
        assert!(!m1.contains("never"), "{sensors}");
        let new = format!("m-{name}");
        b.clear_and_type("#new-sensor", &new).await;
        b.click("form.controls button[type=submit]").await;
        b.wait_text("#sensors", |t| t.contains(&new)).await;
        b.click(&format!("button[data-sensor='{new}']")).await;
        b.wait_text(&format!("button[data-sensor='{new}']"), |t| {
            t.starts_with("inactive")
        })
        .await;

        // An alert rule: added, then disabled and enabled again.
        b.clear_and_type("#rule-value", "500").await;
        b.clear_and_type("#rule-email", "ops@example.org").await;
        b.click("#rule-submit").await;
        let rules = b.wait_text("#rules", |t| t.contains("over 500")).await;
        assert!(rules.contains("ops@example.org"), "{rules}");
        b.click("button[data-rule-toggle]").await;
        b.wait_text("#rules", |t| t.contains("off: enable")).await;
        b.click("button[data-rule-toggle]").await;
        b.wait_text("#rules", |t| t.contains("on: disable")).await;
        b.click("button[data-rule-edit]").await;
        b.clear_and_type("#rule-value", "750").await;
        b.click("#rule-submit").await;
        let rules = b.wait_text("#rules", |t| t.contains("over 750")).await;
        assert!(!rules.contains("over 500"), "{rules}");
        b.text("#events").await;
        // The next round (phone width) starts without it.
        let rules = server.get_json("/api/v1/buildings/hq/alerts").await;
        for r in rules.as_array().unwrap() {
            let path = format!("/api/v1/alerts/{}", r["id"].as_str().unwrap());
            let r = server.admin(Method::DELETE, &path).send().await.unwrap();
            assert_eq!(r.status(), 204);
        }

        // A report, asked for and ready to download.
        b.click("#report-format option[value=csv]").await;
        b.click("section:last-of-type button[type=submit]").await;
        b.wait_text("#report-status", |t| t.contains("download hq-"))
            .await;
        b.screenshot(&shots.join(format!("report-{name}.png")))
            .await;

        // SQL: the default query's table, an error in words, only this
        // tenant's rows.
        b.goto(&server.url("/#/sql")).await;
        b.click("#run").await;
        let result = b.wait_text("#sql-result", |t| t.contains("rows")).await;
        assert!(
            result.contains("hq") && !result.contains("secret-site"),
            "{result}"
        );
        b.screenshot(&shots.join(format!("sql-{name}.png"))).await;
        b.clear_and_type("#sql", "SELECT nope FROM readings").await;
        b.click("#run").await;
        b.wait_text("#sql-result", |t| {
            t.contains("The query failed at line 1, column 8") && t.contains("nope")
        })
        .await;
        let at = b.text("#sql-error-at").await;
        assert_eq!(at, "SELECT nope FROM readings\n       ^", "{at:?}");
        b.clear_and_type("#sql", "SELECT DISTINCT building_id FROM readings")
            .await;
        b.click("#run").await;
        let result = b.wait_text("#sql-result", |t| t.contains("rows")).await;
        assert!(
            result.contains("hq") && !result.contains("secret-site"),
            "{result}"
        );

        // Another tenant's building by its address: told it is not there.
        b.goto(&server.url("/#/building/secret-site")).await;
        b.wait_text("main", |t| t.contains("no building secret-site"))
            .await;
        // No admin page for a tenant key.
        assert_eq!(b.count("a[href='#/admin']").await, 0);

        // An admin: the health panel, tenants and a new key shown once.
        b.click("#signout").await;
        b.clear_and_type("#key", &server.admin).await;
        b.click("button[type=submit]").await;
        b.click("a[href='#/admin']").await;
        b.wait_text("#ready", |t| t == "yes").await;
        b.wait_text("#tenants", |t| t.contains("other")).await;
        b.clear_and_type("#key-name", &format!("ui-{name}")).await;
        b.clear_and_type("#key-tenant", "t").await;
        b.click("form:last-of-type button[type=submit]").await;
        let secret = b.wait_text("#new-secret", |t| t.contains("wl_")).await;
        b.wait_text("#keys", |t| t.contains(&format!("ui-{name}")))
            .await;
        b.screenshot(&shots.join(format!("admin-{name}.png"))).await;
        let fresh = secret.split_whitespace().last().unwrap();
        let r = server
            .with_key(fresh, Method::GET, "/api/v1/me")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// The most recent local day before today on which Berlin's clocks changed.
fn last_clock_change() -> (chrono::NaiveDate, usize) {
    use chrono::{Offset, TimeZone};
    let tz = chrono_tz::Europe::Berlin;
    let offset = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(12, 0, 0).unwrap())
            .unwrap()
            .offset()
            .fix()
            .local_minus_utc()
    };
    let mut d = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    loop {
        let before = d - chrono::Duration::days(1);
        if offset(d) != offset(before) {
            // Clocks forward: a 23-hour day; back: 25.
            return (d, if offset(d) > offset(before) { 23 } else { 25 });
        }
        d = before;
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (installed by .ci/run)"]
async fn in_a_real_browser_a_clock_change_day_has_its_23_or_25_hours() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::support::Options {
        config: Some("[retention]\nraw = \"400d\"\n".into()),
        ..Default::default()
    };
    let server = Server::start_with(dir.path(), opts).await;
    server.create_tenant("t").await;
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": "ber", "name": "Berlin", "timezone": "Europe/Berlin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_sensor("ber", "m").await;
    let key = server.create_key("tenant", Some("t")).await;
    let (day, hours) = last_clock_change();
    let from = day
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
        - 86_400_000;
    let readings: Vec<Value> = (from..from + 3 * 86_400_000)
        .step_by(900_000)
        .map(|t| reading("m", t, 1.0))
        .collect();
    assert_eq!(
        server
            .post_json(&json!({"readings": readings}))
            .await
            .status(),
        202
    );
    server.flush().await;

    let b = crate::webdriver::Browser::start(1200, 900).await;
    b.goto(&server.url("/")).await;
    b.clear_and_type("#key", &key).await;
    b.click("button[type=submit]").await;
    b.find("#buildings tbody tr").await;
    let next = day + chrono::Duration::days(1);
    b.goto(&server.url(&format!(
        "/#/building/ber?start={day}&end={next}&resolution=hour"
    )))
    .await;
    let note = b
        .wait_text("#chart-note", |t| t.contains("hour buckets"))
        .await;
    assert_eq!(
        note,
        format!("{hours} hour buckets in Europe/Berlin local time.")
    );
    let total = b.text("#total").await;
    assert_eq!(total, format!("{}.0 kWh", hours * 4));
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    b.screenshot(&shots.join("clock-change-day.png")).await;

    // The date fields hold the building's local dates, also where they are
    // a day ahead of or behind UTC.
    for (id, zone) in [
        ("kir", chrono_tz::Pacific::Kiritimati),
        ("ppg", chrono_tz::Pacific::Pago_Pago),
    ] {
        let r = server
            .admin(Method::POST, "/api/v1/tenants/t/buildings")
            .json(&json!({"id": id, "name": id, "timezone": zone.name()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let local_today = || chrono::Utc::now().with_timezone(&zone).date_naive();
        let before = local_today();
        b.goto(&server.url(&format!("/#/building/{id}"))).await;
        b.wait_text("#chart-note", |t| t.contains("hour buckets"))
            .await;
        let end = b.value("#end").await;
        let report_end = b.value("#report-end").await;
        // Local midnight may pass while the page loads: either day holds.
        let days = [before, local_today()];
        assert!(
            days.iter()
                .any(|d| end == (*d + chrono::Duration::days(1)).to_string()
                    && report_end == d.to_string()),
            "{id}: end {end}, report end {report_end}, local today {days:?}"
        );
    }
}

/// `wattline demo` in a real browser: its URL and key as printed, its four
/// buildings, a chart of one of them (the time from the click to the
/// drawn chart is printed, not asserted).
#[tokio::test]
#[ignore = "needs chromium and chromedriver (installed by .ci/run)"]
async fn in_a_real_browser_the_demo_shows_its_four_buildings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.log");
    let log = std::fs::File::create(&out).unwrap();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_wattline"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("WATTLINE_ADMIN_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (base, key) = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let base = text
            .split("dashboard: open ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        let key = text
            .split("tenant key: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        if let (Some(b), Some(k)) = (base, key) {
            break (b.trim_end_matches('/').to_owned(), k.to_owned());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo did not start: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let b = crate::webdriver::Browser::start(1200, 900).await;
    b.goto(&format!("{base}/")).await;
    b.clear_and_type("#key", &key).await;
    b.click("button[type=submit]").await;
    b.find("#buildings tbody tr").await;
    let table = b.text("#buildings").await;
    for name in ["Berlin", "New York", "Pune", "Sydney"] {
        assert!(table.contains(name), "{table}");
    }
    let started = std::time::Instant::now();
    b.click("a[href='#/building/berlin-hq']").await;
    b.wait_text("#chart-note", |t| t.contains("hour buckets"))
        .await;
    eprintln!("demo: click to drawn chart {:?}", started.elapsed());
    let _ = demo.kill();
    let _ = demo.wait();
}
