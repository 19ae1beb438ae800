//! Alert mail over SMTP (lettre): one message per address holding all its
//! due events, plain text plus a simple HTML part, each event with its
//! building, rule, measured against threshold, the window in the
//! building's local time and a link to the building in the dashboard.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use wattline_storage::{AlertEvent, Catalog, Due, EventKind, format_local};

use super::Outcome;
use crate::config::{SmtpSettings, SmtpTls};

/// A dead server must not hold the mail loop for long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct MailSettings {
    pub(crate) smtp: Option<SmtpSettings>,
    /// Base of the dashboard links, without a trailing slash.
    pub(crate) dashboard_url: String,
}

pub(crate) struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    dashboard_url: String,
}

impl Mailer {
    pub(crate) fn new(settings: MailSettings) -> anyhow::Result<Self> {
        let from_text = settings
            .smtp
            .as_ref()
            .map_or("wattline@localhost", |s| s.from.as_str())
            .to_owned();
        let from: Mailbox = from_text
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp.from: {from_text:?}: {e}"))?;
        let transport = match settings.smtp {
            None => None,
            Some(s) => {
                let builder = match s.tls {
                    SmtpTls::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                    }
                    SmtpTls::StartTls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?
                    }
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
                };
                let mut builder = builder.port(s.port).timeout(Some(SMTP_TIMEOUT));
                if let (Some(u), Some(p)) = (s.username, s.password) {
                    builder = builder.credentials(Credentials::new(u, p));
                }
                Some(builder.build())
            }
        };
        Ok(Self {
            transport,
            from,
            dashboard_url: settings.dashboard_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends one message with `rows`' events to `address`.
    pub(crate) async fn send(&self, catalog: &Catalog, address: &str, rows: &[Due]) -> Outcome {
        let Some(transport) = &self.transport else {
            return Outcome::Transient("mail is disabled (no smtp.host)".into());
        };
        let to: Mailbox = match address.parse() {
            Ok(m) => m,
            Err(e) => return Outcome::Permanent(format!("bad address {address:?}: {e}")),
        };
        let events: Vec<&AlertEvent> = rows.iter().map(|d| &d.event).collect();
        let content = compose(catalog, &events, &self.dashboard_url);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .message_id(Some(message_id(&events, address, &self.from)))
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ));
        let message = match message {
            Ok(m) => m,
            Err(e) => return Outcome::Permanent(format!("cannot build the message: {e}")),
        };
        match transport.send(message).await {
            Ok(_) => Outcome::Delivered,
            Err(e) if e.is_permanent() => Outcome::Permanent(e.to_string()),
            Err(e) => Outcome::Transient(e.to_string()),
        }
    }
}

/// Stable for the same events and address, so a message sent again after
/// a crash carries the same id: `<alert.{ids}.{hash}@{from domain}>`.
fn message_id(events: &[&AlertEvent], address: &str, from: &Mailbox) -> String {
    let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let hash = Sha256::digest(address.to_ascii_lowercase().as_bytes());
    let tag: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("<alert.{}.{tag}@{}>", ids.join("-"), from.email.domain())
}

struct Content {
    subject: String,
    text: String,
    html: String,
}

/// One event, readably.
struct Line {
    headline: String,
    building: String,
    window: String,
    numbers: String,
    rule: String,
    link: String,
}

fn describe(catalog: &Catalog, e: &AlertEvent, dashboard: &str) -> Line {
    let view = catalog.view();
    let b = view.building(e.building_id.as_str());
    let name = b.map_or_else(|| e.building_id.to_string(), |b| b.name.clone());
    let tz = b.map_or(chrono_tz::Tz::UTC, |b| b.timezone.tz());
    let (what, numbers) = match (&e.sensor_id, e.kind) {
        // An offline rule's event: which meter, silent since when.
        (Some(sensor), EventKind::Resolved) => (
            format!("meter {sensor} is reporting again"),
            format!(
                "silent from {} to {}",
                format_local(tz, e.window_start),
                format_local(tz, e.window_end)
            ),
        ),
        (Some(sensor), _) => (
            format!("meter {sensor} has sent nothing"),
            format!("last reading at {}", format_local(tz, e.window_start)),
        ),
        (None, kind) => {
            let (what, cmp) = match kind {
                EventKind::Fired => ("over its threshold", ">"),
                EventKind::Resolved => ("back under its threshold", "<="),
                EventKind::Renotified => ("still over its threshold", ">"),
            };
            (
                what.to_owned(),
                format!(
                    "{:.3} kWh measured {cmp} {:.3} kWh threshold",
                    e.measured_kwh, e.threshold_kwh
                ),
            )
        }
    };
    Line {
        headline: format!("{name}: {what}"),
        building: format!("{name} ({})", e.building_id),
        window: format!(
            "{} to {} ({})",
            format_local(tz, e.window_start),
            format_local(tz, e.window_end),
            tz.name()
        ),
        numbers,
        rule: format!(
            "rule {}, event {} ({})",
            e.rule_id,
            e.event_id,
            e.kind.name()
        ),
        link: format!("{dashboard}/dashboard/buildings/{}", e.building_id),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn compose(catalog: &Catalog, events: &[&AlertEvent], dashboard: &str) -> Content {
    let lines: Vec<Line> = events
        .iter()
        .map(|e| describe(catalog, e, dashboard))
        .collect();
    let subject = match (lines.as_slice(), events) {
        ([one], [e]) if e.sensor_id.is_some() => format!("[wattline] {}", one.headline),
        ([one], [e]) => format!(
            "[wattline] {} ({} kWh, threshold {} kWh)",
            one.headline,
            round3(e.measured_kwh),
            round3(e.threshold_kwh)
        ),
        _ => format!("[wattline] {} alert events", lines.len()),
    };
    let mut text = String::new();
    let mut html = String::from("<html><body style=\"font-family:sans-serif\">");
    for l in &lines {
        let _ = write!(
            text,
            "{}\n  Building: {}\n  Window:   {}\n  Energy:   {}\n  Details:  {}\n  Open:     {}\n\n",
            l.headline, l.building, l.window, l.numbers, l.rule, l.link
        );
        let _ = write!(
            html,
            "<h3>{}</h3><table><tr><td>Building</td><td>{}</td></tr>\
             <tr><td>Window</td><td>{}</td></tr><tr><td>Energy</td><td>{}</td></tr>\
             <tr><td>Details</td><td>{}</td></tr></table><p><a href=\"{}\">Open the building</a></p>",
            escape(&l.headline),
            escape(&l.building),
            escape(&l.window),
            escape(&l.numbers),
            escape(&l.rule),
            escape(&l.link)
        );
    }
    text.push_str("-- \nwattline alerts\n");
    html.push_str("</body></html>");
    Content {
        subject,
        text,
        html,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
