//! Alerts end to end: rules over HTTP, detection by the daemon, delivery
//! to a real SMTP server and a real webhook receiver in the test process,
//! across SMTP outages, webhook failures and SIGKILL.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::alert_peers::{Hook, MailServer, free_port};
use crate::support::{Options, Server, error_code, reading};

const QUARTER: i64 = 900_000;
const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A daemon evaluating every second, mailing to `smtp_port`.
async fn start(root: &std::path::Path, smtp_port: u16) -> Server {
    Server::start_with(
        root,
        Options {
            config: Some(format!(
                "[alerts]\ninterval = \"1s\"\nrenotify = \"6h\"\ndashboard_url = \"https://energy.example\"\nwebhook_private = true\n\
                 [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nfrom = \"alerts@wattline.test\"\n"
            )),
            env: vec![],
        },
    )
    .await
}

async fn create_rule(s: &Server, building: &str, body: Value) -> Value {
    let r = s
        .admin(
            Method::POST,
            &format!("/api/v1/buildings/{building}/alerts"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn events(s: &Server, building: &str) -> Vec<Value> {
    let v = s
        .get_json(&format!("/api/v1/buildings/{building}/alert-events"))
        .await;
    v.as_array().unwrap().clone()
}

/// Waits until the building has at least `n` events.
async fn wait_events(s: &Server, building: &str, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let e = events(s, building).await;
        if e.len() >= n {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} events within {secs} s, got {e:?}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The quarter two before the one now ending: complete, and so is the
/// quarter after it.
fn past_quarter() -> i64 {
    let settled = now_ms() - 2_000;
    settled - settled.rem_euclid(QUARTER) - 2 * QUARTER
}

async fn post_readings(s: &Server, readings: Vec<Value>) {
    let r = s.post_json(&json!({"readings": readings})).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["window_start"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn utc_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn an_episode_is_mailed_once_per_address_and_posted_once_to_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    let hook = Hook::start(0).await;
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    let rule = create_rule(
        &s,
        "b1",
        json!({"threshold_kwh": 5.0, "window": "15m",
               "emails": ["ops@b1.test", "chief@b1.test"], "webhook_url": hook.url}),
    )
    .await;
    assert_eq!(rule["kind"], "threshold");
    assert_eq!(rule["enabled"], true);
    let q = past_quarter();
    post_readings(
        &s,
        vec![
            reading("s1", q + 60_000, 3.0),
            reading("s1", q + 120_000, 4.0),
        ],
    )
    .await;

    // Fired for the quarter, resolved by the (empty) quarter after it,
    // both found in one pass: one mail per address holding both.
    let ev = wait_events(&s, "b1", 2, 30).await;
    assert_eq!(
        kinds(&ev),
        [
            ("fired".to_owned(), utc_text(q)),
            ("resolved".to_owned(), utc_text(q + QUARTER))
        ]
    );
    assert_eq!(ev[0]["measured_kwh"], 7.0);
    assert_eq!(ev[0]["threshold_kwh"], 5.0);
    assert_eq!(ev[0]["window_end"], utc_text(q + QUARTER));
    assert_eq!(ev[0]["rule_id"], rule["id"]);
    let mails = mail.wait_for(2, 30).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.received().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "webhook got {:?}",
            hook.received()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives on later passes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mails_after = mail.mails();
    assert_eq!(mails_after.len(), 2, "{mails_after:?}");
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["chief@b1.test", "ops@b1.test"]);
    for m in &mails {
        let id = m.header("Message-ID").expect("a Message-ID");
        let (e1, e2) = (
            ev[0]["event_id"].as_u64().unwrap(),
            ev[1]["event_id"].as_u64().unwrap(),
        );
        assert!(id.starts_with(&format!("<alert.{e1}-{e2}.")), "{id}");
        assert!(id.ends_with("@wattline.test>"), "{id}");
        let subject = m.header("Subject").unwrap();
        assert!(subject.contains("2 alert events"), "{subject}");
        assert!(
            m.data.contains("7.000 kWh measured > 5.000 kWh threshold"),
            "{}",
            m.data
        );
        assert!(
            m.data
                .contains("https://energy.example/dashboard/buildings/b1")
        );
        assert!(m.data.contains("text/html"), "an HTML part");
        assert!(
            m.data.contains("(UTC)"),
            "the window in the building's zone"
        );
    }
    let posts = hook.received();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let mut posted: Vec<Value> = posts.into_iter().map(|(_, b)| b).collect();
    posted.sort_by_key(|b| b["event_id"].as_u64());
    assert_eq!(posted, ev, "the webhook receives the event objects");

    let rows = s
        .sql("SELECT kind, measured_kwh FROM alert_events ORDER BY event_id")
        .await;
    assert_eq!(rows, [json!(["fired", 7.0]), json!(["resolved", 0.0])]);
    let rules = s
        .sql("SELECT rule_id, window, threshold_kwh, enabled FROM alert_rules")
        .await;
    assert_eq!(rules, [json!([rule["id"], "15m", 5.0, true])]);
    let metrics = s.metrics().await;
    assert!(
        metrics
            .contains("wattline_alert_deliveries_total{channel=\"email\",outcome=\"delivered\"} 4"),
        "two events to two addresses: {metrics}"
    );
    assert!(metrics.contains("wattline_alert_outbox_depth 0"));
}

#[tokio::test]
async fn mail_waits_for_a_server_that_is_down_also_across_a_sigkill_and_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = start(dir.path(), port).await;
    s.setup("t1", "b1", &["s1"]).await;
    let rule = create_rule(
        &s,
        "b1",
        json!({"threshold_kwh": 1.0, "window": "15m", "emails": ["ops@b1.test"]}),
    )
    .await;
    let q = past_quarter();
    post_readings(&s, vec![reading("s1", q + 60_000, 2.5)]).await;
    // Detected while the mail server is down.
    wait_events(&s, "b1", 2, 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.kill();
    let mut s = start(dir.path(), port).await;
    // The rule and the outbox survived the kill.
    let again = s
        .get_json(&format!("/api/v1/alerts/{}", rule["id"].as_str().unwrap()))
        .await;
    assert_eq!(again["threshold_kwh"], 1.0);
    let mail = MailServer::start_on(port);
    let mails = mail.wait_for(1, 60).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        mail.mails().len(),
        1,
        "one mail with both events: {mails:?}"
    );
    assert!(
        mails[0].data.contains("over its threshold"),
        "{}",
        mails[0].data
    );
    assert!(mails[0].data.contains("back under its threshold"));
    assert_eq!(
        events(&s, "b1").await.len(),
        2,
        "no event twice after the restart"
    );
    s.terminate();
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_it_answers_and_never_holds_up_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    // The first POST of each event hangs past the daemon's 10 s timeout.
    let hook = Hook::start_with(2, Duration::from_secs(12)).await;
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    create_rule(
        &s,
        "b1",
        json!({"threshold_kwh": 1.0, "window": "15m", "emails": ["ops@b1.test"], "webhook_url": hook.url}),
    )
    .await;
    let q = past_quarter();
    post_readings(&s, vec![reading("s1", q + 60_000, 2.5)]).await;
    let ev = wait_events(&s, "b1", 2, 30).await;
    // Mail goes out while the webhook's first POSTs still hang.
    mail.wait_for(1, 8).await;
    assert!(
        hook.received().iter().all(|(st, _)| *st != 200),
        "{:?}",
        hook.received()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while hook.received().iter().filter(|(st, _)| *st == 200).count() < 2 {
        assert!(Instant::now() < deadline, "{:?}", hook.received());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = hook.received();
    for e in &ev {
        let statuses: Vec<u16> = got
            .iter()
            .filter(|(_, b)| b["event_id"] == e["event_id"])
            .map(|(st, _)| *st)
            .collect();
        assert_eq!(statuses, [500, 500, 200], "event {}", e["event_id"]);
    }
}

/// Waits (if needed) until the current hour has at least `margin` left.
async fn away_from_hour_end(margin: i64) {
    let left = HOUR - now_ms().rem_euclid(HOUR);
    if left < margin {
        tokio::time::sleep(Duration::from_millis((left + 3_000) as u64)).await;
    }
}

#[tokio::test]
async fn late_data_fires_for_its_past_window_and_a_correction_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    away_from_hour_end(150_000).await;
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    create_rule(
        &s,
        "b1",
        json!({"threshold_kwh": 10.0, "window": "1h", "emails": ["ops@b1.test"]}),
    )
    .await;
    let this_hour = now_ms() - now_ms().rem_euclid(HOUR);
    // A reading arriving three hours late: fired for its hour, resolved
    // by the hour after it.
    let old = this_hour - 3 * HOUR;
    post_readings(&s, vec![reading("s1", old + 600_000, 12.0)]).await;
    let ev = wait_events(&s, "b1", 2, 30).await;
    assert_eq!(
        kinds(&ev),
        [
            ("fired".to_owned(), utc_text(old)),
            ("resolved".to_owned(), utc_text(old + HOUR))
        ]
    );
    // The last complete hour goes over: an open episode...
    let last = this_hour - HOUR;
    post_readings(&s, vec![reading("s1", last + 60_000, 15.0)]).await;
    let ev = wait_events(&s, "b1", 3, 30).await;
    assert_eq!(kinds(&ev[2..]), [("fired".to_owned(), utc_text(last))]);
    // ...that a correction of the reading brings back under: resolved,
    // naming the window it fired for.
    post_readings(&s, vec![reading("s1", last + 60_000, 4.0)]).await;
    let ev = wait_events(&s, "b1", 4, 30).await;
    assert_eq!(kinds(&ev[3..]), [("resolved".to_owned(), utc_text(last))]);
    assert_eq!(ev[3]["measured_kwh"], 4.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(events(&s, "b1").await.len(), 4);
}

#[tokio::test]
async fn a_baseline_rule_fires_on_an_hour_far_above_the_same_hour_of_past_weeks() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    away_from_hour_end(60_000).await;
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    let this_hour = now_ms() - now_ms().rem_euclid(HOUR);
    let last = this_hour - HOUR;
    let week = 7 * 24 * HOUR;
    // The same hour 1, 2 and 3 weeks back: 1, 2 and 4 kWh (median 2);
    // the hour before the last (3 kWh) stays under its own baseline of
    // 3 weeks at 10 kWh; the last hour has 3.5 kWh.
    let mut r = vec![];
    for (k, v) in [(1, 1.0), (2, 2.0), (3, 4.0)] {
        r.push(reading("s1", last - k * week + 60_000, v));
        r.push(reading("s1", last - HOUR - k * week + 60_000, 10.0));
    }
    r.push(reading("s1", last - HOUR + 60_000, 3.0));
    r.push(reading("s1", last + 60_000, 3.5));
    post_readings(&s, r).await;
    create_rule(
        &s,
        "b1",
        json!({"kind": "baseline", "window": "1h", "weeks": 3, "percent": 50.0,
               "emails": ["ops@b1.test"]}),
    )
    .await;
    let ev = wait_events(&s, "b1", 1, 30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ev2 = events(&s, "b1").await;
    assert_eq!(ev2.len(), 1, "{ev2:?}");
    assert_eq!(kinds(&ev), [("fired".to_owned(), utc_text(last))]);
    assert_eq!(ev[0]["measured_kwh"], 3.5);
    assert_eq!(ev[0]["threshold_kwh"], 3.0, "median 2 kWh raised by 50%");
}

#[tokio::test]
async fn an_offline_rule_names_the_silent_meter_and_resolves_when_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1", "s2", "s3"]).await;
    let now = now_ms();
    // s1 last reported 5 minutes ago, s2 and s3 just now.
    post_readings(
        &s,
        vec![
            reading("s1", now - 300_000, 0.2),
            reading("s2", now - 1_000, 0.2),
            reading("s3", now - 2_000, 0.2),
        ],
    )
    .await;
    let rule = create_rule(
        &s,
        "b1",
        json!({"kind": "offline", "for": "2m", "emails": ["ops@b1.test"]}),
    )
    .await;
    assert_eq!(rule["for"], "2m");
    let ev = wait_events(&s, "b1", 1, 30).await;
    assert_eq!(ev[0]["kind"], "fired");
    assert_eq!(ev[0]["sensor_id"], "s1");
    assert_eq!(ev[0]["window_start"], utc_text(now - 300_000));
    let mails = mail.wait_for(1, 30).await;
    assert!(
        mails[0].data.contains("meter s1 has sent nothing"),
        "{}",
        mails[0].data
    );
    // s1 reports again: resolved, naming the silence it ends.
    post_readings(&s, vec![reading("s1", now_ms() - 500, 0.3)]).await;
    let ev = wait_events(&s, "b1", 2, 30).await;
    assert_eq!(ev[1]["kind"], "resolved");
    assert_eq!(ev[1]["sensor_id"], "s1");
    assert_eq!(ev[1]["window_start"], utc_text(now - 300_000));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events(&s, "b1").await.len(),
        2,
        "s2 and s3 were never silent"
    );
    let rows = s
        .sql("SELECT kind, sensor_id FROM alert_events ORDER BY event_id")
        .await;
    assert_eq!(rows, [json!(["fired", "s1"]), json!(["resolved", "s1"])]);
}

#[tokio::test]
async fn rules_and_events_are_the_tenants_own() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    s.setup("t2", "b2", &["s2"]).await;
    let k1 = s.create_key("tenant", Some("t1")).await;
    let k2 = s.create_key("tenant", Some("t2")).await;
    let ingest = s.create_key("ingest", Some("t1")).await;
    let r = s
        .with_key(&k1, Method::POST, "/api/v1/buildings/b1/alerts")
        .json(&json!({"threshold_kwh": 1.0, "window": "15m", "emails": ["ops@t1.test"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rule: Value = r.json().await.unwrap();
    let id = rule["id"].as_str().unwrap();
    let q = past_quarter();
    post_readings(&s, vec![reading("s1", q + 60_000, 2.5)]).await;
    wait_events(&s, "b1", 2, 30).await;

    // The other tenant: 404 exactly like a missing rule or building.
    for (method, path) in [
        (Method::GET, format!("/api/v1/alerts/{id}")),
        (Method::PATCH, format!("/api/v1/alerts/{id}")),
        (Method::DELETE, format!("/api/v1/alerts/{id}")),
        (Method::GET, "/api/v1/buildings/b1/alerts".to_owned()),
        (Method::POST, "/api/v1/buildings/b1/alerts".to_owned()),
        (Method::GET, "/api/v1/buildings/b1/alert-events".to_owned()),
    ] {
        let r = s
            .with_key(&k2, method.clone(), &path)
            .json(&json!({"threshold_kwh": 2.0, "window": "15m", "emails": ["x@t2.test"]}))
            .send()
            .await
            .unwrap();
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (404, "not_found"),
            "{method} {path}"
        );
    }
    let missing = s
        .with_key(&k2, Method::GET, "/api/v1/alerts/rdoesnotexist")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(missing).await.0, 404);
    let r = s
        .with_key(&ingest, Method::GET, "/api/v1/buildings/b1/alerts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an ingest key manages no rules");
    // SQL: the other tenant's tables are empty, also for an expression
    // that errors on every row it sees.
    for table in ["alert_rules", "alert_events"] {
        let v = s
            .sql_with(&k2, &format!("SELECT count(*) FROM {table}"))
            .await;
        assert_eq!(v["rows"], json!([[0]]), "{table}");
        let v = s
            .sql_with(&k1, &format!("SELECT count(*) FROM {table}"))
            .await;
        assert_ne!(v["rows"], json!([[0]]), "{table}");
        let r = s
            .with_key(&k2, Method::POST, "/api/v1/sql")
            .json(&json!({"sql": format!(
                "SELECT * FROM {table} WHERE CAST(concat(tenant_id, rule_id) AS BIGINT) = 1"
            )}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "no row of t1 is evaluated: {body}");
        assert!(!body.contains(id) && !body.contains("t1"), "{body}");
    }
    // The owner changes and deletes its rule.
    let r = s
        .with_key(&k1, Method::PATCH, &format!("/api/v1/alerts/{id}"))
        .json(&json!({"enabled": false, "webhook_url": "https://hooks.example/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["webhook_url"], "https://hooks.example/x");
    let r = s
        .with_key(&k1, Method::DELETE, &format!("/api/v1/alerts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .with_key(&k1, Method::GET, &format!("/api/v1/alerts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(events(&s, "b1").await.len(), 2, "events outlive their rule");
}

#[tokio::test]
async fn a_refused_address_is_given_up_and_a_deferred_one_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    create_rule(
        &s,
        "b1",
        json!({"threshold_kwh": 1.0, "window": "15m",
               "emails": ["bounce@b1.test", "later@b1.test", "ops@b1.test"]}),
    )
    .await;
    let q = past_quarter();
    post_readings(&s, vec![reading("s1", q + 60_000, 2.5)]).await;
    wait_events(&s, "b1", 2, 30).await;
    // ops at once; later after its 451 (retried in about 2 s); bounce
    // never (550 is permanent: one try, then failed).
    let mails = mail.wait_for(2, 30).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut to: Vec<String> = mail.mails().iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["later@b1.test", "ops@b1.test"], "{mails:?}");
    assert_eq!(mail.rcpt_count("bounce@b1.test"), 1, "no retry after a 550");
    assert_eq!(mail.rcpt_count("later@b1.test"), 2, "one retry after a 451");
    let m = s.metrics().await;
    for line in [
        "wattline_alert_deliveries_total{channel=\"email\",outcome=\"failed\"} 2",
        "wattline_alert_deliveries_total{channel=\"email\",outcome=\"retry\"} 2",
        "wattline_alert_deliveries_total{channel=\"email\",outcome=\"delivered\"} 4",
        "wattline_alert_outbox_depth 0",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
}

#[tokio::test]
async fn webhooks_to_private_addresses_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::start(0).await;
    let s = Server::start_with(
        dir.path(),
        Options {
            config: Some("[alerts]\ninterval = \"1s\"\n".into()),
            env: vec![],
        },
    )
    .await;
    s.setup("t1", "b1", &["s1"]).await;
    create_rule(
        &s,
        "b1",
        json!({"threshold_kwh": 1.0, "window": "15m", "webhook_url": hook.url}),
    )
    .await;
    let q = past_quarter();
    post_readings(&s, vec![reading("s1", q + 60_000, 2.5)]).await;
    wait_events(&s, "b1", 2, 30).await;
    let failed = "wattline_alert_deliveries_total{channel=\"webhook\",outcome=\"failed\"} 2";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = s.metrics().await;
        if m.contains(failed) && m.contains("wattline_alert_outbox_depth 0") {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(hook.received().is_empty(), "no POST to 127.0.0.1");
    assert!(s.log().contains("not a public address"));
    assert!(!s.log().contains("/hook"), "the URL's path is not logged");
}

#[tokio::test]
async fn a_deleted_building_takes_its_rules_and_its_id_reused_shows_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), free_port()).await;
    s.create_tenant("t1").await;
    s.create_tenant("t2").await;
    s.create_building("t1", "hq").await;
    create_rule(
        &s,
        "hq",
        json!({"threshold_kwh": 1.0, "emails": ["secret-ops@t1.test"]}),
    )
    .await;
    let r = s
        .admin(Method::DELETE, "/api/v1/buildings/hq")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.create_building("t2", "hq").await;
    let k2 = s.create_key("tenant", Some("t2")).await;
    let r = s
        .with_key(&k2, Method::GET, "/api/v1/buildings/hq/alerts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
    assert!(s.sql("SELECT * FROM alert_rules").await.is_empty());
}

#[tokio::test]
async fn bad_rules_are_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), free_port()).await;
    s.setup("t1", "b1", &["s1"]).await;
    for (body, needle) in [
        (
            json!({"window": "15m", "emails": ["a@b.test"]}),
            "threshold_kwh",
        ),
        (
            json!({"threshold_kwh": -1, "emails": ["a@b.test"]}),
            "threshold_kwh",
        ),
        (
            json!({"threshold_kwh": 1, "window": "7m", "emails": ["a@b.test"]}),
            "window",
        ),
        (
            json!({"threshold_kwh": 1, "emails": ["not-an-address"]}),
            "emails",
        ),
        (
            json!({"threshold_kwh": 1, "emails": ["a@b.test\r\nBcc: x@y.test"]}),
            "emails",
        ),
        (json!({"threshold_kwh": 1}), "emails"),
        (
            json!({"threshold_kwh": 1, "webhook_url": "ftp://x.test/"}),
            "webhook_url",
        ),
        (
            json!({"threshold_kwh": 1, "emails": ["a@b.test"], "colour": "red"}),
            "colour",
        ),
        (
            json!({"kind": "baseline", "window": "15m", "weeks": 4, "percent": 20, "emails": ["a@b.test"]}),
            "window",
        ),
        (
            json!({"kind": "baseline", "window": "1h", "emails": ["a@b.test"]}),
            "weeks",
        ),
    ] {
        let r = s
            .admin(Method::POST, "/api/v1/buildings/b1/alerts")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, err) = error_code(r).await;
        assert_eq!(status, 400, "{body}");
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }
    let r = s
        .admin(Method::POST, "/api/v1/buildings/nope/alerts")
        .json(&json!({"threshold_kwh": 1, "emails": ["a@b.test"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(s.sql("SELECT * FROM alert_rules").await.is_empty());
}

/// The dashboard's overview counts open episodes per building, each
/// tenant only its own: two tenants with a silent meter each, one with a
/// second rule firing.
#[tokio::test]
async fn the_overview_counts_each_tenants_own_open_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mail = MailServer::start();
    let s = start(dir.path(), mail.port).await;
    s.setup("t1", "b1", &["s1"]).await;
    s.setup("t2", "b2", &["s2"]).await;
    let now = now_ms();
    post_readings(
        &s,
        vec![
            reading("s1", now - 300_000, 0.2),
            reading("s2", now - 300_000, 0.2),
        ],
    )
    .await;
    for b in ["b1", "b2"] {
        create_rule(
            &s,
            b,
            json!({"kind": "offline", "for": "2m", "emails": ["ops@x.test"]}),
        )
        .await;
    }
    create_rule(
        &s,
        "b2",
        json!({"kind": "offline", "for": "3m", "emails": ["ops@x.test"]}),
    )
    .await;
    wait_events(&s, "b1", 1, 30).await;
    wait_events(&s, "b2", 2, 30).await;
    for (tenant, building, open) in [("t1", "b1", 1), ("t2", "b2", 2)] {
        let key = s.create_key("tenant", Some(tenant)).await;
        let v: Value = s
            .with_key(
                &key,
                Method::GET,
                &format!("/api/v1/tenants/{tenant}/overview"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v["buildings"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{v}");
        assert_eq!(rows[0]["id"], building, "{v}");
        assert_eq!(rows[0]["open_alerts"], open, "{v}");
        assert_eq!(v["total"]["open_alerts"], open, "{v}");
    }
}
