//! Tariffs over HTTP: time-of-use prices by local weekday and time, a
//! tariff change taking effect on a date, a DST day of 23 hours, the
//! demand charge on a month's peak, re-costing when tariffs change after
//! the fact, and tariffs kept to their tenant.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, error_code, reading};

const QUARTER: i64 = 900_000;

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

async fn create(server: &Server, key: &str, tenant: &str, body: Value) -> reqwest::Response {
    server
        .with_key(
            key,
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/tariffs"),
        )
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// (local day, cost) of the building's days in March's last days, and the
/// month's cost.
async fn costs(server: &Server) -> (Vec<(String, f64)>, f64, Value) {
    let v = server
        .get_json("/api/v1/buildings/b/energy?resolution=day&start=2026-03-28&end=2026-04-01")
        .await;
    let days = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ts"].as_str().unwrap()[..10].to_owned(),
                p["cost"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let m = server
        .get_json("/api/v1/buildings/b/energy?resolution=month&start=2026-03-01&end=2026-04-01")
        .await;
    let month = m["points"][0]["cost"].as_f64().unwrap_or(f64::NAN);
    (days, month, v)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn time_of_use_prices_dst_days_tariff_changes_and_demand_charges() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        config: Some("[retention]\nraw = \"3650d\"\n".into()),
        ..Options::default()
    };
    let mut server = Server::start_with(dir.path(), options()).await;
    server.create_tenant("t").await;
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": "b", "name": "B", "timezone": "Europe/Berlin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_sensor("b", "m").await;
    let admin = server.admin.clone();
    let weekdays = json!(["mon", "tue", "wed", "thu", "fri"]);
    let r = create(
        &server,
        &admin,
        "t",
        json!({"id": "winter", "currency": "EUR", "effective_from": "2026-03-01",
               "price_per_kwh": 0.2, "demand_charge_per_kw": 10,
               "periods": [{"days": weekdays, "from": "07:00", "to": "22:00", "price_per_kwh": 0.3}]}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // 1 kWh every quarter hour from Saturday 28 March to Tuesday 31 March
    // (local): Sunday 29 March is 23 hours long in Berlin.
    let (from, to) = (ms("2026-03-27T23:00:00Z"), ms("2026-03-31T22:00:00Z"));
    let all: Vec<Value> = (from..to)
        .step_by(QUARTER as usize)
        .map(|t| reading("m", t, 1.0))
        .collect();
    assert_eq!(all.len(), 4 * 96 - 4);
    assert_eq!(
        server.post_json(&json!({ "readings": all })).await.status(),
        202
    );
    server.flush().await;
    let (days, month, answer) = costs(&server).await;
    assert_eq!(answer["currency"], "EUR");
    // Weekend days at the base price; weekdays 60 quarters at 0.3 and 36
    // at 0.2; the DST day has 92 quarters.
    let want = [
        ("2026-03-28", 96.0 * 0.2),
        ("2026-03-29", 92.0 * 0.2),
        ("2026-03-30", 60.0 * 0.3 + 36.0 * 0.2),
        ("2026-03-31", 60.0 * 0.3 + 36.0 * 0.2),
    ];
    assert_eq!(days.len(), 4, "{days:?}");
    for ((d, c), (wd, wc)) in days.iter().zip(want) {
        assert_eq!(d, wd);
        assert!(close(*c, wc), "{d}: {c} vs {wc}");
    }
    // The month: its days, plus 10 per kW of its peak (1 kWh a quarter is
    // 4 kW).
    let energy: f64 = want.iter().map(|(_, c)| c).sum();
    assert!(close(month, energy + 40.0), "{month}");

    // A new tariff from Monday 30 March, created after the readings: the
    // days it covers are re-costed, the others keep theirs.
    let r = create(
        &server,
        &admin,
        "t",
        json!({"id": "spring", "currency": "EUR", "effective_from": "2026-03-30",
               "price_per_kwh": 0.25, "demand_charge_per_kw": 12,
               "periods": [{"days": weekdays, "from": "07:00", "to": "22:00", "price_per_kwh": 0.4}]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    server.flush().await;
    let (days, month, _) = costs(&server).await;
    let spring = 60.0 * 0.4 + 36.0 * 0.25;
    assert!(close(days[0].1, 96.0 * 0.2) && close(days[1].1, 92.0 * 0.2));
    assert!(
        close(days[2].1, spring) && close(days[3].1, spring),
        "{days:?}"
    );
    // The demand charge of the tariff in effect at the month's end.
    let energy = 96.0 * 0.2 + 92.0 * 0.2 + 2.0 * spring;
    assert!(close(month, energy + 48.0), "{month}");
    // SQL sees the same costs.
    let rows = server
        .sql("SELECT cast(day AS varchar) AS d, cost, peak_kw FROM building_daily ORDER BY d")
        .await;
    assert_eq!(rows.len(), 4);
    assert!(close(rows[2][1].as_f64().unwrap(), spring), "{rows:?}");
    assert_eq!(rows[2][2], 4.0);

    // A report of those days: their energy cost and peak demand.
    let r = crate::reports::request(
        &server,
        &admin,
        &json!({"building_id": "b", "start": "2026-03-28", "end": "2026-04-01", "format": "json"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        crate::reports::finished(&server, &id).await["status"],
        "done"
    );
    let report: Value = crate::reports::result(&server, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["currency"], "EUR");
    assert!(
        close(report["energy_cost"].as_f64().unwrap(), energy),
        "{report}"
    );
    assert_eq!(report["peak_demand"]["kw"], 4.0);
    assert!(close(report["days"][2]["cost"].as_f64().unwrap(), spring));

    // Deleting it restores the old prices; costs survive a restart.
    let r = server
        .admin(Method::DELETE, "/api/v1/tenants/t/tariffs/spring")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    server.flush().await;
    let (days, month, _) = costs(&server).await;
    assert!(close(days[2].1, 60.0 * 0.3 + 36.0 * 0.2), "{days:?}");
    server.terminate();
    let server = Server::start_with(dir.path(), options()).await;
    assert_eq!(costs(&server).await.0, days);
    assert_eq!(costs(&server).await.1, month);
    let list = server.get_json("/api/v1/tenants/t/tariffs").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], "winter");
}

#[tokio::test]
async fn tariffs_are_checked_and_kept_to_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &[]).await;
    server.setup("u", "ub", &[]).await;
    let key_t = server.create_key("tenant", Some("t")).await;
    let key_u = server.create_key("tenant", Some("u")).await;
    let ok =
        json!({"id": "p", "currency": "EUR", "effective_from": "2026-01-01", "price_per_kwh": 0.2});
    for (body, what) in [
        (
            json!({"id": "x", "currency": "euro", "effective_from": "2026-01-01", "price_per_kwh": 0.2}),
            "currency",
        ),
        (
            json!({"id": "x", "currency": "EUR", "effective_from": "January", "price_per_kwh": 0.2}),
            "effective_from",
        ),
        (
            json!({"id": "x", "currency": "EUR", "effective_from": "2026-01-01", "price_per_kwh": 0.2,
                "periods": [{"days": ["mon"], "from": "07:10", "to": "09:00", "price_per_kwh": 1}]}),
            "quarter hour",
        ),
        (
            json!({"id": "x", "currency": "EUR", "effective_from": "2026-01-01", "price_per_kwh": 0.2,
                "periods": [{"days": ["mon"], "from": "07:00", "to": "09:00", "price_per_kwh": 1},
                            {"days": ["fri", "mon"], "from": "08:00", "to": "10:00", "price_per_kwh": 1}]}),
            "overlaps",
        ),
        (
            json!({"id": "x", "currency": "EUR", "effective_from": "2026-01-01", "price_per_kwh": 0.2,
                "periods": [{"days": ["someday"], "from": "07:00", "to": "09:00", "price_per_kwh": 1}]}),
            "someday",
        ),
        (
            json!({"id": "x", "currency": "EUR", "effective_from": "2026-01-01", "price_per_kwh": 0.2,
                "demand_charge_per_kw": -1}),
            "demand_charge",
        ),
    ] {
        let (status, _, v) = error_code(create(&server, &key_t, "t", body.clone()).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(v.to_string().contains(what), "{body}: {v}");
    }
    assert_eq!(create(&server, &key_t, "t", ok.clone()).await.status(), 201);
    assert_eq!(create(&server, &key_t, "t", ok.clone()).await.status(), 409);
    // One currency per tenant.
    let usd =
        json!({"id": "q", "currency": "USD", "effective_from": "2026-02-01", "price_per_kwh": 0.2});
    let (status, _, v) = error_code(create(&server, &key_t, "t", usd).await).await;
    assert_eq!(status, 400);
    assert!(v.to_string().contains("EUR"), "{v}");
    // Another tenant's: not found, whatever the way in.
    let theirs = json!({"id": "z", "building_id": "ub", "currency": "EUR",
                        "effective_from": "2026-01-01", "price_per_kwh": 0.2});
    assert_eq!(create(&server, &key_t, "t", theirs).await.status(), 404);
    assert_eq!(create(&server, &key_u, "t", ok.clone()).await.status(), 404);
    let r = server
        .with_key(&key_u, Method::GET, "/api/v1/tenants/t/tariffs")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for path in ["/api/v1/tenants/t/tariffs/p", "/api/v1/tenants/u/tariffs/p"] {
        let r = server
            .with_key(&key_u, Method::DELETE, path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // Ids are each tenant's own: another tenant's id tells nothing.
    assert_eq!(create(&server, &key_u, "u", ok.clone()).await.status(), 201);
    let r = server
        .with_key(&key_u, Method::DELETE, "/api/v1/tenants/u/tariffs/p")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let list = server.get_json("/api/v1/tenants/t/tariffs").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // An ingest key may not touch tariffs.
    let ingest = server.create_key("ingest", Some("t")).await;
    let r = server
        .with_key(&ingest, Method::GET, "/api/v1/tenants/t/tariffs")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
