//! Keys, roles and tenant isolation (SPEC 2): 401 for unknown callers, 403
//! for a role without the right, 404 for another tenant's objects exactly
//! as for missing ones.

use reqwest::Method;
use serde_json::json;

use crate::support::{Server, error_code, now_minute_ms, reading};

#[tokio::test]
async fn missing_malformed_and_unknown_keys_are_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let r = server
        .client
        .get(server.url("/api/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 401);
    let r = server
        .client
        .get(server.url("/api/v1/tenants"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 401);
    let r = server
        .with_key("wl_not-a-real-key", Method::GET, "/api/v1/tenants")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    let key = server.create_key("tenant", Some("t")).await;
    let r = server
        .with_key(&key, Method::GET, "/api/v1/tenants/t/buildings")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = server.get_json("/api/v1/keys").await;
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "tenant")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .admin(Method::DELETE, &format!("/api/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = server
        .with_key(&key, Method::GET, "/api/v1/tenants/t/buildings")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .admin(Method::DELETE, &format!("/api/v1/keys/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn key_creation_checks_role_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    for (body, status) in [
        (json!({"role": "tenant", "name": "x"}), 400),
        (json!({"role": "admin", "tenant_id": "t", "name": "x"}), 400),
        (json!({"role": "root", "name": "x"}), 400),
        (
            json!({"role": "ingest", "tenant_id": "nope", "name": "x"}),
            404,
        ),
        (
            json!({"role": "ingest", "tenant_id": "t", "name": "x", "extra": 1}),
            400,
        ),
    ] {
        let r = server
            .admin(Method::POST, "/api/v1/keys")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await.0, status, "{body}");
    }
    let r = server
        .admin(Method::POST, "/api/v1/keys")
        .json(&json!({"role": "ingest", "tenant_id": "t", "name": "gw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    for field in ["id", "key", "role", "tenant_id", "name"] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
}

#[tokio::test]
async fn roles_are_enforced_on_every_route_family() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s"]).await;
    let tenant = server.create_key("tenant", Some("t")).await;
    let ingest = server.create_key("ingest", Some("t")).await;

    // Admin-only routes refuse tenant and ingest keys with 403.
    for key in [&tenant, &ingest] {
        for (method, path) in [
            (Method::GET, "/api/v1/tenants"),
            (Method::POST, "/api/v1/tenants"),
            (Method::GET, "/api/v1/keys"),
            (Method::POST, "/api/v1/keys"),
        ] {
            let r = server
                .with_key(key, method.clone(), path)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{method} {path}");
        }
    }
    // Ingest keys may only write readings.
    for (method, path) in [
        (Method::GET, "/api/v1/tenants/t/buildings"),
        (Method::GET, "/api/v1/buildings/b"),
        (Method::GET, "/api/v1/buildings/b/sensors"),
        (Method::GET, "/api/v1/sensors/s"),
        (Method::GET, "/api/v1/sensors/s/readings"),
    ] {
        let r = server
            .with_key(&ingest, method.clone(), path)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await.0, 403, "{method} {path}");
    }
    let t = now_minute_ms();
    for key in [&tenant, &ingest] {
        let r = server
            .with_key(key, Method::POST, "/api/v1/readings")
            .json(&json!({"readings": [reading("s", t, 1.0)]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // The tenant key manages its own objects.
    let r = server
        .with_key(&tenant, Method::POST, "/api/v1/tenants/t/buildings")
        .json(&json!({"id": "b2", "name": "Second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Another tenant's objects answer exactly as missing ones do.
#[tokio::test]
async fn other_tenants_objects_are_404_like_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("a", "ba", &["sa"]).await;
    server.setup("b", "bb", &["sb"]).await;
    let key_a = server.create_key("tenant", Some("a")).await;
    let ingest_a = server.create_key("ingest", Some("a")).await;

    let pairs = [
        (
            "/api/v1/tenants/b/buildings",
            "/api/v1/tenants/zz/buildings",
        ),
        ("/api/v1/buildings/bb", "/api/v1/buildings/zz"),
        (
            "/api/v1/buildings/bb/sensors",
            "/api/v1/buildings/zz/sensors",
        ),
        ("/api/v1/sensors/sb", "/api/v1/sensors/zz"),
        ("/api/v1/sensors/sb/readings", "/api/v1/sensors/zz/readings"),
    ];
    for (theirs, missing) in pairs {
        let a = server
            .with_key(&key_a, Method::GET, theirs)
            .send()
            .await
            .unwrap();
        let b = server
            .with_key(&key_a, Method::GET, missing)
            .send()
            .await
            .unwrap();
        let (sa, ca, _) = error_code(a).await;
        let (sb, cb, _) = error_code(b).await;
        assert_eq!((sa, &ca), (404, &"not_found".to_string()), "{theirs}");
        assert_eq!((sa, ca), (sb, cb), "{theirs} vs {missing}");
    }
    // Writes to another tenant's objects are 404 too, and change nothing.
    let r = server
        .with_key(&key_a, Method::PATCH, "/api/v1/sensors/sb")
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = server
        .with_key(&key_a, Method::DELETE, "/api/v1/buildings/bb")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = server
        .with_key(&key_a, Method::POST, "/api/v1/buildings/bb/sensors")
        .json(&json!({"id": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = server
        .with_key(&key_a, Method::POST, "/api/v1/tenants/b/buildings")
        .json(&json!({"id": "sneaky", "name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Readings for another tenant's sensor read as an unknown sensor.
    let t = now_minute_ms();
    for key in [&key_a, &ingest_a] {
        let theirs = server
            .with_key(key, Method::POST, "/api/v1/readings")
            .json(&json!({"readings": [reading("sb", t, 1.0)]}))
            .send()
            .await
            .unwrap();
        let missing = server
            .with_key(key, Method::POST, "/api/v1/readings")
            .json(&json!({"readings": [reading("zz", t, 1.0)]}))
            .send()
            .await
            .unwrap();
        let (_, _, va) = error_code(theirs).await;
        let (_, _, vb) = error_code(missing).await;
        assert_eq!(va["error"]["details"][0]["error"], "unknown sensor \"sb\"");
        assert_eq!(
            va["error"]["details"][0]["error"]
                .as_str()
                .map(|s| s.replace("sb", "")),
            vb["error"]["details"][0]["error"]
                .as_str()
                .map(|s| s.replace("zz", ""))
        );
    }
    let r = server
        .admin(Method::GET, "/api/v1/sensors/sb")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["is_active"],
        true
    );
    assert!(server.readings("sb").await.is_empty());
}
