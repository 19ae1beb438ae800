//! Delivery of alert events from the durable outbox: mail (one message per
//! address per round, holding up to [`MAX_EVENTS_PER_MAIL`] due events,
//! [`MAILS_AT_ONCE`] messages at a time) and webhooks (one JSON POST per
//! event, [`WEBHOOKS_AT_ONCE`] at a time). Mail and webhooks run as
//! separate loops, so a webhook that hangs never holds up mail, and each
//! request has a short timeout.
//!
//! An outbox row is removed only after the recipient took the event; a
//! failure reschedules it with exponential backoff and jitter, and a
//! permanent refusal (SMTP 5xx, HTTP 4xx other than 408/429) or
//! [`MAX_ATTEMPTS`] failures move it to the failed deliveries (kept, and
//! counted). A crash between acceptance and removal sends again, with the
//! same `Message-ID` so the receiving side can drop the copy.

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
#[derive(Debug, Clone)]
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

/// Most events in one mail (bounds the message and its `Message-ID`).
const MAX_EVENTS_PER_MAIL: usize = 50;
/// Messages sent at once; each group is recorded as it ends.
const MAILS_AT_ONCE: usize = 8;
/// Webhook POSTs in flight at once; each group is recorded as it ends.
const WEBHOOKS_AT_ONCE: usize = 8;

type Settled = (u64, Recipient, Option<Delivery>);

/// One delivery loop's view of the outbox. Outcomes that could not be
/// recorded (a failing disk) are kept here and recorded before anything
/// is sent again, so a recipient never gets a copy per round.
struct Outbox {
    alerts: Arc<AlertStore>,
    channel: Channel,
    unrecorded: Vec<Settled>,
}

impl Outbox {
    fn new(alerts: Arc<AlertStore>, channel: Channel) -> Self {
        Self {
            alerts,
            channel,
            unrecorded: Vec::new(),
        }
    }

    /// Due rows of the channel; none while earlier outcomes are unrecorded.
    async fn due(&mut self) -> Vec<Due> {
        if !self.record(Vec::new()).await {
            return vec![];
        }
        let a = self.alerts.clone();
        let channel = self.channel;
        match tokio::task::spawn_blocking(move || {
            let depth = a.outbox_depth()?;
            metrics::gauge!("wattline_alert_outbox_depth").set(depth as f64);
            a.due(wattline_storage::now_ms())
        })
        .await
        {
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

    /// Records the outcomes of one message (or one POST) and counts them.
    /// The rows retry together, at one time, so a mail's events stay one
    /// mail.
    async fn settle(&mut self, results: Vec<(Due, Outcome)>) {
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
            let label = match &state {
                None => "delivered",
                Some(s) if s.failed => "failed",
                Some(_) => "retry",
            };
            if let Outcome::Transient(e) | Outcome::Permanent(e) = outcome {
                tracing::warn!(
                    channel = self.channel.name(),
                    event = d.event.event_id,
                    attempt = d.delivery.attempts + 1,
                    outcome = label,
                    error = %e,
                    "alert delivery did not go through"
                );
            }
            metrics::counter!("wattline_alert_deliveries_total", "channel" => self.channel.name(), "outcome" => label)
                .increment(1);
            rows.push((d.event.event_id, d.recipient.clone(), state));
        }
        self.record(rows).await;
    }

    /// Records `rows` and whatever is still unrecorded; false if that
    /// failed (they are kept for the next try).
    async fn record(&mut self, rows: Vec<Settled>) -> bool {
        self.unrecorded.extend(rows);
        if self.unrecorded.is_empty() {
            return true;
        }
        let a = self.alerts.clone();
        let rows = std::mem::take(&mut self.unrecorded);
        match tokio::task::spawn_blocking(move || (a.settle(&rows), rows)).await {
            Ok((Ok(()), _)) => true,
            Ok((Err(e), rows)) => {
                tracing::error!(error = %e, "recording alert deliveries failed; nothing is sent until they are recorded");
                self.unrecorded = rows;
                false
            }
            Err(_) => false,
        }
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

/// The mail loop: each round, one message per address with its due
/// events (up to [`MAX_EVENTS_PER_MAIL`]).
pub(crate) async fn run_mail(
    alerts: Arc<AlertStore>,
    catalog: Arc<Catalog>,
    mailer: Mailer,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut outbox = Outbox::new(alerts, Channel::Mail);
    loop {
        let mut by_address: BTreeMap<String, Vec<Due>> = BTreeMap::new();
        for d in outbox.due().await {
            if let Recipient::Email(a) = &d.recipient {
                by_address.entry(a.clone()).or_default().push(d);
            }
        }
        let groups: Vec<(String, Vec<Due>)> = by_address
            .into_iter()
            .map(|(address, mut group)| {
                group.truncate(MAX_EVENTS_PER_MAIL);
                (address, group)
            })
            .collect();
        // A few messages at once (the transport pools connections), their
        // outcomes recorded in one commit.
        for batch in groups.chunks(MAILS_AT_ONCE) {
            let sends = batch.iter().map(|(address, group)| async {
                let outcome = mailer.send(&catalog, address, group).await;
                group
                    .iter()
                    .map(|d| (d.clone(), outcome.clone()))
                    .collect::<Vec<_>>()
            });
            let results = futures::future::join_all(sends).await;
            outbox.settle(results.into_iter().flatten().collect()).await;
        }
        if pause(&wake, &mut stop).await {
            return;
        }
    }
}

/// The webhook loop: each due event POSTed, [`WEBHOOKS_AT_ONCE`] at a time.
pub(crate) async fn run_webhooks(
    alerts: Arc<AlertStore>,
    hooks: Webhooks,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut outbox = Outbox::new(alerts, Channel::Webhook);
    loop {
        let rows = outbox.due().await;
        for group in rows.chunks(WEBHOOKS_AT_ONCE) {
            let posts = group.iter().map(|d| async {
                let outcome = hooks.post(d).await;
                (d.clone(), outcome)
            });
            let results = futures::future::join_all(posts).await;
            outbox.settle(results).await;
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
