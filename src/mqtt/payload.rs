//! The payloads meters and gateways publish, read as one value and its
//! time. The value is what the device reports (a register total, a power
//! sample or an interval's energy, as the sensor's `meter_type` says),
//! times the topic's `scale`.
//!
//! - `number`: the payload is a number (`12.5`); emonPi's `emon/<node>/<input>`
//!   topics publish this way.
//! - `json`: a number at `value_path` (dotted: `energy.total`, array
//!   positions as numbers), a time at `ts_path` if given (epoch seconds or
//!   milliseconds, or RFC 3339).
//! - `tasmota`: `tele/<device>/SENSOR` telemetry: `ENERGY.Total` (kWh
//!   register) at `Time`, the device's local time in the topic's
//!   `timezone`.
//! - `shelly`: Gen2+ status (`<device>/status/switch:0`, `pm1:0`, ...):
//!   `aenergy.total` (Wh register, sent as kWh) at `aenergy.minute_ts`; or
//!   the same inside a `NotifyStatus` event's `params`.
//! - `emonhub`: `emonhub/rx/<node>/values`, comma-separated values, the
//!   topic's `field` (1-based).
//!
//! Without a time in the payload, a reading gets the time it was received.

use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Format {
    Number,
    Json {
        value_path: Vec<String>,
        ts_path: Option<Vec<String>>,
    },
    Tasmota {
        timezone: Tz,
    },
    Shelly,
    Emonhub {
        field: usize,
    },
}

/// One value and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub ts_ms: i64,
    pub value: f64,
}

/// Reads `payload`; `received_ms` stands in for a missing time.
pub(crate) fn parse(format: &Format, payload: &[u8], received_ms: i64) -> Result<Sample, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8".to_owned())?;
    let (value, ts_ms) = match format {
        Format::Number => (number(text.trim())?, None),
        Format::Emonhub { field } => {
            let raw = text.trim().split(',').nth(field - 1).ok_or_else(|| {
                format!("the payload has fewer than {field} comma-separated values")
            })?;
            (number(raw.trim())?, None)
        }
        Format::Json {
            value_path,
            ts_path,
        } => {
            let doc = json(text)?;
            let value = at(&doc, value_path)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("no number at {}", value_path.join(".")))?;
            let ts = match ts_path {
                Some(path) => {
                    let t =
                        at(&doc, path).ok_or_else(|| format!("no time at {}", path.join(".")))?;
                    Some(time(t)?)
                }
                None => None,
            };
            (value, ts)
        }
        Format::Tasmota { timezone } => {
            let doc = json(text)?;
            let total = doc
                .pointer("/ENERGY/Total")
                .and_then(Value::as_f64)
                .ok_or("no ENERGY.Total (kWh) in the telemetry")?;
            let local = doc
                .get("Time")
                .and_then(Value::as_str)
                .ok_or("no Time in the telemetry")?;
            let at = tasmota_time(local, *timezone, received_ms)?;
            (total, Some(at))
        }
        Format::Shelly => {
            let doc = json(text)?;
            let (status, event_ts) = match doc.get("params") {
                Some(params) => (
                    params
                        .as_object()
                        .and_then(|p| p.values().find(|c| c.get("aenergy").is_some()))
                        .ok_or("no component with aenergy in the event")?,
                    params.get("ts").and_then(Value::as_f64),
                ),
                None => (&doc, None),
            };
            let energy = status.get("aenergy").ok_or("no aenergy in the status")?;
            let wh = energy
                .get("total")
                .and_then(Value::as_f64)
                .ok_or("no aenergy.total (Wh)")?;
            let ts = energy
                .get("minute_ts")
                .and_then(Value::as_f64)
                .or(event_ts)
                .map(|s| (s * 1000.0).round() as i64);
            (wh / 1000.0, ts)
        }
    };
    if !value.is_finite() {
        return Err(format!("the value {value} is not a finite number"));
    }
    Ok(Sample {
        ts_ms: ts_ms.unwrap_or(received_ms),
        value,
    })
}

/// Tasmota's `Time`: with an offset (`SetOption52 1`) as written; else
/// local time in `timezone`, where an hour that repeats (the autumn
/// change) is read as the instance nearer to when it was received.
fn tasmota_time(text: &str, timezone: Tz, received_ms: i64) -> Result<i64, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .map_err(|e| format!("Time {:?}: {e}", truncate(text)))?;
    let candidates: Vec<i64> = match timezone.from_local_datetime(&naive) {
        chrono::LocalResult::Single(at) => vec![at.timestamp_millis()],
        chrono::LocalResult::Ambiguous(a, b) => vec![a.timestamp_millis(), b.timestamp_millis()],
        chrono::LocalResult::None => Vec::new(),
    };
    candidates
        .into_iter()
        .min_by_key(|at| (at - received_ms).abs())
        .ok_or_else(|| format!("Time {:?} does not exist in {timezone}", truncate(text)))
}

