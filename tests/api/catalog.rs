//! Tenants, buildings and sensors (SPEC 3).

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, error_code, now_minute_ms, reading};

#[tokio::test]
async fn tenants_are_created_listed_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("acme").await;
    let r = server
        .admin(Method::POST, "/api/v1/tenants")
        .json(&json!({"id": "acme", "name": "Again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 409);
    let list: Value = server.get_json("/api/v1/tenants").await;
    assert_eq!(list, json!([{"id": "acme", "name": "Tenant acme"}]));
}

#[tokio::test]
async fn bad_catalog_bodies_are_400_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let cases: [(&str, &str); 7] = [
        (r#"{"id":"has space","name":"x"}"#, "invalid_json"),
        (r#"{"id":"","name":"x"}"#, "invalid_json"),
        (
            &format!(r#"{{"id":"{}","name":"x"}}"#, "x".repeat(65)),
            "invalid_json",
        ),
        (r#"{"id":"ok","name":"x","color":"red"}"#, "invalid_json"),
        (r#"{"id":"ok"}"#, "invalid_json"),
        (r#"{"id":"ok","name":"   "}"#, "invalid_argument"),
        (r#"{"id":"ok","#, "invalid_json"),
    ];
    for (body, code) in cases {
        let r = server
            .admin(Method::POST, "/api/v1/tenants")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let (status, got, _) = error_code(r).await;
        assert_eq!((status, got.as_str()), (400, code), "{body}");
    }
    let list: Value = server.get_json("/api/v1/tenants").await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn buildings_have_zones_counts_patches_and_guarded_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    let r = server
        .admin(Method::POST, "/api/v1/tenants/t/buildings")
        .json(
            &json!({"id": "hq", "name": "HQ", "floor_area_m2": 1200.5, "timezone": "Asia/Kolkata"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!({"id": "hq", "name": "HQ", "tenant_id": "t", "floor_area_m2": 1200.5, "timezone": "Asia/Kolkata"})
    );
    server.create_building("t", "annex").await;
    for (body, status) in [
        (
            json!({"id": "x", "name": "X", "timezone": "Mars/Base"}),
            400,
        ),
        (json!({"id": "x", "name": "X", "floor_area_m2": -5}), 400),
        (json!({"id": "hq", "name": "dup"}), 409),
    ] {
        let r = server
            .admin(Method::POST, "/api/v1/tenants/t/buildings")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await.0, status, "{body}");
    }
    let r = server
        .admin(Method::POST, "/api/v1/tenants/nobody/buildings")
        .json(&json!({"id": "x", "name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    for s in ["m1", "m2", "m3"] {
        server.create_sensor("hq", s).await;
    }
    let r = server
        .admin(Method::PATCH, "/api/v1/sensors/m3")
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = server.get_json("/api/v1/tenants/t/buildings").await;
    let counts: Vec<(String, u64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_owned(),
                b["sensor_count"].as_u64().unwrap(),
                b["timezone"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("annex".into(), 0, "UTC".into()),
            ("hq".into(), 2, "Asia/Kolkata".into())
        ]
    );

    let r = server
        .admin(Method::PATCH, "/api/v1/buildings/hq")
        .json(&json!({"name": "Head office", "timezone": "Europe/Berlin", "floor_area_m2": null}))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["name"], "Head office");
    assert_eq!(b["timezone"], "Europe/Berlin");
    assert_eq!(b["floor_area_m2"], Value::Null);
    let r = server
        .admin(Method::PATCH, "/api/v1/buildings/hq")
        .json(&json!({"timezone": "Nowhere/Land"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = server
        .admin(Method::GET, "/api/v1/buildings/hq")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["timezone"],
        "Europe/Berlin"
    );

    let r = server
        .admin(Method::DELETE, "/api/v1/buildings/hq")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 409);
    let r = server
        .admin(Method::DELETE, "/api/v1/buildings/annex")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = server
        .admin(Method::GET, "/api/v1/buildings/annex")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sensors_default_and_inactive_ones_keep_history_but_refuse_readings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &[]).await;
    let r = server
        .admin(Method::POST, "/api/v1/buildings/b/sensors")
        .json(&json!({"id": "gas-1", "kind": "gas", "unit": "m3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": "gas-1", "building_id": "b", "kind": "gas", "unit": "m3", "is_active": true, "meter_type": "interval", "interval_s": 900})
    );
    server.create_sensor("b", "el-1").await;
    let r = server
        .admin(Method::GET, "/api/v1/sensors/el-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": "el-1", "building_id": "b", "kind": "electricity", "unit": "kWh", "is_active": true, "meter_type": "interval", "interval_s": 900})
    );
    // Sensor ids are unique across the appliance, not just per building.
    server.create_building("t", "b2").await;
    let r = server
        .admin(Method::POST, "/api/v1/buildings/b2/sensors")
        .json(&json!({"id": "el-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let t = now_minute_ms();
    let r = server
        .post_json(&json!({"readings": [reading("el-1", t, 2.5)]}))
        .await;
    assert_eq!(r.status(), 202);
    let r = server
        .admin(Method::PATCH, "/api/v1/sensors/el-1")
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["is_active"], false);
    let r = server
        .post_json(&json!({"readings": [reading("el-1", t + 900_000, 1.0)]}))
        .await;
    let (status, code, body) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "invalid_readings"));
    assert!(
        body["error"]["details"][0]["error"]
            .as_str()
            .unwrap()
            .contains("inactive")
    );
    assert_eq!(server.readings("el-1").await.len(), 1, "history is kept");

    let list: Value = server.get_json("/api/v1/buildings/b/sensors").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["el-1", "gas-1"]);
    let r = server
        .admin(Method::PATCH, "/api/v1/sensors/el-1")
        .json(&json!({"is_active": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn the_catalog_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s1", "s2"]).await;
    let key = server.create_key("tenant", Some("t")).await;
    server.terminate();
    let server = Server::start(dir.path()).await;
    let list: Value = server
        .with_key(&key, Method::GET, "/api/v1/tenants/t/buildings")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["sensor_count"], 2);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let r = server
        .admin(Method::GET, "/api/v1/nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 404);
    let r = server
        .admin(Method::PUT, "/api/v1/tenants")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 405);
}

async fn bulk(server: &Server, key: &str, tenant: &str, ctype: &str, body: String) -> (u16, Value) {
    let r = server
        .with_key(key, Method::POST, &format!("/api/v1/tenants/{tenant}/bulk"))
        .header("Content-Type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A tenant's buildings and sensors in one request, JSON or CSV, all or
/// none; another tenant's building is "not found" like a missing one, and
/// another tenant's key sees no such tenant.
#[tokio::test]
async fn buildings_and_sensors_are_created_in_bulk_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("other", "theirs", &["their-m"]).await;
    server.create_tenant("t").await;
    let key = server.create_key("tenant", Some("t")).await;
    let json_type = "application/json";

    let body = json!({
        "buildings": [
            {"id": "hq", "name": "HQ", "floor_area_m2": 1200.0, "timezone": "Europe/Berlin"},
            {"id": "depot", "name": "Depot"}
        ],
        "sensors": [
            {"id": "hq-1", "building_id": "hq"},
            {"id": "hq-2", "building_id": "hq", "kind": "gas", "unit": "kWh"},
            {"id": "depot-1", "building_id": "depot", "is_active": false}
        ]
    });
    let (status, v) = bulk(&server, &key, "t", json_type, body.to_string()).await;
    assert_eq!(
        (status, v.clone()),
        (201, json!({"buildings": 2, "sensors": 3}))
    );
    let list = server.get_json("/api/v1/tenants/t/buildings").await;
    let counts: Vec<(String, i64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_owned(),
                b["sensor_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("depot".to_owned(), 0), ("hq".to_owned(), 2)]);
    // The new sensors take readings at once.
    let r = server
        .post_json(&json!({"readings": [reading("hq-2", now_minute_ms(), 1.0)]}))
        .await;
    assert_eq!(r.status(), 202);

    // All or none: one bad sensor, nothing stored.
    for (body, status) in [
        // a duplicate within the request
        (
            json!({"buildings": [{"id": "b3", "name": "B3"}],
                "sensors": [{"id": "x", "building_id": "b3"}, {"id": "x", "building_id": "b3"}]}),
            409,
        ),
        // an existing sensor
        (
            json!({"buildings": [{"id": "b3", "name": "B3"}],
                "sensors": [{"id": "hq-1", "building_id": "b3"}]}),
            409,
        ),
        // another tenant's building, answered like a missing one
        (
            json!({"buildings": [{"id": "b3", "name": "B3"}],
                "sensors": [{"id": "y", "building_id": "theirs"}]}),
            404,
        ),
        (
            json!({"buildings": [{"id": "b3", "name": "B3"}],
                "sensors": [{"id": "y", "building_id": "nowhere"}]}),
            404,
        ),
        (
            json!({"buildings": [{"id": "b3", "name": "B3", "timezone": "Mars/Olympus"}]}),
            400,
        ),
        (
            json!({"buildings": [{"id": "b3", "name": "B3", "colour": "red"}]}),
            400,
        ),
        (json!({}), 400),
    ] {
        let (got, v) = bulk(&server, &key, "t", json_type, body.to_string()).await;
        assert_eq!(got, status, "{body}: {v}");
    }
    let (_, missing) = bulk(
        &server,
        &key,
        "t",
        json_type,
        json!({"sensors": [{"id": "y", "building_id": "nowhere"}]}).to_string(),
    )
    .await;
    let (_, foreign) = bulk(
        &server,
        &key,
        "t",
        json_type,
        json!({"sensors": [{"id": "y", "building_id": "theirs"}]}).to_string(),
    )
    .await;
    assert_eq!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nowhere", "X"),
        foreign["error"]["message"]
            .as_str()
            .unwrap()
            .replace("theirs", "X")
    );
    let list = server.get_json("/api/v1/tenants/t/buildings").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "nothing of the refused requests stored"
    );

    // Another tenant's key: no such tenant; an ingest key: not allowed.
    let theirs = server.create_key("tenant", Some("other")).await;
    let (status, _) = bulk(&server, &theirs, "t", json_type, body.to_string()).await;
    assert_eq!(status, 404);
    let ingest = server.create_key("ingest", Some("t")).await;
    let (status, _) = bulk(&server, &ingest, "t", json_type, body.to_string()).await;
    assert_eq!(status, 403);

    // CSV, as an estate's export has it (extra columns ignored).
    let buildings = "building_id,name,tenant_id,floor_area_m2,floors,timezone\n\
                     c1,Site one,t,3296.5,5,Europe/London\n\
                     c2,Site two,t,,3,\n";
    let (status, v) = bulk(&server, &key, "t", "text/csv", buildings.into()).await;
    assert_eq!((status, v), (201, json!({"buildings": 2, "sensors": 0})));
    let sensors =
        "sensor_id,building_id,kind,unit\nc1-elec,c1,electricity,kWh\nc2-gas,c2,gas,kWh\n";
    let (status, v) = bulk(&server, &key, "t", "text/csv", sensors.into()).await;
    assert_eq!((status, v), (201, json!({"buildings": 0, "sensors": 2})));
    let c1 = server.get_json("/api/v1/buildings/c1").await;
    assert_eq!(
        (c1["floor_area_m2"].as_f64(), c1["timezone"].as_str()),
        (Some(3296.5), Some("Europe/London"))
    );
    // A row of another tenant, a missing column: refused with the line.
    let (status, v) = bulk(
        &server,
        &key,
        "t",
        "text/csv",
        "building_id,name,tenant_id\nc3,Three,t\nc4,Four,other\n".into(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3: "),
        "{v}"
    );
    let (status, v) = bulk(
        &server,
        &key,
        "t",
        "text/csv",
        "sensor_id,kind\nz,gas\n".into(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no building_id column"),
        "{v}"
    );

    // An export with a byte-order mark and quoted names, Excel's TRUE, a
    // blank line: fine; a column named twice: refused.
    let (status, v) = bulk(
        &server,
        &key,
        "t",
        "Text/CSV; charset=utf-8",
        "\u{feff}\"sensor_id\",\"building_id\",\"is_active\"\n\"c1-x\",\"c1\",TRUE\n\n\"c1-y\",\"c1\",0\n".into(),
    )
    .await;
    assert_eq!((status, v), (201, json!({"buildings": 0, "sensors": 2})));
    let (status, v) = bulk(
        &server,
        &key,
        "t",
        "text/csv",
        "sensor_id,building_id,building_id\nq,c1,c2\n".into(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names building_id twice"),
        "{v}"
    );
    // Line numbers count blank lines too.
    let (status, v) = bulk(
        &server,
        &key,
        "t",
        "text/csv",
        "sensor_id,building_id,is_active\n\nq1,c1,maybe\n".into(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3: is_active"),
        "{v}"
    );
    // More than 200,000 objects: refused before they are all read.
    let mut big = String::from("sensor_id,building_id\n");
    for i in 0..200_001 {
        big.push_str(&format!("z{i},c1\n"));
    }
    let (status, _) = bulk(&server, &key, "t", "text/csv", big).await;
    assert_eq!(status, 413);

    // ?existing=skip: the tenant's own ids are left as they are, a new
    // one is created; another tenant's id still conflicts.
    let again = json!({"buildings": [{"id": "hq", "name": "Renamed"}, {"id": "annex", "name": "Annex"}],
                       "sensors": [{"id": "hq-1", "building_id": "hq"}, {"id": "annex-1", "building_id": "annex"}]});
    let r = server
        .with_key(&key, Method::POST, "/api/v1/tenants/t/bulk?existing=skip")
        .json(&again)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"buildings": 1, "sensors": 1})
    );
    assert_eq!(server.get_json("/api/v1/buildings/hq").await["name"], "HQ");
    let r = server
        .with_key(&key, Method::POST, "/api/v1/tenants/t/bulk?existing=skip")
        .json(&json!({"buildings": [{"id": "theirs", "name": "Mine now"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}
