//! Background maintenance of the reading store, in two loops that run side
//! by side: one flushes memtables to chunk files every
//! `storage.flush_interval` (sooner when memory holds [`MAX_HOT_READINGS`])
//! and merges days whose files overlap or have become many; the other
//! brings the rollups up to date every second and drops chunk files past
//! `retention.raw` and rollups past `retention.rollups`.
//!
//! Each step runs on a blocking thread and ends with one small manifest
//! commit; ingestion and queries go on meanwhile. A failed step is logged
//! and retried after a back-off that doubles up to a minute: nothing is
//! lost, the data stays in the write-ahead until a flush succeeds, and the
//! store refuses new batches (503) once too many wait in memory. Flush and
//! compaction back off separately, so a day that cannot be compacted does
//! not hold up flushing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wattline_storage::ReadingStore;

/// Readings in the active memtable that trigger a flush before the interval.
const MAX_HOT_READINGS: u64 = wattline_storage::MAX_HOT_READINGS / 2;
const TICK: Duration = Duration::from_secs(1);
const RETENTION_EVERY: Duration = Duration::from_secs(600);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub(crate) struct Schedule {
    pub(crate) flush_interval: Duration,
    pub(crate) retention_raw: Duration,
    pub(crate) retention_rollups: Duration,
}

/// When a step that failed may run again.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    fn record<T, E: std::fmt::Display>(&mut self, step: &str, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => *self = Backoff::default(),
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let delay = TICK
                    .saturating_mul(1 << self.failures.min(6))
                    .min(MAX_BACKOFF);
                self.not_before = Some(Instant::now() + delay);
                tracing::error!(error = %e, retry_in = ?delay, "{step} failed");
            }
        }
    }
}

/// Runs a blocking store step; a panicked task counts as a failure.
async fn blocking<T: Send + 'static>(
    store: &Arc<ReadingStore>,
    step: impl FnOnce(&ReadingStore) -> wattline_storage::Result<T> + Send + 'static,
) -> Result<T, String> {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || step(&s)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the task failed: {e}")),
    }
}

/// Runs the two maintenance loops until `stop`: flushing (with
/// compaction) and rollups (with retention). They run side by side, so a
/// long rollup catch-up never delays a flush: memory is bounded by the
/// flush trigger, not by how far behind the rollups are.
pub(crate) async fn run(store: Arc<ReadingStore>, schedule: Schedule, stop: watch::Receiver<bool>) {
    tokio::join!(
        flush_loop(store.clone(), schedule.flush_interval, stop.clone()),
        rollup_loop(store, &schedule, stop),
    );
}

/// Waits a tick; false once the daemon stops or the store has failed.
async fn tick(store: &ReadingStore, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(TICK) => {}
        _ = stop.wait_for(|s| *s) => return false,
    }
    store.fatal().is_none()
}

async fn flush_loop(
    store: Arc<ReadingStore>,
    flush_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_flush = Instant::now();
    let (mut flush_backoff, mut compact_backoff) = (Backoff::default(), Backoff::default());
    while tick(&store, &mut stop).await {
        let due = last_flush.elapsed() >= flush_interval || store.active_len() >= MAX_HOT_READINGS;
        if !due || !flush_backoff.ready(Instant::now()) {
            continue;
        }
        let flushed = blocking(&store, |s| s.flush()).await;
        flush_backoff.record("flush", &flushed);
        if let Ok(report) = flushed {
            last_flush = Instant::now();
            tracing::debug!(
                readings = report.readings,
                chunks = report.chunks_written,
                "flushed"
            );
            if compact_backoff.ready(Instant::now()) {
                let merged = blocking(&store, |s| s.compact(false)).await;
                compact_backoff.record("compaction", &merged);
            }
        }
    }
}

async fn rollup_loop(
    store: Arc<ReadingStore>,
    schedule: &Schedule,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_retention: Option<Instant> = None;
    let (mut rollup_backoff, mut retention_backoff) = (Backoff::default(), Backoff::default());
    while tick(&store, &mut stop).await {
        // Rollups catch up every tick (seconds behind ingestion), and
        // always before retention can drop raw readings behind them.
        if rollup_backoff.ready(Instant::now()) {
            let caught_up = blocking(&store, |s| s.catch_up_rollups()).await;
            rollup_backoff.record("rollup step", &caught_up);
        }
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY)
            && retention_backoff.ready(Instant::now())
        {
            last_retention = Some(Instant::now());
            let cutoff = wattline_storage::now_ms()
                .saturating_sub(schedule.retention_raw.as_millis() as i64);
            let rollup_cutoff = wattline_storage::now_ms()
                .saturating_sub(schedule.retention_rollups.as_millis() as i64);
            let dropped = blocking(&store, move |s| {
                s.rollups().drop_expired(rollup_cutoff)?;
                s.drop_expired(cutoff)
            })
            .await;
            retention_backoff.record("retention", &dropped);
            if let Ok(n @ 1..) = dropped {
                tracing::info!(
                    files = n,
                    "retention dropped chunk files past retention.raw"
                );
            }
        }
    }
}
