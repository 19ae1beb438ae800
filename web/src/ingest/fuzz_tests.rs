//! Property tests standing in for fuzz targets: every ingestion parser on
//! arbitrary bytes and on mangled valid bodies never panics, never returns
//! more than one item past the batch limit, and reads valid bodies back
//! exactly.

use proptest::prelude::*;

use super::line_protocol::{Precision, parse_lines};
use super::{Item, RawReading, csv, json};

const LIMIT: usize = 50;

/// A parser under test, by name.
type Parser = (&'static str, fn(&[u8]) -> Result<Vec<Item>, String>);

fn parsers() -> [Parser; 4] {
    [
        ("json", |b| json::parse_document(b, LIMIT)),
        ("ndjson", |b| json::parse_ndjson(b, LIMIT)),
        ("csv", |b| csv::parse_csv(b, LIMIT)),
        ("line protocol", |b| {
            parse_lines(b, Precision::Milliseconds, 0, LIMIT)
        }),
    ]
}

fn reading() -> impl Strategy<Value = RawReading> {
    (
        "[A-Za-z0-9_.:-]{1,64}",
        -4_000_000_000_000i64..4_000_000_000_000i64,
        -1e9f64..1e9f64,
    )
        .prop_map(|(sensor_id, ts_ms, value_kwh)| RawReading {
            sensor_id,
            ts_ms,
            value_kwh,
        })
}

/// `readings` in each format (ts as epoch milliseconds).
fn bodies(readings: &[RawReading]) -> [Vec<u8>; 4] {
    let json_rows: Vec<String> = readings
        .iter()
        .map(|r| {
            format!(
                r#"{{"sensor_id":"{}","ts":{},"value_kwh":{:?}}}"#,
                r.sensor_id, r.ts_ms, r.value_kwh
            )
        })
        .collect();
    let csv_rows: Vec<String> = readings
        .iter()
        .map(|r| format!("{},{},{:?}", r.sensor_id, r.ts_ms, r.value_kwh))
        .collect();
    let lp_rows: Vec<String> = readings
        .iter()
        .map(|r| {
            format!(
                "energy,sensor_id={} value_kwh={:?} {}",
                r.sensor_id, r.value_kwh, r.ts_ms
            )
        })
        .collect();
    [
        format!(r#"{{"readings":[{}]}}"#, json_rows.join(",")).into_bytes(),
        json_rows.join("\n").into_bytes(),
        format!("sensor_id,ts,value_kwh\n{}", csv_rows.join("\n")).into_bytes(),
        lp_rows.join("\n").into_bytes(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_stop_past_the_limit(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for (_, parse) in parsers() {
            if let Ok(items) = parse(&body) {
                prop_assert!(items.len() <= LIMIT + 1);
            }
        }
    }

    #[test]
    fn valid_bodies_read_back_exactly(readings in proptest::collection::vec(reading(), 1..LIMIT)) {
        for ((name, parse), body) in parsers().into_iter().zip(bodies(&readings)) {
            let items = parse(&body).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            let got: Vec<RawReading> = items
                .into_iter()
                .map(|i| i.reading.map_err(|e| TestCaseError::fail(format!("{name}: {e}"))))
                .collect::<Result<_, _>>()?;
            prop_assert_eq!(&got, &readings, "{}", name);
        }
    }

    #[test]
    fn mangled_valid_bodies_never_panic(
        readings in proptest::collection::vec(reading(), 1..3 * LIMIT),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        for ((_, parse), mut body) in parsers().into_iter().zip(bodies(&readings)) {
            for (at, byte) in &cuts {
                let i = at.index(body.len().max(1));
                if i < body.len() {
                    body[i] = *byte;
                }
            }
            if let Ok(items) = parse(&body) {
                prop_assert!(items.len() <= LIMIT + 1);
            }
        }
    }
}
