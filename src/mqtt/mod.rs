//! MQTT ingestion: readings from meters and gateways that publish to a
//! broker (Tasmota, Shelly, emonPi, Zigbee2MQTT, ...).
//!
//! The appliance subscribes at QoS 1 with a persistent session (a fixed
//! client id, no clean start) and acknowledges a message only after its
//! reading is in the write-ahead (the same validation, deduplication and
//! durability as `POST /api/v1/readings`). A message received but not yet
//! committed when the process dies is sent again by the broker when the
//! appliance reconnects; since readings are keyed by sensor and time, one
//! that carries its time is stored once. A message that cannot become a
//! reading (no topic mapping, bad payload, unknown sensor) is counted,
//! logged with its topic, and acknowledged: sending it again would not
//! help. A lost broker connection is retried with backoff.
//!
//! The connection is polled without ever waiting for the write-ahead (so
//! keepalives go on and a lost connection is seen at once): received
//! messages wait in memory, at most [`QUEUE_BYTES`] of them. Past that, a
//! QoS 1 message is left unacknowledged and the broker is asked for it
//! again by reconnecting once the queue has drained; a QoS 0 message
//! (the broker never sends those twice) is dropped and counted.

mod config;
mod payload;
mod stamps;
mod topics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, Transport};
use tokio::sync::{mpsc, watch};
use wattline_storage::{Catalog, ReadingBatch, ReadingStore, now_ms};
use wattline_web::RawReading;

use stamps::{Changes, Stamps};

pub(crate) use config::{MqttSettings, RawMqtt, resolve};

/// Messages taken into one write-ahead commit at most.
const BATCH: usize = 1000;
/// Received messages (topic and payload bytes) held at most while they
/// wait for the write-ahead.
const QUEUE_BYTES: usize = 32 << 20;
/// The largest message taken (meter telemetry is a few hundred bytes).
const MAX_PACKET_BYTES: usize = 64 * 1024;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The time window readings must fall in, as on HTTP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub retention_raw: Duration,
    pub max_future: Duration,
}

/// Connects and ingests until `stop` turns true.
pub(crate) fn spawn(
    settings: MqttSettings,
    store: Arc<ReadingStore>,
    catalog: Arc<Catalog>,
    window: Window,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if let Some(tenant) = &settings.tenant
        && catalog.view().tenant(tenant).is_none()
    {
        // Tenants are created at run time, so this may be early, not wrong.
        tracing::warn!(tenant = %tenant, "mqtt.tenant names no tenant yet: every message is rejected until it is created");
    }
    let session = format!("{}:{}/{}", settings.host, settings.port, settings.client_id);
    let stamps = match Stamps::open(store.data_dir(), &session) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::error!(error = %e, file = stamps::FILE, "MQTT stamps unavailable: a message without a time that the broker sends again may be stored twice");
            None
        }
    };
    tokio::spawn(async move {
        // Room for a whole batch's acknowledgements and the subscriptions.
        let (client, eventloop) = AsyncClient::new(options(&settings), 2 * BATCH + 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue::default());
        let worker = tokio::spawn(ingest(
            rx,
            queue.clone(),
            client.clone(),
            Arc::new(settings.clone()),
            Sink {
                store,
                catalog,
                window,
            },
            stamps,
        ));
        tokio::select! {
            () = receive(eventloop, &client, &settings, tx, &queue) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        // Unacknowledged messages stay with the broker for the next start.
        let _ = client.try_disconnect();
        worker.abort();
    })
}

/// What waits between the connection and the write-ahead.
#[derive(Default)]
struct Queue {
    bytes: AtomicUsize,
    /// The connection (counted from 1) since which the broker holds the
    /// session: messages of earlier ones are never acknowledged (their
    /// packet ids may name other messages now) and get no stamps.
    session_from: AtomicU64,
    /// QoS 1 messages were left unacknowledged for lack of room.
    deferred: AtomicBool,
}

/// What the connection hands the ingest worker.
enum Incoming {
    /// A message, with the connection it came on.
    Message(Publish, u64),
    /// A QoS 1 message arriving for the first time was left for later
    /// for lack of room: its packet id's stamp has ended.
    Deferred(u16),
}

fn size_of(m: &Incoming) -> usize {
    match m {
        Incoming::Message(p, _) => p.topic.len() + p.payload.len(),
        Incoming::Deferred(_) => 0,
    }
}

fn options(s: &MqttSettings) -> MqttOptions {
    let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some((user, password)) = &s.credentials {
        o.set_credentials(user, password);
    }
    match &s.tls_ca {
        Some(ca) if ca.is_empty() => {
            o.set_transport(Transport::tls_with_default_config());
        }
        Some(ca) => {
            o.set_transport(Transport::tls(ca.clone(), None, None));
        }
        None => {}
    }
    o
}

