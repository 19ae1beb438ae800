//! Alert rules and events: what `alerts.redb` stores (as JSON) and what the
//! API and SQL show.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{BuildingId, SensorId, TenantId};
use crate::rollup::WindowSpan;

/// Most addresses one rule mails.
const MAX_EMAILS: usize = 50;
const MAX_URL_BYTES: usize = 2048;

/// What a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// The window's kWh above `threshold_kwh`.
    Threshold,
    /// The window's kWh above the median of the same local window in the
    /// `weeks` weeks before, by more than `percent`.
    Baseline,
    /// A sensor (or any active sensor of the building) with no reading
    /// newer than `for` ago.
    Offline,
}

/// How long a meter may stay silent: a duration text like `"30m"` and its
/// milliseconds (1 minute to 30 days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Silence {
    text: String,
    ms: i64,
}

impl Silence {
    pub fn ms(&self) -> i64 {
        self.ms
    }
}

impl TryFrom<String> for Silence {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        let bad =
            || format!("for: {text:?} is not a duration from \"1m\" to \"30d\" (s, m, h or d)");
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: i64 = text[..split].parse().map_err(|_| bad())?;
        let unit = match &text[split..] {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let ms = n.checked_mul(unit).ok_or_else(bad)?;
        if !(60_000..=30 * 86_400_000).contains(&ms) {
            return Err(bad());
        }
        Ok(Self { text, ms })
    }
}

impl From<Silence> for String {
    fn from(s: Silence) -> String {
        s.text
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: String,
    pub building_id: BuildingId,
    pub tenant_id: TenantId,
    pub kind: RuleKind,
    /// Threshold rules only.
    pub threshold_kwh: Option<f64>,
    pub window: WindowSpan,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
    pub enabled: bool,
    /// Baseline rules only.
    pub weeks: Option<u32>,
    pub percent: Option<f64>,
    /// Offline rules only: how long a meter may be silent, and which one
    /// (`None`: every active sensor of the building).
    #[serde(default, rename = "for")]
    pub silent_for: Option<Silence>,
    #[serde(default)]
    pub sensor_id: Option<SensorId>,
}

/// A rule as created; validated when it becomes an [`AlertRule`].
#[derive(Debug, Clone)]
pub struct NewRule {
    pub building_id: BuildingId,
    pub tenant_id: TenantId,
    pub kind: RuleKind,
    pub threshold_kwh: Option<f64>,
    pub window: WindowSpan,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
    pub enabled: bool,
    pub weeks: Option<u32>,
    pub percent: Option<f64>,
    pub silent_for: Option<Silence>,
    pub sensor_id: Option<SensorId>,
}

/// Fields to change; `None` keeps. `webhook_url: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct RulePatch {
    pub threshold_kwh: Option<f64>,
    pub window: Option<WindowSpan>,
    pub emails: Option<Vec<String>>,
    pub webhook_url: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub weeks: Option<u32>,
    pub percent: Option<f64>,
    pub silent_for: Option<Silence>,
}

impl AlertRule {
    pub(crate) fn new(id: String, new: NewRule) -> Result<Self> {
        let rule = Self {
            id,
            building_id: new.building_id,
            tenant_id: new.tenant_id,
            kind: new.kind,
            threshold_kwh: new.threshold_kwh,
            window: new.window,
            emails: new.emails,
            webhook_url: new.webhook_url,
            enabled: new.enabled,
            weeks: new.weeks,
            percent: new.percent,
            silent_for: new.silent_for,
            sensor_id: new.sensor_id,
        };
        rule.validate()?;
        Ok(rule)
    }

    pub(crate) fn patched(&self, p: RulePatch) -> Result<Self> {
        let mut r = self.clone();
        if let Some(v) = p.threshold_kwh {
            r.threshold_kwh = Some(v);
        }
        if let Some(v) = p.window {
            r.window = v;
        }
        if let Some(v) = p.emails {
            r.emails = v;
        }
        if let Some(v) = p.webhook_url {
            r.webhook_url = v;
        }
        if let Some(v) = p.enabled {
            r.enabled = v;
        }
        if let Some(v) = p.weeks {
            r.weeks = Some(v);
        }
        if let Some(v) = p.percent {
            r.percent = Some(v);
        }
        if let Some(v) = p.silent_for {
            r.silent_for = Some(v);
        }
        r.validate()?;
        Ok(r)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        match self.kind {
            RuleKind::Threshold => match self.threshold_kwh {
                Some(t) if t.is_finite() && t >= 0.0 => {}
                Some(t) => return bad(format!("threshold_kwh: {t} is not a finite number >= 0")),
                None => return bad("threshold_kwh is required for a threshold rule".into()),
            },
            RuleKind::Baseline => {
                match self.weeks {
                    Some(1..=52) => {}
                    _ => return bad("weeks: a baseline rule needs 1 to 52 weeks".into()),
                }
                match self.percent {
                    Some(p) if p.is_finite() && p >= 0.0 => {}
                    _ => return bad("percent: a baseline rule needs a number >= 0".into()),
                }
                if self.window == WindowSpan::Quarter {
                    return bad(
                        "window: a baseline rule compares hours or days (\"1h\" or \"1d\")".into(),
                    );
                }
            }
            RuleKind::Offline => {
                if self.silent_for.is_none() {
                    return bad("for: an offline rule needs a duration such as \"30m\"".into());
                }
            }
        }
        if self.emails.is_empty() && self.webhook_url.is_none() {
            return bad("a rule needs at least one of emails and webhook_url".into());
        }
        if self.emails.len() > MAX_EMAILS {
            return bad(format!("emails: at most {MAX_EMAILS} addresses"));
        }
        for e in &self.emails {
            if !is_mail_address(e) {
                return bad(format!("emails: {e:?} is not a mail address"));
            }
        }
        if let Some(u) = &self.webhook_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() <= MAX_URL_BYTES
                && u.len() > "https://".len()
                && !u.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return bad(format!(
                    "webhook_url: {u:?} is not an http:// or https:// URL"
                ));
            }
        }
        Ok(())
    }
}

/// `local@domain`, printable, no spaces, at most 254 bytes.
pub fn is_mail_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c))
}

/// What happened to an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Fired,
    Resolved,
    Renotified,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Resolved => "resolved",
            Self::Renotified => "renotified",
        }
    }
}

/// One alert event. Times are UTC milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub event_id: u64,
    pub rule_id: String,
    pub building_id: BuildingId,
    pub tenant_id: TenantId,
    pub kind: EventKind,
    pub window_start: i64,
    pub window_end: i64,
    pub measured_kwh: f64,
    pub threshold_kwh: f64,
    pub at: i64,
    /// The silent (or reporting again) meter of an offline rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
}

/// Where an event is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    Email(String),
    Webhook(String),
}

impl Recipient {
    /// The outbox key: `mailto:<address>` or `webhook:<url>`.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Email(a) => format!("mailto:{a}"),
            Self::Webhook(u) => format!("webhook:{u}"),
        }
    }

    pub(crate) fn from_key(k: &str) -> Option<Self> {
        if let Some(a) = k.strip_prefix("mailto:") {
            Some(Self::Email(a.to_owned()))
        } else {
            k.strip_prefix("webhook:")
                .map(|u| Self::Webhook(u.to_owned()))
        }
    }
}
