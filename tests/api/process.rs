//! Start-up, configuration, health, metrics and shutdown.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Options, Server, now_minute_ms, reading};

#[tokio::test]
async fn first_start_writes_a_private_admin_key_and_answers_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let key_file = server.data_dir.join("admin.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.log().contains("admin key written to"));
    for path in ["/healthz", "/readyz"] {
        let r = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = server
        .admin(Method::GET, "/api/v1/keys")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let keys: serde_json::Value = r.json().await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["role"], "admin");
    assert!(keys[0].get("key").is_none(), "secrets are never listed");
}

#[tokio::test]
async fn the_admin_key_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "operator-chosen-secret-0123456789";
    let opts = Options {
        env: vec![("WATTLINE_ADMIN_KEY".into(), secret.into())],
        ..Options::default()
    };
    let mut server = Server::start_with(dir.path(), opts.clone()).await;
    assert_eq!(server.admin, secret);
    server.terminate();
    // A restart with the same variable keeps working, and lists one key.
    let server = Server::start_with(dir.path(), opts).await;
    let r = server
        .with_key(secret, Method::GET, "/api/v1/keys")
        .send()
        .await
        .unwrap();
    let keys: serde_json::Value = r.json().await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
}

#[test]
fn bad_configuration_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        ("[ingest]\nmax_body_byte = 5\n", "max_body_byte"),
        ("[retention]\nraw = \"ninety days\"\n", "retention.raw"),
        ("[smtp]\ntls = \"ssl\"\n", "smtp.tls"),
        ("[query]\nmax_rows = -1\n", "query.max_rows"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wattline"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{toml:?}: {stderr}");
    }
}

#[tokio::test]
async fn flags_win_over_environment_and_file() {
    let dir = tempfile::tempdir().unwrap();
    // The file and the environment name other data directories; the flag
    // given by the harness must win.
    let opts = Options {
        config: Some(format!(
            "[server]\ndata_dir = \"{}\"\n",
            dir.path().join("from-file").display()
        )),
        env: vec![(
            "WATTLINE_DATA_DIR".into(),
            dir.path().join("from-env").display().to_string(),
        )],
    };
    let server = Server::start_with(dir.path(), opts).await;
    assert!(server.data_dir.join("wal.redb").exists());
    assert!(!dir.path().join("from-file").exists());
    assert!(!dir.path().join("from-env").exists());
}

#[tokio::test]
async fn an_example_config_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/wattline.toml"
    ))
    .unwrap();
    // The shipped file points at /var/lib/wattline; the harness's
    // --data-dir flag overrides it.
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(shipped),
            ..Options::default()
        },
    )
    .await;
    server.assert_alive().await;
}

#[tokio::test]
async fn metrics_show_per_route_latency_and_ingest_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    let r = server
        .post_json(&serde_json::json!({"readings": [reading("s", t, 1.0)]}))
        .await;
    assert_eq!(r.status(), 202);
    let text = server.metrics().await;
    assert!(text.contains(
        "wattline_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/readings\",status=\"202\""
    ));
    assert!(text.contains("wattline_readings_ingested_total 1"));
    assert!(text.contains("wattline_wal_bytes"));
}

#[tokio::test]
async fn metrics_can_require_an_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some("[metrics]\nrequire_auth = true\n".into()),
            ..Options::default()
        },
    )
    .await;
    let r = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server.admin(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// SIGTERM while a request is half sent: the request still completes and is
/// durable, and the process exits 0 well within 10 s.
#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    let body = serde_json::json!({"readings": [reading("s", t, 7.0)]}).to_string();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/readings HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.admin,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    crate::support::signal(server.pid(), libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let (status, took) = server.terminate_wait();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(10));

    let server = Server::start(dir.path()).await;
    assert_eq!(server.readings("s").await.len(), 1);
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): the daemon says READY=1
/// once it serves readings (recovery done), pings the watchdog at half its
/// interval, and says STOPPING=1 on SIGTERM. The test is the manager: it
/// owns the notification socket.
#[tokio::test]
async fn tells_systemd_when_ready_pings_the_watchdog_and_says_when_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut server = Server::start_with(
        dir.path(),
        Options {
            config: None,
            env: vec![
                ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
                ("WATCHDOG_USEC".into(), "200000".into()),
            ],
        },
    )
    .await;
    let (first, mut sock) = next_notification(sock).await;
    assert!(first.starts_with("READY=1\nSTATUS=serving on "), "{first}");
    let r = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ready before READY=1 was sent");
    // Watchdog pings, every 100 ms.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let (m, s) = next_notification(sock).await;
        assert_eq!(m, "WATCHDOG=1");
        sock = s;
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _) = server.terminate();
    assert!(status.success());
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen.iter().any(|m| m == "STOPPING=1"), "{seen:?}");
}

/// The next datagram on `sock` (waiting as its read timeout allows).
async fn next_notification(
    sock: std::os::unix::net::UnixDatagram,
) -> (String, std::os::unix::net::UnixDatagram) {
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification in time");
        (String::from_utf8_lossy(&buf[..n]).into_owned(), sock)
    })
    .await
    .unwrap()
}
