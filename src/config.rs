//! Configuration: the TOML file as written ([`RawConfig`]), and the
//! validated [`Settings`] the daemon runs with.
//!
//! Every key of the contract is parsed and checked at start, including those
//! whose feature lands later, so a typo or a bad value stops the start with
//! a message naming the key. Precedence: flag, environment, file, default.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

/// The file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    server: RawServer,
    ingest: RawIngest,
    storage: RawStorage,
    retention: RawRetention,
    query: RawQuery,
    alerts: RawAlerts,
    smtp: RawSmtp,
    reports: RawReports,
    metrics: RawMetrics,
    fleet: Option<crate::fleet::RawFleet>,
    pgwire: crate::pgwire::RawPgwire,
    mqtt: Option<crate::mqtt::RawMqtt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    request_timeout: Option<String>,
    max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIngest {
    max_body_bytes: Option<i64>,
    max_batch_readings: Option<i64>,
    max_future: Option<String>,
    rate_limit_per_key: Option<i64>,
    rate_limit_per_ip: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    flush_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetention {
    raw: Option<String>,
    rollups: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawQuery {
    timeout: Option<String>,
    memory_limit: Option<i64>,
    max_rows: Option<i64>,
    max_concurrent: Option<i64>,
    max_concurrent_per_tenant: Option<i64>,
    max_join_rows: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAlerts {
    interval: Option<String>,
    renotify: Option<String>,
    lookback: Option<String>,
    dashboard_url: Option<String>,
    webhook_private: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSmtp {
    host: Option<String>,
    port: Option<i64>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReports {
    workers: Option<i64>,
    cache_ttl: Option<String>,
    keep: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    require_auth: Option<bool>,
}

/// The configuration file with every key at its default, as the Debian
/// package installs it and `wattline config defaults` prints it.
pub(crate) const DEFAULTS: &str = include_str!("../packaging/wattline.toml");

/// `wattline config check FILE`: the file alone (no flags or environment),
/// validated as `serve` would; a summary on success.
pub(crate) fn check(file: &Path) -> Result<()> {
    let s = Settings::load(Some(file), &Overrides::default())?;
    println!(
        "{}: valid. listen {}, data_dir {}, alert mail {}, {} report workers",
        file.display(),
        s.listen,
        s.data_dir.display(),
        s.smtp
            .as_ref()
            .map_or("off (no smtp.host)".to_owned(), |m| format!(
                "via {}:{}",
                m.host, m.port
            )),
        s.reports_workers
    );
    Ok(())
}

/// Values given on the command line or in the environment; they win over
/// the file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SmtpTls {
    None,
    StartTls,
    Tls,
}

#[derive(Debug, Clone)]
pub(crate) struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_body_bytes: usize,
    pub max_batch_readings: usize,
    pub max_future: Duration,
    pub rate_limit_per_key: u64,
    pub rate_limit_per_ip: u64,
    pub flush_interval: Duration,
    pub retention_raw: Duration,
    pub retention_rollups: Duration,
    pub query_timeout: Duration,
    pub query_memory_limit: u64,
    pub query_max_rows: usize,
    pub query_max_concurrent: usize,
    /// `None`: half of `query_max_concurrent`, rounded up.
    pub query_max_concurrent_per_tenant: Option<usize>,
    pub query_max_join_rows: usize,
    pub alerts_interval: Duration,
    pub alerts_renotify: Duration,
    pub alerts_lookback: Duration,
    /// Base URL of the dashboard links in alert mail.
    pub alerts_dashboard_url: String,
    /// Webhooks may go to loopback and private addresses.
    pub alerts_webhook_private: bool,
    /// `None`: mail is disabled (no `smtp.host`).
    pub smtp: Option<SmtpSettings>,
    pub reports_workers: usize,
    pub reports_cache_ttl: Duration,
    pub reports_keep: Duration,
    pub metrics_require_auth: bool,
    /// `None`: this appliance does not publish to a fleet.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub fleet: Option<crate::fleet::FleetSettings>,
    /// `None`: the PostgreSQL protocol is off (no `pgwire.listen`).
    pub pgwire: Option<wattline_postgres::PgConfig>,
    /// `None`: no MQTT broker (no `[mqtt]` section).
    pub mqtt: Option<crate::mqtt::MqttSettings>,
}

impl Settings {
    /// Reads `file` (if given), then applies `overrides`.
    pub(crate) fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self> {
        let Some(path) = file else {
            return Self::resolve(RawConfig::default(), overrides);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let raw =
            parse_toml(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        Self::resolve(raw, overrides).map_err(|e| {
            // Values are checked after parsing; the message names the key,
            // and here gains the line it is on.
            let from_flag = |k: &str| {
                (k == "server.listen" && overrides.listen.is_some())
                    || (k == "server.data_dir" && overrides.data_dir.is_some())
            };
            let at = key_of(&e)
                .filter(|key| !from_flag(key))
                .and_then(|key| line_of(&text, &key))
                .map(|line| format!(", line {line}"))
                .unwrap_or_default();
            e.context(format!("invalid config file {}{at}", path.display()))
        })
    }

    pub(crate) fn resolve(raw: RawConfig, overrides: &Overrides) -> Result<Self> {
        let listen_text = overrides
            .listen
            .clone()
            .or(raw.server.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = resolve_addr(&listen_text).context("server.listen")?;
        let data_dir = overrides
            .data_dir
            .clone()
            .or(raw.server.data_dir)
            .unwrap_or_else(|| PathBuf::from("./wattline-data"));
        if data_dir.as_os_str().is_empty() {
            bail!("server.data_dir: must not be empty");
        }
        let smtp = smtp_settings(raw.smtp)?;
        Ok(Self {
            listen,
            data_dir,
            request_timeout: duration("server.request_timeout", raw.server.request_timeout, "30s")?,
            max_connections: count("server.max_connections", raw.server.max_connections, 1024)?,
            max_body_bytes: count(
                "ingest.max_body_bytes",
                raw.ingest.max_body_bytes,
                1_048_576,
            )?,
            max_batch_readings: count(
                "ingest.max_batch_readings",
                raw.ingest.max_batch_readings,
                10_000,
            )?,
            max_future: duration("ingest.max_future", raw.ingest.max_future, "5m")?,
            rate_limit_per_key: count(
                "ingest.rate_limit_per_key",
                raw.ingest.rate_limit_per_key,
                1_000_000,
            )?,
            rate_limit_per_ip: count(
                "ingest.rate_limit_per_ip",
                raw.ingest.rate_limit_per_ip,
                1_000,
            )?,
            flush_interval: duration("storage.flush_interval", raw.storage.flush_interval, "10m")?,
            retention_raw: duration("retention.raw", raw.retention.raw, "90d")?,
            retention_rollups: duration("retention.rollups", raw.retention.rollups, "5y")?,
            query_timeout: duration("query.timeout", raw.query.timeout, "30s")?,
            query_memory_limit: count("query.memory_limit", raw.query.memory_limit, 1_073_741_824)?,
            query_max_rows: count("query.max_rows", raw.query.max_rows, 100_000)?,
            query_max_concurrent: count("query.max_concurrent", raw.query.max_concurrent, 8)?,
            query_max_concurrent_per_tenant: raw
                .query
                .max_concurrent_per_tenant
                .map(|v| count("query.max_concurrent_per_tenant", Some(v), 1))
                .transpose()?,
            query_max_join_rows: count(
                "query.max_join_rows",
                raw.query.max_join_rows,
                100_000_000,
            )?,
            alerts_interval: duration("alerts.interval", raw.alerts.interval, "60s")?,
            alerts_renotify: duration("alerts.renotify", raw.alerts.renotify, "6h")?,
            alerts_lookback: duration("alerts.lookback", raw.alerts.lookback, "24h")?,
            alerts_dashboard_url: dashboard_url(raw.alerts.dashboard_url, listen)?,
            alerts_webhook_private: raw.alerts.webhook_private.unwrap_or(false),
            smtp,
            reports_workers: count("reports.workers", raw.reports.workers, 2)?,
            reports_cache_ttl: duration("reports.cache_ttl", raw.reports.cache_ttl, "1h")?,
            reports_keep: duration("reports.keep", raw.reports.keep, "7d")?,
            metrics_require_auth: raw.metrics.require_auth.unwrap_or(false),
            fleet: crate::fleet::resolve(raw.fleet)?,
            pgwire: crate::pgwire::resolve(raw.pgwire)?,
            mqtt: crate::mqtt::resolve(raw.mqtt)?,
        })
    }
}

/// Parses the TOML text; unknown keys and wrong types are errors naming the
/// key.
pub(crate) fn parse_toml(text: &str) -> Result<RawConfig> {
    toml::from_str(text).map_err(|e| {
        // A wrong type or an unknown key is reported at its place; say
        // which key that is.
        let key = e.span().and_then(|span| key_at(text, span.start));
        let message = e.to_string();
        // The message quotes the line: not when it may hold a secret (found
        // by its key, or by the line's own start when it does not parse).
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        let secret = key.as_deref().is_some_and(|k| SECRET_KEYS.contains(&k))
            || line.is_some_and(|n| {
                let text = text.lines().nth(n - 1).unwrap_or("").trim_start();
                SECRET_KEYS
                    .iter()
                    .any(|k| text.starts_with(k.split_once('.').map_or(*k, |(_, name)| name)))
            })
            // Sections holding credentials: a misspelt key may be one.
            || line.is_some_and(|n| {
                SECRET_SECTIONS.contains(&section_of(text, n).as_str())
            });
        match (key, line) {
            (key, Some(line)) if secret => {
                // Parser messages quote a wrongly typed value: say only
                // what is wrong with the key.
                let what = e.message();
                let what = if what.starts_with("unknown field") || what.starts_with("missing field")
                {
                    what.to_owned()
                } else {
                    "not a valid value (a secret's value is not repeated here)".to_owned()
                };
                anyhow!(
                    "{}: invalid value at line {line}: {what}",
                    key.unwrap_or_else(|| section_of(text, line)),
                )
            }
            (Some(key), _) => anyhow!("{key}: {}", message.trim_end()),
            (None, _) => anyhow!("{}", message.trim_end()),
        }
    })
}

/// The `[section]` line `n` (1-based) of `text` is in.
fn section_of(text: &str, n: usize) -> String {
    text.lines()
        .take(n)
        .filter_map(|l| l.trim().strip_prefix('[')?.split(']').next())
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Sections whose lines are never quoted in a message.
const SECRET_SECTIONS: &[&str] = &["smtp", "fleet", "mqtt"];

/// Keys whose values are never repeated in a message.
const SECRET_KEYS: &[&str] = &[
    "smtp.password",
    "smtp.username",
    "fleet.secret_access_key",
    "fleet.access_key_id",
    "mqtt.password",
    "mqtt.username",
];

/// The `section.key` whose name or value spans byte `offset` of `text`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    doc.get_ref().iter().find_map(|(section, table)| {
        let toml::de::DeValue::Table(table) = table.get_ref() else {
            return None;
        };
        table
            .iter()
            .find(|(k, v)| k.span().contains(&offset) || v.span().contains(&offset))
            .map(|(k, _)| format!("{}.{}", section.get_ref(), k.get_ref()))
    })
}

/// The `section.key` an error from [`Settings::resolve`] starts with.
fn key_of(err: &anyhow::Error) -> Option<String> {
    let top = err.to_string();
    let key = top.split(':').next()?;
    let (section, name) = key.split_once('.')?;
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    (word(section) && word(name)).then(|| key.to_owned())
}

/// The line (1-based) of `section.key`'s value in the TOML `text`.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let (section, name) = key.split_once('.')?;
    let doc = toml::de::DeTable::parse(text).ok()?;
    let table = entry(doc.get_ref(), section)?;
    let toml::de::DeValue::Table(table) = table.get_ref() else {
        return None;
    };
    let value = entry(table, name)?;
    Some(text[..value.span().start].matches('\n').count() + 1)
}

fn entry<'t, 'i>(
    table: &'t toml::de::DeTable<'i>,
    key: &str,
) -> Option<&'t toml::Spanned<toml::de::DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

pub(crate) fn resolve_addr(s: &str) -> Result<SocketAddr> {
    s.to_socket_addrs()
        .map_err(|e| anyhow!("{s:?} is not an address like 127.0.0.1:8080 ({e})"))?
        .next()
        .ok_or_else(|| anyhow!("{s:?} resolves to no address"))
}

/// A positive integer setting.
pub(crate) fn count<T: TryFrom<i64>>(key: &str, value: Option<i64>, default: i64) -> Result<T> {
    let v = value.unwrap_or(default);
    if v <= 0 {
        bail!("{key}: must be a positive integer, not {v}");
    }
    T::try_from(v).map_err(|_| anyhow!("{key}: {v} is too large"))
}

fn duration(key: &str, value: Option<String>, default: &str) -> Result<Duration> {
    let text = value.as_deref().unwrap_or(default);
    parse_duration(text).map_err(|e| anyhow!("{key}: {e}"))
}

/// Parses `"500ms"`, `"30s"`, `"15m"`, `"6h"`, `"90d"`, `"2w"`, `"5y"`
/// (a year is 365 days). The amount is a positive whole number.
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| anyhow!("{text:?} has no unit; write e.g. \"30s\", \"15m\", \"90d\""))?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow!("{text:?} must start with a whole number, e.g. \"30s\""))?;
    if n == 0 {
        bail!("{text:?} must be longer than zero");
    }
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
        other => bail!("{text:?} has unknown unit {other:?}; use ms, s, m, h, d, w or y"),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| anyhow!("{text:?} is too long"))
}

