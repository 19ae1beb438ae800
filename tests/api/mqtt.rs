//! MQTT ingestion against Debian's mosquitto broker, started here on a
//! port of its own: every payload format, a broker restart, the daemon
//! killed between receiving and committing (the broker sends again;
//! nothing lost, nothing doubled), malformed messages counted.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::support::{Options, Server};

/// A mosquitto broker with persistence, on a free port.
struct Broker {
    child: Option<Child>,
    port: u16,
    conf: std::path::PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = dir.join("mosquitto");
        std::fs::create_dir_all(&store).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nlog_dest stderr\n\
                 max_inflight_messages 0\nmax_queued_messages 0\n",
                store.display()
            ),
        )
        .unwrap();
        let mut broker = Broker {
            child: None,
            port,
            conf,
        };
        broker.run();
        broker
    }

    fn run(&mut self) {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is installed (Debian's mosquitto package)");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (mosquitto saves its sessions), then start again.
    fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::support::signal(c.id(), libc::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Publishes each `(topic, payload)` at QoS 1 and waits for the broker's
/// acknowledgements.
async fn publish(port: u16, messages: &[(&str, String)]) {
    let mut options = MqttOptions::new(format!("publisher-{}", rand_suffix()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let expected = messages.len();
    let poller = tokio::spawn(async move {
        let mut acked = 0;
        while acked < expected {
            let event = tokio::time::timeout(Duration::from_secs(20), eventloop.poll())
                .await
                .expect("broker answers")
                .expect("publisher connected");
            if let Event::Incoming(Packet::PubAck(_)) = event {
                acked += 1;
            }
        }
        eventloop
    });
    for (topic, payload) in messages {
        client
            .publish(
                *topic,
                QoS::AtLeastOnce,
                false,
                payload.clone().into_bytes(),
            )
            .await
            .unwrap();
    }
    let mut eventloop = tokio::time::timeout(Duration::from_secs(60), poller)
        .await
        .expect("the broker acknowledged every message")
        .unwrap();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn config(port: u16) -> Options {
    Options {
        config: Some(format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "wattline-test"

[[mqtt.topics]]
pattern = "plain/+"
format = "number"
sensor = "{{1}}"

[[mqtt.topics]]
pattern = "meters/+/json"
format = "json"
value_path = "energy.kwh"
ts_path = "ts"
sensor = "{{1}}"

[[mqtt.topics]]
pattern = "tele/+/SENSOR"
format = "tasmota"
sensor = "tasmota-{{1}}"

[[mqtt.topics]]
pattern = "+/status/switch:0"
format = "shelly"
sensor = "{{1}}"

[[mqtt.topics]]
pattern = "emonhub/rx/+/values"
format = "emonhub"
field = 2
scale = 0.001
sensor = "emon-{{1}}"
"#
        )),
        ..Options::default()
    }
}

/// Waits until the daemon is subscribed.
async fn wait_connected(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log().contains("MQTT connected") {
        assert!(
            Instant::now() < deadline,
            "no MQTT connection:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// `(sensor, ts ms, value)` of every reading, once `n` are there.
async fn wait_readings(server: &Server, n: usize) -> Vec<(String, i64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = server
            .sql("SELECT sensor_id, CAST(ts AS BIGINT) AS ms, value FROM readings ORDER BY sensor_id, ts")
            .await;
        if rows.len() >= n || Instant::now() > deadline {
            return rows
                .iter()
                .map(|r| {
                    (
                        r[0].as_str().unwrap().to_owned(),
                        r[1].as_i64().unwrap(),
                        r[2].as_f64().unwrap(),
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sensors(server: &Server, ids: &[&str]) {
    server.create_tenant("t").await;
    server.create_building("t", "b").await;
    for id in ids {
        server.create_sensor_with("b", json!({"id": id})).await;
    }
}

fn minute_ms() -> i64 {
    crate::support::now_minute_ms() - 120_000
}

fn metric(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A misspelt `mqtt.tenant` would reject every message; the daemon says
/// so at start (no broker needed: it is retried in the background).
#[tokio::test]
async fn an_unknown_mqtt_tenant_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = config(port);
    let with_tenant = |config: &str, tenant: &str| {
        config.replacen(
            "client_id = \"wattline-test\"",
            &format!("client_id = \"wattline-test\"\ntenant = \"{tenant}\""),
            1,
        )
    };
    let base = options.config.take().unwrap();
    options.config = Some(with_tenant(&base, "tennant-typo"));
    let server = Server::start_with(dir.path(), options).await;
    assert!(
        server.log().contains("mqtt.tenant names no tenant yet"),
        "{}",
        server.log()
    );
    assert!(server.log().contains("tennant-typo"));
    drop(server);

    // A tenant that exists: no warning.
    let dir = tempfile::tempdir().unwrap();
    let mut options = config(port);
    options.config = Some(with_tenant(&base, "t"));
    let server = Server::start(dir.path()).await;
    server.create_tenant("t").await;
    drop(server);
    let server = Server::start_with(dir.path(), options).await;
    assert!(
        !server.log().contains("names no tenant"),
        "{}",
        server.log()
    );
}

#[tokio::test]
#[ignore = "needs Debian's mosquitto broker; CI installs it"]
async fn each_payload_format_is_stored_once_and_bad_messages_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let server = Server::start_with(dir.path(), config(broker.port)).await;
    sensors(
        &server,
        &["p1", "m1", "tasmota-plug", "shellyplus1pm-a", "emon-5"],
    )
    .await;
    wait_connected(&server).await;
    let t = minute_ms();
    let secs = t / 1000;
    let local = chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S");
    let json_body = json!({"energy": {"kwh": 0.25}, "ts": secs}).to_string();
    publish(
        broker.port,
        &[
            ("meters/m1/json", json_body.clone()),
            // The same message again: stored once.
            ("meters/m1/json", json_body),
            (
                "tele/plug/SENSOR",
                format!(r#"{{"Time":"{local}","ENERGY":{{"Total":12.5,"Power":40}}}}"#),
            ),
            (
                "shellyplus1pm-a/status/switch:0",
                format!(r#"{{"id":0,"aenergy":{{"total":1500.0,"minute_ts":{secs}}}}}"#),
            ),
            ("emonhub/rx/5/values", "10,250,3".into()),
            ("plain/p1", "3.5".into()),
            // Malformed and unknown-sensor messages.
            ("plain/p1", "three".into()),
            ("tele/plug/SENSOR", "{not json".into()),
            ("plain/nosuchsensor", "1".into()),
        ],
    )
    .await;
    let rows = wait_readings(&server, 5).await;
    let by_sensor: Vec<(&str, f64)> = rows.iter().map(|(s, _, v)| (s.as_str(), *v)).collect();
    assert_eq!(
        by_sensor,
        vec![
            ("emon-5", 0.25),
            ("m1", 0.25),
            ("p1", 3.5),
            ("shellyplus1pm-a", 1.5),
            ("tasmota-plug", 12.5),
        ],
        "{rows:?}"
    );
    for (sensor, ts, _) in &rows {
        if ["m1", "shellyplus1pm-a", "tasmota-plug"].contains(&sensor.as_str()) {
            assert_eq!(*ts, t, "{sensor}: the payload's own time");
        }
    }
    // Nothing more arrives later (the duplicate was one reading).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wait_readings(&server, 6).await.len(), 5);
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "wattline_mqtt_messages_total{result=\"malformed\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "wattline_mqtt_messages_total{result=\"rejected\"}"
        ),
        1.0
    );
    assert_eq!(metric(&metrics, "wattline_mqtt_connected"), 1.0);
    let log = server.log();
    assert!(log.contains("plain/nosuchsensor"), "the topic is logged");
    server.assert_alive().await;
}

#[tokio::test]
#[ignore = "needs Debian's mosquitto broker; CI installs it"]
async fn a_kill_before_commit_loses_nothing_and_a_broker_restart_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let mut crashing = config(broker.port);
    crashing
        .env
        .push(("WATTLINE_MQTT_CRASH_BEFORE_COMMIT".into(), "1".into()));
    let mut server = Server::start_with(dir.path(), crashing).await;
    sensors(&server, &["m1"]).await;
    wait_connected(&server).await;
    let t = minute_ms();
    let message = |ts: i64, kwh: f64| {
        (
            "meters/m1/json",
            json!({"energy": {"kwh": kwh}, "ts": ts / 1000}).to_string(),
        )
    };
    publish(broker.port, &[message(t - 60_000, 1.0), message(t, 2.0)]).await;
    // Received, then killed before the write-ahead commit.
    let (status, _) = server.terminate_wait();
    assert!(!status.success(), "the crash hook aborted the daemon");
    drop(server);

    let server = Server::start_with(dir.path(), config(broker.port)).await;
    // The broker sends the unacknowledged messages again.
    let rows = wait_readings(&server, 2).await;
    let got: Vec<(i64, f64)> = rows.iter().map(|(_, ts, v)| (*ts, *v)).collect();
    assert_eq!(got, vec![(t - 60_000, 1.0), (t, 2.0)]);

    // The broker restarts; the daemon reconnects and goes on.
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await;
        if metric(&metrics, "wattline_mqtt_connected") == 1.0
            && metric(&metrics, "wattline_mqtt_connection_errors_total") >= 1.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnect: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(broker.port, &[message(t + 60_000, 3.0), message(t, 2.0)]).await;
    let rows = wait_readings(&server, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(wait_readings(&server, 4).await.len(), 3);
    let v: Value = server.sql("SELECT sum(value) AS s FROM readings").await[0].clone();
    assert_eq!(v[0], 6.0);
}

/// A message without a time, committed but not acknowledged when the
/// daemon dies: the broker sends it again (DUP) and it keeps its first
/// stamp instead of becoming a second reading; a new message with the
/// same payload is a new reading.
#[tokio::test]
#[ignore = "needs Debian's mosquitto broker; CI installs it"]
async fn a_message_without_a_time_sent_again_after_its_commit_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut crashing = config(broker.port);
    crashing
        .env
        .push(("WATTLINE_MQTT_CRASH_AFTER_COMMIT".into(), "1".into()));
    let mut server = Server::start_with(dir.path(), crashing).await;
    sensors(&server, &["m1"]).await;
    wait_connected(&server).await;
    publish(broker.port, &[("plain/m1", "5.5".to_owned())]).await;
    // Committed, then killed before the acknowledgement.
    let (status, _) = server.terminate_wait();
    assert!(!status.success(), "the crash hook aborted the daemon");
    drop(server);

    let server = Server::start_with(dir.path(), config(broker.port)).await;
    wait_connected(&server).await;
    // Time for the broker's redelivery to be taken and committed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &server.metrics().await,
        "wattline_mqtt_messages_total{result=\"stored\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the broker sent nothing again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = wait_readings(&server, 1).await;
    assert_eq!(rows.len(), 1, "stored once: {rows:?}");
    assert_eq!(rows[0].2, 5.5);

    tokio::time::sleep(Duration::from_millis(5)).await;
    // A message that is no reading (no such sensor) is given no stamp.
    let messages = [
        ("plain/nosuch", "1".to_owned()),
        ("plain/m1", "5.5".to_owned()),
    ];
    publish(broker.port, &messages).await;
    let rows = wait_readings(&server, 2).await;
    assert_eq!(rows.len(), 2, "a new message is a new reading: {rows:?}");
    drop(server);
    let stamps = redb::Database::open(dir.path().join("data").join("mqtt.redb")).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&stamps).unwrap();
    let table = txn
        .open_table(redb::TableDefinition::<u16, [u8; 16]>::new("stamps"))
        .unwrap();
    assert_eq!(
        redb::ReadableTableMetadata::len(&table).unwrap(),
        2,
        "the two readings' stamps"
    );
}

#[tokio::test]
#[ignore = "needs Debian's mosquitto broker; CI installs it"]
async fn a_burst_with_no_inflight_limit_is_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    // The broker sends without waiting for acknowledgements (no in-flight
    // limit): the daemon must keep polling while it commits and acks.
    let broker = Broker::start(dir.path());
    let server = Server::start_with(dir.path(), config(broker.port)).await;
    sensors(&server, &["m1"]).await;
    wait_connected(&server).await;
    let t = minute_ms();
    let padding = "x".repeat(2000);
    let n = 8000i64;
    let messages: Vec<(&str, String)> = (0..n)
        .map(|i| {
            let body = json!({"energy": {"kwh": 1.0}, "ts": (t - i * 1000) / 1000, "pad": padding});
            ("meters/m1/json", body.to_string())
        })
        .collect();
    publish(broker.port, &messages).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = server.sql("SELECT count(*) FROM readings").await[0][0]
            .as_i64()
            .unwrap();
        if v == n {
            break;
        }
        assert!(Instant::now() < deadline, "{v} of {n} stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "wattline_mqtt_connected"),
        1.0,
        "{metrics}"
    );
}
