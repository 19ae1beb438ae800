//! Delivery of alert events from the durable outbox: mail (one message per
//! address per round, holding all its due events) and webhooks (one JSON
//! POST per event). Mail and webhooks run as separate loops, so a webhook
//! that hangs never holds up mail, and each has a short timeout.
//!
//! An outbox row is removed only after the recipient took the event; a
//! failure reschedules it with exponential backoff and jitter, and a
//! permanent refusal (SMTP 5xx, HTTP 4xx other than 408/429) or
//! [`MAX_ATTEMPTS`] failures mark it failed for good (kept, and counted).
//! A crash between acceptance and removal sends again, with the same
//! `Message-ID` so the receiving side can drop the copy.

mod mail;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use wattline_storage::{AlertStore, Catalog, Delivery, Due, Recipient};

pub(crate) use mail::{MailSettings, Mailer};
pub(crate) use webhook::Webhooks;

/// After this many failures a delivery is given up (with the 1 h cap,
/// about a day of trying).
const MAX_ATTEMPTS: u32 = 30;
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// How often due rows are looked for when nothing wakes the loop.
const POLL: Duration = Duration::from_secs(1);

/// How one attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Delivered,
    /// Worth trying again later.
    Transient(String),
    /// The recipient refused for good.
    Permanent(String),
}

/// The next state of a row after `outcome` (`None`: remove it), retried
/// `delay_ms` from `now_ms`.
fn next_state(old: &Delivery, outcome: &Outcome, now_ms: i64, delay_ms: i64) -> Option<Delivery> {
    let attempts = old.attempts.saturating_add(1);
    let (failed, error) = match outcome {
        Outcome::Delivered => return None,
        Outcome::Transient(e) => (attempts >= MAX_ATTEMPTS, e),
        Outcome::Permanent(e) => (true, e),
    };
    Some(Delivery {
        attempts,
        next_ms: now_ms + delay_ms,
        failed,
        last_error: Some(error.clone()),
    })
}

/// Exponential backoff from [`FIRST_RETRY`] up to [`MAX_RETRY`], with
/// +-25% jitter so many failing rows do not retry in step.
fn backoff_ms(attempts: u32) -> i64 {
    let base = FIRST_RETRY
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_RETRY)
        .as_millis() as f64;
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let jitter = 0.75 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 0.5;
    (base * jitter) as i64
}

#[derive(Clone, Copy, PartialEq)]
enum Channel {
    Mail,
    Webhook,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Mail => "email",
            Channel::Webhook => "webhook",
        }
    }

    fn takes(self, r: &Recipient) -> bool {
        matches!(
            (self, r),
            (Channel::Mail, Recipient::Email(_)) | (Channel::Webhook, Recipient::Webhook(_))
        )
    }
}

/// Due rows of `channel`.
async fn due(alerts: &Arc<AlertStore>, channel: Channel) -> Vec<Due> {
    let a = alerts.clone();
    match tokio::task::spawn_blocking(move || a.due(wattline_storage::now_ms())).await {
        Ok(Ok(rows)) => rows
            .into_iter()
            .filter(|d| channel.takes(&d.recipient))
            .collect(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the alert outbox failed");
            vec![]
        }
        Err(_) => vec![],
    }
}

