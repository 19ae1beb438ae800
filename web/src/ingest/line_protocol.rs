//! InfluxDB line protocol, as Telegraf and meter gateways send it:
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! The measurement name is free; the tag `sensor_id` and the numeric field
//! `value_kwh` are required; other tags and fields are ignored. Commas,
//! spaces and equals signs may be escaped with a backslash; string field
//! values are double-quoted. A line without a timestamp takes the server's
//! time, as InfluxDB does.

use super::{Item, RawReading};

/// Unit of the timestamps in a line-protocol body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ns" => Ok(Self::Nanoseconds),
            "us" => Ok(Self::Microseconds),
            "ms" => Ok(Self::Milliseconds),
            "s" => Ok(Self::Seconds),
            other => Err(format!("precision {other:?} is not one of ns, us, ms, s")),
        }
    }

    /// Converts a timestamp to epoch milliseconds (rounding towards the past).
    fn to_ms(self, ts: i64) -> Option<i64> {
        match self {
            Self::Nanoseconds => Some(ts.div_euclid(1_000_000)),
            Self::Microseconds => Some(ts.div_euclid(1_000)),
            Self::Milliseconds => Some(ts),
            Self::Seconds => ts.checked_mul(1_000),
        }
    }
}

/// Parses a line-protocol body, at most `limit + 1` readings (one more
/// than a batch may hold). Blank lines and `#` comments are skipped.
pub(crate) fn parse_lines(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Item>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    Ok(text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').trim_start()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .take(limit.saturating_add(1))
        .map(|(line, l)| Item {
            line: Some(line),
            reading: parse_line(l, precision, now_ms),
        })
        .collect())
}

fn parse_line(line: &str, precision: Precision, now_ms: i64) -> Result<RawReading, String> {
    let sections = split_unescaped(line, ' ', true);
    let sections: Vec<&str> = sections.into_iter().filter(|s| !s.is_empty()).collect();
    let (series, fields, ts) = match sections.as_slice() {
        [series, fields] => (*series, *fields, None),
        [series, fields, ts] => (*series, *fields, Some(*ts)),
        _ => {
            return Err(
                "expected \"measurement,tags fields [timestamp]\" separated by single spaces"
                    .into(),
            );
        }
    };

    let mut parts = split_unescaped(series, ',', false).into_iter();
    let measurement = parts.next().unwrap_or_default();
    if measurement.is_empty() {
        return Err("measurement name is missing".into());
    }
    let mut sensor_id = None;
    for tag in parts {
        let (k, v) = split_pair(tag).ok_or_else(|| format!("tag {tag:?} is not key=value"))?;
        if k == "sensor_id" {
            sensor_id = Some(v);
        }
    }
    let sensor_id = sensor_id.ok_or("tag sensor_id is missing")?;

    let mut value_kwh = None;
    for field in split_unescaped(fields, ',', true) {
        let (k, v) =
            split_pair(field).ok_or_else(|| format!("field {field:?} is not key=value"))?;
        if k == "value_kwh" {
            value_kwh = Some(parse_number(&v)?);
        }
    }
    let value_kwh = value_kwh.ok_or("field value_kwh is missing")?;

    let ts_ms = match ts {
        None => now_ms,
        Some(t) => {
            let raw: i64 = t
                .parse()
                .map_err(|_| format!("timestamp {t:?} is not an integer"))?;
            precision
                .to_ms(raw)
                .ok_or_else(|| format!("timestamp {t} is out of range"))?
        }
    };
    Ok(RawReading {
        sensor_id,
        ts_ms,
        value_kwh,
    })
}

/// Splits on `sep` where it is not escaped by a backslash (and, with
/// `quotes`, not inside a double-quoted string).
fn split_unescaped(s: &str, sep: char, quotes: bool) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped, mut quoted) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' if quotes => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Splits `key=value` at the first unescaped `=`, and unescapes both.
fn split_pair(s: &str) -> Option<(String, String)> {
    let parts = split_unescaped(s, '=', false);
    let key = *parts.first()?;
    let rest = s.get(key.len() + 1..)?;
    if key.is_empty() || rest.is_empty() {
        return None;
    }
    Some((unescape(key), unescape(rest)))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | ' ' | '=' | '\\' | '"')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A numeric field value: float, or integer with an `i` or `u` suffix.
fn parse_number(v: &str) -> Result<f64, String> {
    let digits = v
        .strip_suffix('i')
        .or_else(|| v.strip_suffix('u'))
        .unwrap_or(v);
    if v.starts_with('"') || matches!(v, "t" | "T" | "true" | "f" | "F" | "false") {
        return Err(format!("field value_kwh must be numeric, not {v}"));
    }
    digits
        .parse::<f64>()
        .map_err(|_| format!("field value_kwh {v:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str, p: Precision) -> Result<RawReading, String> {
        parse_line(line, p, 42)
    }

    #[test]
    fn parses_the_spec_example_at_every_precision() {
        let r = one(
            "energy,sensor_id=S value_kwh=1.25 1764979200000000000",
            Precision::Nanoseconds,
        )
        .unwrap();
        assert_eq!(
            (r.sensor_id.as_str(), r.ts_ms, r.value_kwh),
            ("S", 1_764_979_200_000, 1.25)
        );
        let us = one(
            "e,sensor_id=S value_kwh=1 1764979200000000",
            Precision::Microseconds,
        );
        assert_eq!(us.unwrap().ts_ms, 1_764_979_200_000);
        let ms = one(
            "e,sensor_id=S value_kwh=1 1764979200000",
            Precision::Milliseconds,
        );
        assert_eq!(ms.unwrap().ts_ms, 1_764_979_200_000);
        let s = one("e,sensor_id=S value_kwh=1 1764979200", Precision::Seconds);
        assert_eq!(s.unwrap().ts_ms, 1_764_979_200_000);
        let now = one("e,sensor_id=S value_kwh=1", Precision::Seconds);
        assert_eq!(now.unwrap().ts_ms, 42);
    }

    #[test]
    fn handles_escapes_other_tags_fields_and_integer_values() {
        let r = one(
            r#"my\ energy,site=a\,b,sensor_id=m\=1 note="a b, c",value_kwh=3i,ok=t 1000"#,
            Precision::Milliseconds,
        )
        .unwrap();
        assert_eq!(
            (r.sensor_id.as_str(), r.value_kwh, r.ts_ms),
            ("m=1", 3.0, 1000)
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let p = Precision::Nanoseconds;
        let err = |l: &str| one(l, p).unwrap_err();
        assert!(err("e value_kwh=1 1").contains("sensor_id is missing"));
        assert!(err("e,sensor_id=S other=1 1").contains("value_kwh is missing"));
        assert!(err("e,sensor_id=S value_kwh=\"x\" 1").contains("numeric"));
        assert!(err("e,sensor_id=S value_kwh=1 soon").contains("not an integer"));
        assert!(err("e,sensor_id=S").contains("expected"));
        assert!(err(",sensor_id=S value_kwh=1").contains("measurement"));
        assert!(
            one(
                "e,sensor_id=S value_kwh=1 9223372036854775807",
                Precision::Seconds
            )
            .is_err()
        );
    }

    #[test]
    fn skips_comments_and_blank_lines_and_numbers_lines() {
        let body = b"# header\n\ne,sensor_id=A value_kwh=1 1\r\nbad line here x\n";
        let items = parse_lines(body, Precision::Nanoseconds, 0, 100).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].line, Some(3));
        assert_eq!(items[1].line, Some(4));
        assert!(items[1].reading.is_err());
    }
}
