//! Timestamps in and out: RFC 3339 with an offset, or integer epoch
//! milliseconds, in; RFC 3339 UTC out.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 instant (offset required) to epoch milliseconds;
/// fractions below a millisecond are dropped (rounded towards the past).
pub(crate) fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("ts {s:?} is not an RFC 3339 time with offset ({e})"))
}

/// Parses `ts` given as text: digits are epoch milliseconds, anything else
/// RFC 3339.
pub(crate) fn parse_text_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if !t.is_empty()
        && t.trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return t
            .parse::<i64>()
            .map_err(|_| format!("ts {t:?} is out of range for epoch milliseconds"));
    }
    parse_rfc3339_ms(t)
}

/// Formats epoch milliseconds as RFC 3339 in UTC (`...Z`, with milliseconds
/// only when there are some).
pub(crate) fn format_utc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_integers() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.0015Z"), Ok(1));
        assert!(parse_rfc3339_ms("1970-01-01T00:00:00").is_err());
        assert!(parse_rfc3339_ms("yesterday").is_err());
        assert_eq!(parse_text_ms("1764979200000"), Ok(1_764_979_200_000));
        assert_eq!(parse_text_ms("-5"), Ok(-5));
        assert!(parse_text_ms("99999999999999999999").is_err());
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(1_764_979_200_000), "2025-12-06T00:00:00Z");
        assert_eq!(format_utc(1_764_979_200_250), "2025-12-06T00:00:00.250Z");
    }
}
