//! The `[mqtt]` section and its `[[mqtt.topics]]`, validated at start.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::payload::Format;
use super::topics;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMqtt {
    host: Option<String>,
    port: Option<i64>,
    tls: Option<bool>,
    ca_file: Option<PathBuf>,
    username: Option<String>,
    /// Better given as `WATTLINE_MQTT_PASSWORD`.
    password: Option<String>,
    client_id: Option<String>,
    tenant: Option<String>,
    topics: Vec<RawTopic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    pattern: String,
    format: String,
    sensor: String,
    value_path: Option<String>,
    ts_path: Option<String>,
    field: Option<i64>,
    scale: Option<f64>,
    timezone: Option<String>,
}

/// One subscription and how its messages become readings.
#[derive(Debug, Clone)]
pub(crate) struct Topic {
    pub pattern: String,
    pub format: Format,
    /// Sensor id template: `{1}`, `{2}`, ... are the pattern's wildcards.
    pub sensor: String,
    pub scale: f64,
}

#[derive(Clone)]
pub(crate) struct MqttSettings {
    pub host: String,
    pub port: u16,
    /// `Some`: TLS, with this CA (PEM) or, if empty, the system's roots.
    pub tls_ca: Option<Vec<u8>>,
    pub credentials: Option<(String, String)>,
    /// The broker keeps this client's session (unacknowledged messages)
    /// across disconnects: it must be unique and stable per appliance.
    pub client_id: String,
    /// Only this tenant's sensors take readings from the broker.
    pub tenant: Option<String>,
    pub topics: Vec<Topic>,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls_ca.is_some())
            .field("credentials", &self.credentials.as_ref().map(|_| "[set]"))
            .field("client_id", &self.client_id)
            .field("tenant", &self.tenant)
            .field("topics", &self.topics)
            .finish()
    }
}

/// Validated settings, or `None` when no broker is configured.
pub(crate) fn resolve(raw: Option<RawMqtt>) -> Result<Option<MqttSettings>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let host = match raw.host {
        Some(h) if !h.trim().is_empty() => h,
        _ => bail!("mqtt.host: required"),
    };
    let tls = raw.tls.unwrap_or(false);
    let port = raw.port.unwrap_or(if tls { 8883 } else { 1883 });
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("mqtt.port: {port} is not a port number (1-65535)"))?;
    let tls_ca = match (tls, raw.ca_file) {
        (true, Some(path)) => Some(
            std::fs::read(&path)
                .with_context(|| format!("mqtt.ca_file: reading {}", path.display()))?,
        ),
        (true, None) => Some(Vec::new()),
        (false, Some(_)) => bail!("mqtt.ca_file: set mqtt.tls = true too"),
        (false, None) => None,
    };
    let password = raw
        .password
        .or_else(|| std::env::var("WATTLINE_MQTT_PASSWORD").ok());
    let credentials = match (raw.username, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => bail!("mqtt.username and mqtt.password go together: set both or neither"),
    };
    let client_id = raw.client_id.unwrap_or_else(|| "wattline".into());
    if client_id.is_empty() || client_id.len() > 64 {
        bail!("mqtt.client_id: 1 to 64 characters");
    }
    if raw.topics.is_empty() {
        bail!("mqtt.topics: at least one [[mqtt.topics]] with pattern, format and sensor");
    }
    let topics = raw
        .topics
        .into_iter()
        .enumerate()
        .map(|(i, t)| topic(t).with_context(|| format!("mqtt.topics[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(MqttSettings {
        host,
        port,
        tls_ca,
        credentials,
        client_id,
        tenant: raw.tenant,
        topics,
    }))
}

fn topic(raw: RawTopic) -> Result<Topic> {
    let wildcards = topics::wildcards(&raw.pattern).map_err(|e| anyhow!("pattern: {e}"))?;
    let dummy: Vec<&str> = vec!["x"; wildcards];
    topics::sensor_id(&raw.sensor, &dummy).map_err(|e| anyhow!("sensor: {e}"))?;
    let path = |p: String| p.split('.').map(str::to_owned).collect::<Vec<_>>();
    let format = match raw.format.as_str() {
        "number" => Format::Number,
        "json" => Format::Json {
            value_path: path(
                raw.value_path
                    .ok_or_else(|| anyhow!("value_path: required by format \"json\""))?,
            ),
            ts_path: raw.ts_path.map(path),
        },
        "tasmota" => Format::Tasmota {
            timezone: match raw.timezone {
                Some(tz) => tz
                    .parse()
                    .map_err(|_| anyhow!("timezone: {tz:?} is not an IANA time zone"))?,
                None => chrono_tz::UTC,
            },
        },
        "shelly" => Format::Shelly,
        "emonhub" => Format::Emonhub {
            field: raw
                .field
                .and_then(|f| usize::try_from(f).ok())
                .filter(|f| *f >= 1)
                .ok_or_else(|| anyhow!("field: a position from 1, required by \"emonhub\""))?,
        },
        other => bail!(
            "format: {other:?} is not one of \"number\", \"json\", \"tasmota\", \"shelly\", \"emonhub\""
        ),
    };
    let scale = raw.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        bail!("scale: a finite number other than 0");
    }
    Ok(Topic {
        pattern: raw.pattern,
        format,
        sensor: raw.sensor,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<MqttSettings>> {
        #[derive(Deserialize)]
        struct File {
            mqtt: Option<RawMqtt>,
        }
        let file: File = toml::from_str(text)?;
        resolve(file.mqtt)
    }

    #[test]
    fn a_valid_section_and_the_mistakes_it_names() {
        let ok = parse(
            "[mqtt]\nhost = \"broker\"\n[[mqtt.topics]]\npattern = \"tele/+/SENSOR\"\n\
             format = \"tasmota\"\nsensor = \"t-{1}\"\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((ok.port, ok.client_id.as_str()), (1883, "wattline"));
        assert!(parse("").unwrap().is_none());
        for (text, wanted) in [
            ("[mqtt]\n", "mqtt.host"),
            ("[mqtt]\nhost = \"b\"\n", "at least one"),
            (
                "[mqtt]\nhost = \"b\"\nport = 0\n[[mqtt.topics]]\npattern = \"a\"\nformat = \"number\"\nsensor = \"s\"\n",
                "mqtt.port",
            ),
            (
                "[mqtt]\nhost = \"b\"\n[[mqtt.topics]]\npattern = \"a/+\"\nformat = \"number\"\nsensor = \"{2}\"\n",
                "names no wildcard",
            ),
            (
                "[mqtt]\nhost = \"b\"\n[[mqtt.topics]]\npattern = \"a\"\nformat = \"json\"\nsensor = \"s\"\n",
                "value_path",
            ),
            (
                "[mqtt]\nhost = \"b\"\n[[mqtt.topics]]\npattern = \"a\"\nformat = \"xml\"\nsensor = \"s\"\n",
                "not one of",
            ),
            (
                "[mqtt]\nhost = \"b\"\nusername = \"u\"\n[[mqtt.topics]]\npattern = \"a\"\nformat = \"number\"\nsensor = \"s\"\n",
                "go together",
            ),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }

    #[test]
    fn the_password_is_never_in_debug_output() {
        let s = parse(
            "[mqtt]\nhost = \"b\"\nusername = \"u\"\npassword = \"S3CR3T\"\n[[mqtt.topics]]\n\
             pattern = \"a\"\nformat = \"number\"\nsensor = \"s\"\n",
        )
        .unwrap()
        .unwrap();
        assert!(!format!("{s:?}").contains("S3CR3T"));
    }
}
