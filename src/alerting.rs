//! The alert scheduler: one evaluation pass over every enabled rule every
//! `alerts.interval`, on a blocking thread. Delivery is apart (see
//! [`crate::delivery`]): a mail server that is down delays mail, never a
//! pass.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use wattline_storage::{AlertStore, EvalSettings, ReadingStore};

pub(crate) struct AlertSchedule {
    pub(crate) interval: Duration,
    pub(crate) lookback: Duration,
    pub(crate) renotify: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs passes until `stop`; after a pass with events, wakes the
/// delivery loops in `wake`.
pub(crate) async fn run(
    alerts: Arc<AlertStore>,
    store: Arc<ReadingStore>,
    schedule: AlertSchedule,
    wake: Vec<Arc<Notify>>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = EvalSettings {
        lookback_ms: ms(schedule.lookback),
        renotify_ms: ms(schedule.renotify),
        // Readings of a window that just ended are often still on their
        // way; the rollup step follows within a second or two.
        settle_ms: ms(schedule.interval.min(Duration::from_secs(60))).max(2_000),
    };
    let mut tick = tokio::time::interval(schedule.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (a, s) = (alerts.clone(), store.clone());
        let pass = tokio::task::spawn_blocking(move || {
            a.evaluate(
                wattline_storage::now_ms(),
                s.rollups(),
                s.last_seen(),
                s.catalog(),
                &settings,
            )
        })
        .await;
        match pass {
            Ok(Ok(report)) => {
                if !report.events.is_empty() {
                    tracing::info!(
                        rules = report.rules,
                        events = report.events.len(),
                        "alert pass recorded events"
                    );
                    wake.iter().for_each(|w| w.notify_one());
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "alert pass failed; retried next interval"),
            Err(e) => tracing::error!(error = %e, "alert pass panicked; retried next interval"),
        }
    }
}