/// `alerts.dashboard_url`, by default the listen address over http.
fn dashboard_url(raw: Option<String>, listen: SocketAddr) -> Result<String> {
    match raw {
        None => Ok(format!("http://{listen}")),
        Some(u)
            if (u.starts_with("http://") || u.starts_with("https://"))
                && !u.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(u.trim_end_matches('/').to_owned())
        }
        Some(u) => bail!("alerts.dashboard_url: {u:?} is not an http:// or https:// URL"),
    }
}

fn smtp_settings(raw: RawSmtp) -> Result<Option<SmtpSettings>> {
    let port = raw.port.unwrap_or(25);
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("smtp.port: {port} is not a port number (1-65535)"))?;
    let tls = match raw.tls.as_deref().unwrap_or("none") {
        "none" => SmtpTls::None,
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        other => bail!("smtp.tls: {other:?} is not one of \"none\", \"starttls\", \"tls\""),
    };
    let from = raw.from.unwrap_or_else(|| "wattline@localhost".into());
    if !from.contains('@') {
        bail!("smtp.from: {from:?} is not a mail address");
    }
    if raw.username.is_some() != raw.password.is_some() {
        bail!("smtp.username and smtp.password go together: set both or neither");
    }
    Ok(match raw.host {
        Some(host) if host.trim().is_empty() => bail!("smtp.host: must not be empty"),
        Some(host) => Some(SmtpSettings {
            host,
            port,
            tls,
            username: raw.username,
            password: raw.password,
            from,
        }),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str) -> Result<Settings> {
        Settings::resolve(parse_toml(toml_text)?, &Overrides::default())
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = resolve("").unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./wattline-data"));
        assert_eq!(s.max_body_bytes, 1_048_576);
        assert_eq!(s.max_batch_readings, 10_000);
        assert_eq!(s.retention_raw, Duration::from_secs(90 * 86_400));
        assert_eq!(s.retention_rollups, Duration::from_secs(5 * 365 * 86_400));
        assert_eq!(s.query_max_concurrent, 8);
        assert!(s.smtp.is_none());
        assert!(!s.metrics_require_auth);
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let text = include_str!("../packaging/wattline.toml");
        let s = resolve(text).unwrap();
        assert_eq!(s.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let raw = parse_toml("[server]\nlisten = \"127.0.0.1:1\"\ndata_dir = \"/a\"").unwrap();
        let s = Settings::resolve(
            raw,
            &Overrides {
                data_dir: Some("/b".into()),
                listen: None,
            },
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/b"));
        assert_eq!(s.listen.port(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nlisten_addr = \"x\"", "listen_addr"),
            ("[ingest]\nmax_body_bytes = 0", "ingest.max_body_bytes"),
            ("[ingest]\nmax_body_bytes = \"big\"", "max_body_bytes"),
            ("[retention]\nraw = \"90 days\"", "retention.raw"),
            ("[query]\ntimeout = \"30\"", "query.timeout"),
            ("[smtp]\ntls = \"ssl\"", "smtp.tls"),
            ("[smtp]\nport = 70000", "smtp.port"),
            ("[smtp]\nusername = \"u\"", "smtp.password"),
            ("[bogus]\nx = 1", "bogus"),
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
        ];
        for (text, key) in cases {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn credentials_never_appear_in_errors() {
        for text in [
            "[fleet]\nsecret_access_key = S3CR3T",
            "[mqtt]\nhost = \"b\"\npassword = 123456789",
            "[mqtt]\nhost = \"b\"\n\"password\" = 123456789",
            "mqtt = { host = \"b\", password = 123456789 }",
            "[fleet]\nsecret_acess_key = \"S3CR3T\"",
            "[fleet]\nsite = \"a\"\naccess_key_id = [\"S3CR3T\"]",
            "[fleet]\nS3CR3T",
        ] {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(
                !err.contains("S3CR3T") && !err.contains("123456789"),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn durations_take_every_unit() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("15m"), Duration::from_secs(900));
        assert_eq!(d("6h"), Duration::from_secs(21_600));
        assert_eq!(d("90d"), Duration::from_secs(90 * 86_400));
        assert_eq!(d("2w"), Duration::from_secs(14 * 86_400));
        assert_eq!(d("5y"), Duration::from_secs(5 * 365 * 86_400));
        for bad in ["", "5", "0s", "1.5h", "5 years", "-1s", "10q"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