/// Records the outcomes of one message (or one POST) and counts them. The
/// rows retry together, at one time, so a mail's events stay one mail.
async fn settle(alerts: &Arc<AlertStore>, channel: Channel, results: Vec<(Due, Outcome)>) {
    let now = wattline_storage::now_ms();
    let tries = results
        .iter()
        .map(|(d, _)| d.delivery.attempts)
        .max()
        .unwrap_or(0);
    let delay = backoff_ms(tries.saturating_add(1));
    let mut rows = Vec::with_capacity(results.len());
    for (d, outcome) in &results {
        let state = next_state(&d.delivery, outcome, now, delay);
        let label = match (&state, outcome) {
            (None, _) => "delivered",
            (Some(s), _) if s.failed => "failed",
            _ => "retry",
        };
        if let Outcome::Transient(e) | Outcome::Permanent(e) = outcome {
            tracing::warn!(
                channel = channel.name(),
                event = d.event.event_id,
                attempt = d.delivery.attempts + 1,
                outcome = label,
                error = %e,
                "alert delivery did not go through"
            );
        }
        metrics::counter!("wattline_alert_deliveries_total", "channel" => channel.name(), "outcome" => label)
            .increment(1);
        rows.push((d.event.event_id, d.recipient.clone(), state));
    }
    let a = alerts.clone();
    match tokio::task::spawn_blocking(move || a.settle(&rows)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "recording alert deliveries failed; they are sent again")
        }
        Err(_) => {}
    }
    let a = alerts.clone();
    if let Ok(Ok(depth)) = tokio::task::spawn_blocking(move || a.outbox_depth()).await {
        metrics::gauge!("wattline_alert_outbox_depth").set(depth as f64);
    }
}

/// Waits for the next round: a wake-up, the poll interval, or stop (true).
async fn pause(wake: &Notify, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = wake.notified() => false,
        _ = tokio::time::sleep(POLL) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// The mail loop: each round, one message per address with all its due
/// events.
pub(crate) async fn run_mail(
    alerts: Arc<AlertStore>,
    catalog: Arc<Catalog>,
    mailer: Mailer,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let rows = due(&alerts, Channel::Mail).await;
        let mut by_address: BTreeMap<String, Vec<Due>> = BTreeMap::new();
        for d in rows {
            if let Recipient::Email(a) = &d.recipient {
                by_address.entry(a.clone()).or_default().push(d);
            }
        }
        for (address, group) in by_address {
            let outcome = mailer.send(&catalog, &address, &group).await;
            let results = group
                .into_iter()
                .map(|d| {
                    let o = match &outcome {
                        Outcome::Delivered => Outcome::Delivered,
                        Outcome::Transient(e) => Outcome::Transient(e.clone()),
                        Outcome::Permanent(e) => Outcome::Permanent(e.clone()),
                    };
                    (d, o)
                })
                .collect();
            settle(&alerts, Channel::Mail, results).await;
        }
        if pause(&wake, &mut stop).await {
            return;
        }
    }
}

/// The webhook loop: each due event POSTed, a few at once.
pub(crate) async fn run_webhooks(
    alerts: Arc<AlertStore>,
    hooks: Webhooks,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    loop {
        let rows = due(&alerts, Channel::Webhook).await;
        let results: Vec<(Due, Outcome)> = futures::stream::iter(rows)
            .map(|d| {
                let hooks = &hooks;
                async move {
                    let outcome = hooks.post(&d).await;
                    (d, outcome)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for result in results {
            settle(&alerts, Channel::Webhook, vec![result]).await;
        }
        if pause(&wake, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_an_hour() {
        for attempts in 1..40 {
            let b = backoff_ms(attempts);
            let base = (2_000i64 << (attempts - 1).min(20)).min(3_600_000);
            assert!(
                b >= base * 3 / 4 - 1 && b <= base * 5 / 4 + 1,
                "{attempts}: {b}"
            );
        }
    }

    #[test]
    fn permanent_failures_and_too_many_attempts_give_up() {
        let fresh = Delivery {
            attempts: 0,
            next_ms: 0,
            failed: false,
            last_error: None,
        };
        assert_eq!(next_state(&fresh, &Outcome::Delivered, 0, 5), None);
        let retry = next_state(&fresh, &Outcome::Transient("421".into()), 0, 5).unwrap();
        assert!(!retry.failed && retry.attempts == 1 && retry.next_ms == 5);
        assert!(
            next_state(&fresh, &Outcome::Permanent("550".into()), 0, 5)
                .unwrap()
                .failed
        );
        let worn = Delivery {
            attempts: MAX_ATTEMPTS - 1,
            ..fresh
        };
        assert!(
            next_state(&worn, &Outcome::Transient("421".into()), 0, 5)
                .unwrap()
                .failed
        );
    }
}
