//! Limits on ingestion (SPEC 4): sizes (413), media types (415), rates
//! (429 with Retry-After), the request timeout (408) and a full disk (507).
//! Each refused request stores nothing and the daemon keeps serving.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Options, Server, error_code, now_minute_ms, reading};

fn with_config(toml: &str) -> Options {
    Options {
        config: Some(toml.into()),
        ..Options::default()
    }
}

fn batch(sensor: &str, start: i64, n: usize) -> Value {
    json!({"readings": (0..n).map(|i| reading(sensor, start - i as i64 * 60_000, 1.0)).collect::<Vec<_>>()})
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[ingest]\nmax_body_bytes = 4096\nmax_batch_readings = 10\n"),
    )
    .await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    let r = server.post_json(&batch("s", t, 11)).await;
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let r = server.post_json(&batch("s", t, 100)).await;
    assert_eq!(error_code(r).await.0, 413);
    let lines: String = (0..11)
        .map(|i| format!("e,sensor_id=s value_kwh=1 {}\n", t - i * 60_000))
        .collect();
    let r = server
        .admin(Method::POST, "/api/v1/write?precision=ms")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 413);
    assert!(server.readings("s").await.is_empty());
    assert_eq!(server.post_json(&batch("s", t, 10)).await.status(), 202);
    assert_eq!(server.readings("s").await.len(), 10);
}

#[tokio::test]
async fn unknown_content_types_are_415() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server.setup("t", "b", &["s"]).await;
    for ct in [None, Some("application/xml"), Some("text/plain")] {
        let mut req = server
            .admin(Method::POST, "/api/v1/readings")
            .body(batch("s", now_minute_ms(), 1).to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (415, "unsupported_media_type"),
            "{ct:?}"
        );
    }
}

#[tokio::test]
async fn the_per_key_reading_rate_is_limited_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[ingest]\nrate_limit_per_key = 100\n"),
    )
    .await;
    server.setup("t", "b", &["s"]).await;
    let key = server.create_key("ingest", Some("t")).await;
    let t = now_minute_ms();
    let send = |body: Value| {
        server
            .with_key(&key, Method::POST, "/api/v1/readings")
            .json(&body)
            .send()
    };
    assert_eq!(send(batch("s", t, 100)).await.unwrap().status(), 202);
    let r = send(batch("s", t - 6_000_000, 100)).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(r).await.1, "rate_limited");
    // Other keys have their own budget.
    assert_eq!(
        server
            .post_json(&batch("s", t - 9_000_000, 10))
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        send(batch("s", t - 6_000_000, 100)).await.unwrap().status(),
        202
    );
    assert_eq!(server.readings("s").await.len(), 200); // the admin batch overlaps the second one
}

#[tokio::test]
async fn the_per_address_request_rate_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with(dir.path(), with_config("[ingest]\nrate_limit_per_ip = 5\n")).await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    // Twenty requests at once: the bucket holds five, and refills at five
    // a second, so at most a couple more can pass while they arrive.
    let sends = (0..20).map(|i| server.post_json_owned(batch("s", t - i * 60_000, 1)));
    let answers = futures::future::join_all(sends).await;
    let mut accepted = 0;
    for r in &answers {
        match r.status().as_u16() {
            202 => accepted += 1,
            429 => assert!(r.headers().contains_key("retry-after")),
            other => panic!("unexpected {other}"),
        }
    }
    assert!((5..=7).contains(&accepted), "{accepted} accepted");
    assert_eq!(server.readings("s").await.len(), accepted);
    // Reads are not ingestion and are not limited by it.
    let r = server
        .admin(Method::GET, "/api/v1/sensors/s")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A client that stops sending its body gets 408 after
/// `server.request_timeout`, and other clients are served meanwhile.
#[tokio::test]
async fn a_stalled_body_times_out_with_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        with_config("[server]\nrequest_timeout = \"1s\"\n"),
    )
    .await;
    server.setup("t", "b", &["s"]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/readings HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"readings\":[",
        server.admin
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let other = server.post_json(&batch("s", now_minute_ms(), 1)).await;
    assert_eq!(other.status(), 202);
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut answer))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"));
}

/// A full disk answers 507, stores nothing half-written, and once space is
/// free again ingestion resumes. Uses a small tmpfs as the data directory.
#[tokio::test]
#[ignore = "needs root to mount a tmpfs; `.ci/run` runs it with --ignored"]
async fn a_full_disk_is_507_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root");
    let _unmount = Unmount(mnt.clone());

    let server =
        Server::start_with(&mnt, with_config("[ingest]\nmax_body_bytes = 10000000\n")).await;
    server.setup("t", "b", &["s"]).await;
    let t = now_minute_ms();
    // Fill the disk with a file outside wattline, leaving a little room.
    let filler = mnt.join("filler");
    let free = free_bytes(&mnt);
    std::fs::write(
        &filler,
        vec![1u8; (free as usize).saturating_sub(64 * 1024)],
    )
    .unwrap();

    let mut accepted = Vec::new();
    let mut saw_507 = false;
    for i in 0..200i64 {
        // Random-looking values defeat compression so the file must grow.
        let body = json!({"readings": (0..2000).map(|j| {
            let v = ((i * 7919 + j * 104_729) % 1_000_003) as f64 / 7.0;
            reading("s", t - (i * 2000 + j) * 1000, v)
        }).collect::<Vec<_>>()});
        let r = server.post_json(&body).await;
        match r.status().as_u16() {
            202 => accepted.push(i),
            507 => {
                let (_, code, _) = error_code(r).await;
                assert_eq!(code, "storage_full");
                saw_507 = true;
                break;
            }
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
    }
    assert!(saw_507, "the disk never filled");
    let stored = server.readings("s").await.len();
    assert_eq!(
        stored,
        accepted.len() * 2000,
        "only acknowledged batches are visible"
    );

    std::fs::remove_file(&filler).unwrap();
    let r = server
        .post_json(&json!({"readings": [reading("s", t + 1, 1.0)]}))
        .await;
    assert_eq!(r.status(), 202, "ingestion resumes once space is free");
    drop(server);
    let server = Server::start(&mnt).await;
    assert_eq!(server.readings("s").await.len(), accepted.len() * 2000 + 1);
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn free_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