fn number(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{:?} is not a number", truncate(text)))
}

fn json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

fn at<'v>(doc: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, key| match v {
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(key),
    })
}

/// Epoch seconds or milliseconds (told apart by size), or RFC 3339.
fn time(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            let t = n.as_f64().ok_or("the time is not a number")?;
            Ok(if t.abs() < 1e11 {
                (t * 1000.0).round() as i64
            } else {
                t.round() as i64
            })
        }
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|e| format!("time {:?}: {e}", truncate(s))),
        _ => Err("the time is neither a number nor an RFC 3339 string".into()),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn each_format_reads_its_value_and_time() {
        let s = parse(&Format::Number, b" 12.5\n", NOW).unwrap();
        assert_eq!(
            s,
            Sample {
                ts_ms: NOW,
                value: 12.5
            }
        );
        let json = Format::Json {
            value_path: path("m.0.kwh"),
            ts_path: Some(path("ts")),
        };
        let s = parse(&json, br#"{"m":[{"kwh":0.25}],"ts":1700000900}"#, NOW).unwrap();
        assert_eq!(
            s,
            Sample {
                ts_ms: 1_700_000_900_000,
                value: 0.25
            }
        );
        let s = parse(
            &json,
            br#"{"m":[{"kwh":1}],"ts":"2023-11-14T22:15:00Z"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(s.ts_ms, 1_700_000_100_000);
        let tasmota = Format::Tasmota {
            timezone: chrono_tz::Europe::Berlin,
        };
        let body = br#"{"Time":"2023-11-14T23:13:20","ENERGY":{"TotalStartTime":"x","Total":123.456,"Power":40}}"#;
        let s = parse(&tasmota, body, NOW).unwrap();
        assert_eq!(
            s,
            Sample {
                ts_ms: NOW,
                value: 123.456
            }
        );
        let status = br#"{"id":0,"apower":40.1,"aenergy":{"total":1234.5,"by_minute":[1,2,3],"minute_ts":1700000000}}"#;
        let s = parse(&Format::Shelly, status, 0).unwrap();
        assert_eq!(
            s,
            Sample {
                ts_ms: NOW,
                value: 1.2345
            }
        );
        let event = br#"{"src":"shellyplus1pm-x","method":"NotifyStatus","params":{"ts":1700000000.5,"switch:0":{"id":0,"aenergy":{"total":10}}}}"#;
        let s = parse(&Format::Shelly, event, 0).unwrap();
        assert_eq!(
            s,
            Sample {
                ts_ms: 1_700_000_000_500,
                value: 0.01
            }
        );
        let s = parse(&Format::Emonhub { field: 2 }, b"100,250.5,3", NOW).unwrap();
        assert_eq!(s.value, 250.5);
    }

    #[test]
    fn tasmota_times_with_offsets_and_in_the_repeated_hour() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-10-25 02:30 happens at 00:30Z and again at 01:30Z.
        let first = 1_792_888_200_000;
        let second = first + 3_600_000;
        let t = |received| tasmota_time("2026-10-25T02:30:00", berlin, received).unwrap();
        assert_eq!(t(first + 60_000), first);
        assert_eq!(t(second + 60_000), second);
        assert_eq!(
            tasmota_time("2026-10-25T02:30:00+01:00", berlin, 0).unwrap(),
            second
        );
        assert!(tasmota_time("2026-03-29T02:30:00", berlin, 0).is_err());
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        for (format, payload, wanted) in [
            (Format::Number, &b"abc"[..], "not a number"),
            (Format::Number, b"NaN", "not a number"),
            (Format::Number, b"\xff", "not UTF-8"),
            (
                Format::Tasmota {
                    timezone: chrono_tz::UTC,
                },
                b"{\"Time\":\"x\",\"ENERGY\":{}}",
                "ENERGY.Total",
            ),
            (
                Format::Tasmota {
                    timezone: chrono_tz::UTC,
                },
                b"{",
                "invalid JSON",
            ),
            (Format::Shelly, b"{\"apower\":1}", "aenergy"),
            (Format::Emonhub { field: 4 }, b"1,2,3", "fewer than 4"),
            (
                Format::Json {
                    value_path: path("v"),
                    ts_path: Some(path("t")),
                },
                b"{\"v\":1,\"t\":true}",
                "neither",
            ),
        ] {
            let e = parse(&format, payload, NOW).unwrap_err();
            assert!(e.contains(wanted), "{format:?}: {e}");
        }
    }
}
