//! Background maintenance of the reading store: flush memtables to chunk
//! files every `storage.flush_interval` (sooner when memory holds
//! [`MAX_HOT_READINGS`]), merge days whose files overlap or have become
//! many, bring the rollups up to date every second, and drop chunk files
//! past `retention.raw` and rollups past `retention.rollups`.
//!
//! Each step runs on a blocking thread and ends with one small manifest
//! commit; ingestion and queries go on meanwhile. A failed step is logged
//! and retried at the next tick: nothing is lost, the data stays in the
//! write-ahead until a flush succeeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wattline_storage::ReadingStore;

/// Readings in the active memtable that trigger a flush before the interval.
const MAX_HOT_READINGS: u64 = 10_000_000;
const TICK: Duration = Duration::from_secs(1);
const RETENTION_EVERY: Duration = Duration::from_secs(600);

pub(crate) struct Schedule {
    pub(crate) flush_interval: Duration,
    pub(crate) retention_raw: Duration,
    pub(crate) retention_rollups: Duration,
}

pub(crate) async fn run(
    store: Arc<ReadingStore>,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_flush = Instant::now();
    let mut last_retention: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if last_flush.elapsed() >= schedule.flush_interval || store.active_len() >= MAX_HOT_READINGS
        {
            let s = store.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let flushed = s.flush()?;
                let merged = s.compact(false)?;
                Ok::<_, wattline_storage::Error>((flushed, merged))
            })
            .await;
            match outcome {
                Ok(Ok((flushed, merged))) => {
                    last_flush = Instant::now();
                    tracing::debug!(
                        readings = flushed.readings,
                        chunks = flushed.chunks_written,
                        merged,
                        "flushed"
                    );
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "flush failed; retrying at the next tick")
                }
                Err(e) => tracing::error!(error = %e, "flush task failed"),
            }
        }
        // Rollups catch up every tick (seconds behind ingestion), and
        // always before retention can drop raw readings behind them.
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.catch_up_rollups()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "rollup step failed; retrying at the next tick")
            }
            Err(e) => tracing::error!(error = %e, "rollup task failed"),
        }
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            last_retention = Some(Instant::now());
            let cutoff = wattline_storage::now_ms()
                .saturating_sub(schedule.retention_raw.as_millis() as i64);
            let rollup_cutoff = wattline_storage::now_ms()
                .saturating_sub(schedule.retention_rollups.as_millis() as i64);
            let s = store.clone();
            let dropped = tokio::task::spawn_blocking(move || {
                s.rollups().drop_expired(rollup_cutoff)?;
                s.drop_expired(cutoff)
            });
            match dropped.await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    files = n,
                    "retention dropped chunk files past retention.raw"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
                Err(e) => tracing::error!(error = %e, "retention task failed"),
            }
        }
    }
}