/// Polls the connection: (re)subscribes on every connect, queues
/// messages for the ingest worker (never waiting for it), backs off after
/// errors.
async fn receive(
    mut eventloop: EventLoop,
    client: &AsyncClient,
    settings: &MqttSettings,
    tx: mpsc::UnboundedSender<Incoming>,
    queue: &Queue,
) {
    let mut backoff = Duration::from_millis(500);
    let mut connection = 0;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(host = %settings.host, port = settings.port, session_present = ack.session_present, "MQTT connected");
                metrics::gauge!("wattline_mqtt_connected").set(1.0);
                backoff = Duration::from_millis(500);
                connection += 1;
                if !ack.session_present {
                    queue.session_from.store(connection, Ordering::Release);
                }
                // A kept session keeps its subscriptions; subscribing again
                // would make the broker send its retained messages again.
                // At start they are renewed (the topics may have changed).
                if connection == 1 || !ack.session_present {
                    for t in &settings.topics {
                        if let Err(e) = client.try_subscribe(&t.pattern, QoS::AtLeastOnce) {
                            tracing::error!(pattern = %t.pattern, error = %e, "MQTT subscribe");
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let (pkid, first_time) = (p.pkid, p.qos != QoS::AtMostOnce && !p.dup);
                let message = Incoming::Message(p, connection);
                let size = size_of(&message);
                if queue.bytes.load(Ordering::Acquire) + size > QUEUE_BYTES {
                    let result = if pkid == 0 {
                        "dropped"
                    } else {
                        queue.deferred.store(true, Ordering::Release);
                        "deferred"
                    };
                    metrics::counter!("wattline_mqtt_messages_total", "result" => result)
                        .increment(1);
                    if first_time && tx.send(Incoming::Deferred(pkid)).is_err() {
                        return;
                    }
                    continue;
                }
                queue.bytes.fetch_add(size, Ordering::AcqRel);
                if tx.send(message).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics::gauge!("wattline_mqtt_connected").set(0.0);
                metrics::counter!("wattline_mqtt_connection_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        // Deferred messages: once the queue is empty, reconnect so the
        // broker sends what is still unacknowledged.
        if queue.bytes.load(Ordering::Acquire) == 0 && queue.deferred.swap(false, Ordering::AcqRel)
        {
            tracing::info!("MQTT: reconnecting to receive the messages deferred for lack of room");
            let _ = client.try_disconnect();
        }
    }
}

/// Where readings go, and the window they must fall in.
struct Sink {
    store: Arc<ReadingStore>,
    catalog: Arc<Catalog>,
    window: Window,
}

/// Turns messages into readings, commits them, then acknowledges them.
async fn ingest(
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    queue: Arc<Queue>,
    client: AsyncClient,
    settings: Arc<MqttSettings>,
    sink: Sink,
    stamps: Option<Arc<Stamps>>,
) {
    let mut log = LogBudget::default();
    let mut stamps_from = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let received = Instant::now();
        let now = now_ms();
        let taken: usize = batch.iter().map(size_of).sum();
        // The broker dropped the session: its stamps are of no use.
        let session_from = queue.session_from.load(Ordering::Acquire);
        if let Some(stamps) = stamps.clone().filter(|_| session_from > stamps_from) {
            blocking(move || stamps.forget()).await;
            stamps_from = session_from;
        }
        let mut changes = Changes::default();
        let mut readings = Vec::with_capacity(batch.len());
        // Per reading: its message, and whether it was stamped here.
        let mut sources = Vec::with_capacity(batch.len());
        // Messages of a session the broker dropped are stored but never
        // stamped or acknowledged; `current` are the others.
        let mut current = Vec::with_capacity(batch.len());
        for m in &batch {
            let (p, in_session) = match m {
                Incoming::Message(p, connection) => (p, *connection >= session_from),
                Incoming::Deferred(pkid) => {
                    if let Some(stamps) = &stamps {
                        changes.end(stamps, *pkid);
                    }
                    continue;
                }
            };
            if in_session {
                current.push(p);
            }
            let time = match &stamps {
                Some(stamps) if in_session => {
                    changes.time_for(stamps, (p.pkid, p.dup), &p.topic, &p.payload, now)
                }
                _ => now,
            };
            match decode(&settings, &p.topic, &p.payload, time) {
                Ok(r) => {
                    sources.push((p, in_session && r.ts_ms == time));
                    readings.push(r);
                }
                Err((result, reason)) => {
                    metrics::counter!("wattline_mqtt_messages_total", "result" => result)
                        .increment(1);
                    log.warn(&p.topic, &reason);
                }
            }
        }
        let oldest = now.saturating_sub(millis(sink.window.retention_raw));
        let newest = now.saturating_add(millis(sink.window.max_future));
        let (valid, rejected) = wattline_web::check_readings(
            readings,
            settings.tenant.as_deref(),
            &sink.catalog.view(),
            oldest,
            newest,
        );
        metrics::counter!("wattline_mqtt_messages_total", "result" => "rejected")
            .increment(rejected.len() as u64);
        let rejected: std::collections::HashMap<usize, String> = rejected.into_iter().collect();
        for (i, reason) in &rejected {
            let topic = sources.get(*i).map_or("", |(p, _)| p.topic.as_str());
            log.warn(topic, reason);
        }
        // Only readings get stamps: what is refused takes no room.
        for (i, (p, stamped)) in sources.iter().enumerate() {
            if *stamped && p.pkid != 0 && !rejected.contains_key(&i) {
                changes.keep(p.pkid, &p.topic, &p.payload, now);
            }
        }
        if let Some(stamps) = stamps.clone().filter(|_| !changes.is_empty()) {
            blocking(move || stamps.apply(&changes)).await;
        }
        let stored = valid.len();
        if stored > 0 {
            crash_hook("WATTLINE_MQTT_CRASH_BEFORE_COMMIT");
            let lag_ms = valid.iter().map(|r| now - r.ts_ms).max().unwrap_or(0);
            commit(&sink.store, valid).await;
            crash_hook("WATTLINE_MQTT_CRASH_AFTER_COMMIT");
            metrics::gauge!("wattline_mqtt_lag_seconds").set(lag_ms.max(0) as f64 / 1000.0);
            metrics::counter!("wattline_mqtt_messages_total", "result" => "stored")
                .increment(stored as u64);
            metrics::counter!("wattline_readings_ingested_total").increment(stored as u64);
        }
        queue.bytes.fetch_sub(taken, Ordering::AcqRel);
        for p in current {
            ack(&client, p).await;
        }
        metrics::histogram!("wattline_mqtt_commit_seconds")
            .record(received.elapsed().as_secs_f64());
    }
}

/// Acknowledges `p` through the request channel the connection drains;
/// if it stays full (no connection), the broker sends `p` again later.
async fn ack(client: &AsyncClient, p: &Publish) {
    for _ in 0..1000 {
        match client.try_ack(p) {
            Ok(()) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    tracing::warn!(topic = %p.topic, "MQTT acknowledgement not sent; the broker will send it again");
}

/// A message as a reading, or (result label, reason) why it is none.
fn decode(
    settings: &MqttSettings,
    topic: &str,
    payload: &[u8],
    now: i64,
) -> Result<RawReading, (&'static str, String)> {
    let (mapping, captures) = settings
        .topics
        .iter()
        .find_map(|t| topics::matches(&t.pattern, topic).map(|c| (t, c)))
        .ok_or(("unmatched", "no [[mqtt.topics]] pattern matches".to_owned()))?;
    let sensor_id = topics::sensor_id(&mapping.sensor, &captures).map_err(|e| ("malformed", e))?;
    let sample = payload::parse(&mapping.format, payload, now).map_err(|e| ("malformed", e))?;
    Ok(RawReading {
        sensor_id,
        ts_ms: sample.ts_ms,
        value_kwh: sample.value * mapping.scale,
    })
}

/// Appends until it is durable; a failing write-ahead is retried (the
/// messages stay unacknowledged meanwhile, so the broker keeps them).
async fn commit(store: &ReadingStore, readings: Vec<wattline_storage::Reading>) {
    let mut wait = Duration::from_millis(200);
    loop {
        match store
            .append(ReadingBatch {
                readings: readings.clone(),
            })
            .await
        {
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?wait, "MQTT readings not stored");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Tests only (debug builds): dies where `env` is set, before or after
/// the commit of readings received (never acknowledged).
fn crash_hook(env: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(env).is_some() {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = env;
}

/// Runs a stamps operation off the runtime's threads; a failure is
/// logged (a stamp lost can only store a message sent again twice).
async fn blocking(f: impl FnOnce() -> Result<(), redb::Error> + Send + 'static) {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "MQTT stamps not written"),
        Err(e) => tracing::error!(error = %e, "MQTT stamps task failed"),
    }
}

/// At most ten warnings a minute, then a count of those left out.
#[derive(Default)]
struct LogBudget {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogBudget {
    fn warn(&mut self, topic: &str, reason: &str) {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) > Duration::from_secs(60))
        {
            if self.suppressed > 0 {
                tracing::warn!(
                    count = self.suppressed,
                    "more MQTT messages were not stored"
                );
            }
            *self = Self {
                window_start: Some(now),
                ..Self::default()
            };
        }
        if self.logged < 10 {
            self.logged += 1;
            tracing::warn!(topic, reason, "MQTT message not stored");
        } else {
            self.suppressed += 1;
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
