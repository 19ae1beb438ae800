//! `text/csv`: a header naming `sensor_id`, `ts` and `value_kwh` (in any
//! order, nothing else), then one reading a row. `ts` is RFC 3339 or epoch
//! milliseconds.

use super::timestamp::parse_text_ms;
use super::{Item, RawReading};

/// Parses a CSV body; `Err` when the header is wrong.
/// At most `limit + 1` readings are parsed (one more than a batch may hold).
pub(crate) fn parse_csv(body: &[u8], limit: usize) -> Result<Vec<Item>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| format!("unreadable CSV header: {e}"))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(si), Some(ti), Some(vi)) = (column("sensor_id"), column("ts"), column("value_kwh"))
    else {
        return Err(format!(
            "CSV header must be sensor_id,ts,value_kwh; got {:?}",
            header.iter().collect::<Vec<_>>().join(",")
        ));
    };
    if header.len() != 3 {
        return Err(format!(
            "CSV header must have exactly the columns sensor_id,ts,value_kwh; got {}",
            header.iter().collect::<Vec<_>>().join(",")
        ));
    }
    // The csv crate's own line numbers drift on CRLF input, so lines are
    // counted here from each record's byte offset.
    let mut lines = LineCounter::new(body);
    let mut items = Vec::new();
    for record in reader.records() {
        let item = match record {
            Ok(rec) => {
                let line = rec.position().map(|p| lines.line_at(p.byte() as usize));
                let reading = if rec.len() == 1 && rec[0].is_empty() {
                    continue; // a blank line
                } else if rec.len() != 3 {
                    Err(format!("row has {} fields; expected 3", rec.len()))
                } else {
                    parse_row(&rec[si], &rec[ti], &rec[vi])
                };
                Item { line, reading }
            }
            Err(e) => Item {
                line: e.position().map(|p| lines.line_at(p.byte() as usize)),
                reading: Err(format!("unreadable CSV row: {e}")),
            },
        };
        items.push(item);
        if items.len() > limit {
            break;
        }
    }
    Ok(items)
}

/// 1-based line of a byte offset, for offsets that only grow.
struct LineCounter<'a> {
    body: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            body,
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        // A record's offset may point at the line break before it.
        let mut end = offset.min(self.body.len());
        while end < self.body.len() && matches!(self.body[end], b'\r' | b'\n') {
            end += 1;
        }
        if end > self.offset {
            self.line += self.body[self.offset..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = end;
        }
        self.line
    }
}

fn parse_row(sensor_id: &str, ts: &str, value: &str) -> Result<RawReading, String> {
    if sensor_id.is_empty() {
        return Err("sensor_id is empty".into());
    }
    let ts_ms = parse_text_ms(ts)?;
    let value_kwh = value
        .parse::<f64>()
        .map_err(|_| format!("value_kwh {value:?} is not a number"))?;
    Ok(RawReading {
        sensor_id: sensor_id.to_owned(),
        ts_ms,
        value_kwh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_with_line_numbers() {
        let body = b"sensor_id,ts,value_kwh\r\ns1,2025-12-06T00:00:00Z,1.5\r\n\r\ns1,1764979200000,x\ns2,5\n";
        let items = parse_csv(body, 100).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].line, Some(2));
        assert_eq!(
            items[0].reading,
            Ok(RawReading {
                sensor_id: "s1".into(),
                ts_ms: 1_764_979_200_000,
                value_kwh: 1.5
            })
        );
        assert_eq!(items[1].line, Some(4));
        assert!(
            items[1]
                .reading
                .clone()
                .unwrap_err()
                .contains("not a number")
        );
        assert!(items[2].reading.clone().unwrap_err().contains("2 fields"));
    }

    #[test]
    fn accepts_reordered_columns_and_refuses_bad_headers() {
        let items = parse_csv(b"ts,value_kwh,sensor_id\n1,2,s\n", 100).unwrap();
        assert_eq!(items[0].reading.clone().unwrap().sensor_id, "s");
        assert!(parse_csv(b"sensor,ts,value\n", 100).is_err());
        assert!(parse_csv(b"sensor_id,ts,value_kwh,extra\n", 100).is_err());
        assert_eq!(parse_csv(b"sensor_id,ts,value_kwh\n", 100).unwrap(), vec![]);
    }
}
