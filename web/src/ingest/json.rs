//! `application/json` (`{"readings":[...]}`) and `application/x-ndjson`
//! (one reading object a line).
//!
//! The envelope is parsed first with each reading kept as raw JSON; then
//! each reading is parsed on its own, so one bad reading yields an error for
//! that index instead of failing the whole document.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::timestamp::parse_rfc3339_ms;
use super::{Item, RawReading};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    readings: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReading<'a> {
    #[serde(borrow)]
    sensor_id: std::borrow::Cow<'a, str>,
    ts: serde_json::Value,
    value_kwh: f64,
}

/// Parses a JSON document body; `Err` when the document itself is not the
/// expected envelope.
/// At most `limit + 1` readings are parsed: one more than a batch may
/// hold tells the caller the batch is too large, without building an item
/// (and an error message) for every reading of a huge body.
pub(crate) fn parse_document(body: &[u8], limit: usize) -> Result<Vec<Item>, String> {
    let envelope: Envelope<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("body is not {{\"readings\": [...]}}: {e}"))?;
    Ok(envelope
        .readings
        .iter()
        .take(limit.saturating_add(1))
        .map(|raw| Item {
            line: None,
            reading: parse_reading(raw.get()),
        })
        .collect())
}

/// Parses an NDJSON body, at most `limit + 1` readings; blank lines are
/// skipped.
pub(crate) fn parse_ndjson(body: &[u8], limit: usize) -> Result<Vec<Item>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    Ok(text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .take(limit.saturating_add(1))
        .map(|(i, l)| Item {
            line: Some(i + 1),
            reading: parse_reading(l),
        })
        .collect())
}

fn parse_reading(json: &str) -> Result<RawReading, String> {
    let r: JsonReading<'_> = serde_json::from_str(json).map_err(|e| {
        // serde_json appends " at line L column C" of the fragment, which
        // means nothing to the client; the item's index says where.
        let msg = e.to_string();
        match msg.rfind(" at line ") {
            Some(cut) => msg[..cut].to_owned(),
            None => msg,
        }
    })?;
    let ts_ms = match &r.ts {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("ts {n} must be whole epoch milliseconds"))?,
        serde_json::Value::String(s) => parse_rfc3339_ms(s)?,
        other => {
            return Err(format!(
                "ts must be an RFC 3339 string or epoch milliseconds, not {other}"
            ));
        }
    };
    Ok(RawReading {
        sensor_id: r.sensor_id.into_owned(),
        ts_ms,
        value_kwh: r.value_kwh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_and_bad_readings_separately() {
        let body = br#"{"readings":[
            {"sensor_id":"s1","ts":"2025-12-06T00:00:00Z","value_kwh":1.5},
            {"sensor_id":"s1","ts":1764979200000,"value_kwh":2},
            {"sensor_id":"s1","ts":"noon","value_kwh":1},
            {"sensor_id":"s1","ts":1,"value_kwh":"x"},
            {"sensor_id":"s1","ts":1,"value_kwh":1,"extra":true},
            {"sensor_id":"s1","ts":1.5,"value_kwh":1},
            {"sensor_id":"s1","value_kwh":1}
        ]}"#;
        let items = parse_document(body, 100).unwrap();
        assert_eq!(items.len(), 7);
        assert_eq!(
            items[0].reading,
            Ok(RawReading {
                sensor_id: "s1".into(),
                ts_ms: 1_764_979_200_000,
                value_kwh: 1.5
            })
        );
        assert!(items[1].reading.is_ok());
        for (i, needle) in [
            (2, "RFC 3339"),
            (3, "invalid type"),
            (4, "unknown field `extra`"),
            (5, "whole epoch"),
            (6, "missing field `ts`"),
        ] {
            let err = items[i].reading.clone().unwrap_err();
            assert!(err.contains(needle), "item {i}: {err}");
        }
    }

    #[test]
    fn refuses_a_bad_envelope() {
        assert!(parse_document(b"{\"readings\":[", 100).is_err());
        assert!(parse_document(b"[1,2]", 100).is_err());
        assert!(parse_document(b"{\"readings\":[],\"x\":1}", 100).is_err());
    }

    #[test]
    fn an_infinite_value_is_a_reading_error() {
        let items = parse_document(
            br#"{"readings":[{"sensor_id":"s","ts":0,"value_kwh":1e999}]}"#,
            100,
        )
        .unwrap();
        let err = items[0].reading.clone().unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn ndjson_keeps_line_numbers() {
        let body = b"{\"sensor_id\":\"a\",\"ts\":1,\"value_kwh\":1}\n\n{bad\r\n";
        let items = parse_ndjson(body, 100).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].line, Some(1));
        assert_eq!(items[1].line, Some(3));
        assert!(items[1].reading.is_err());
    }
}
