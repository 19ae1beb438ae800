//! Encoding of one batch in the write-ahead.
//!
//! ```text
//! record  = zstd(level 1, payload)
//! payload = version: u8 (= 1)
//!           count:   u32 LE
//!           keys:    count x u32 LE   sensor keys
//!           ts:      count x i64 LE   epoch milliseconds, delta-coded
//!           values:  count x f64 LE   kWh
//! ```
//!
//! Columns rather than rows, and timestamps as differences, give zstd long
//! runs of equal bytes: a batch from meters on a 15-minute grid shrinks to a
//! few bytes per reading.

use crate::ids::SensorKey;
use crate::reading::Reading;

const VERSION: u8 = 1;
const ZSTD_LEVEL: i32 = 1;

/// Encodes `readings` as one write-ahead record.
pub(crate) fn encode(readings: &[Reading]) -> Vec<u8> {
    let n = readings.len();
    let mut payload = Vec::with_capacity(5 + n * 20);
    payload.push(VERSION);
    payload.extend_from_slice(&(n as u32).to_le_bytes());
    for r in readings {
        payload.extend_from_slice(&r.sensor.0.to_le_bytes());
    }
    let mut prev = 0i64;
    for r in readings {
        payload.extend_from_slice(&r.ts_ms.wrapping_sub(prev).to_le_bytes());
        prev = r.ts_ms;
    }
    for r in readings {
        payload.extend_from_slice(&r.value_kwh.to_le_bytes());
    }
    zstd::bulk::compress(&payload, ZSTD_LEVEL).expect("zstd compression into a Vec cannot fail")
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode(record: &[u8]) -> Result<Vec<Reading>, String> {
    let payload = zstd::stream::decode_all(record).map_err(|e| format!("zstd: {e}"))?;
    let (&version, rest) = payload.split_first().ok_or("empty record")?;
    if version != VERSION {
        return Err(format!("unknown record version {version}"));
    }
    let count_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated header")?;
    let n = u32::from_le_bytes(count_bytes) as usize;
    let body = &rest[4..];
    if body.len() != n * 20 {
        return Err(format!(
            "record says {n} readings but holds {} bytes",
            body.len()
        ));
    }
    let (keys, rest) = body.split_at(n * 4);
    let (ts, values) = rest.split_at(n * 8);
    let mut prev = 0i64;
    let readings = keys
        .chunks_exact(4)
        .zip(ts.chunks_exact(8))
        .zip(values.chunks_exact(8))
        .map(|((k, t), v)| {
            let delta = i64::from_le_bytes(t.try_into().expect("8-byte chunk"));
            prev = prev.wrapping_add(delta);
            Reading {
                sensor: SensorKey(u32::from_le_bytes(k.try_into().expect("4-byte chunk"))),
                ts_ms: prev,
                value_kwh: f64::from_le_bytes(v.try_into().expect("8-byte chunk")),
            }
        })
        .collect();
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_including_extremes() {
        let readings = vec![
            Reading {
                sensor: SensorKey(7),
                ts_ms: 1_764_979_200_000,
                value_kwh: 1.25,
            },
            Reading {
                sensor: SensorKey(u32::MAX),
                ts_ms: i64::MIN,
                value_kwh: -0.5,
            },
            Reading {
                sensor: SensorKey(0),
                ts_ms: i64::MAX,
                value_kwh: f64::MAX,
            },
        ];
        assert_eq!(decode(&encode(&readings)).unwrap(), readings);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode(b"not zstd").is_err());
        let truncated = zstd::bulk::compress(&[VERSION, 2, 0, 0, 0, 1], 1).unwrap();
        assert!(decode(&truncated).is_err());
    }

    #[test]
    fn a_grid_batch_compresses_well() {
        let readings: Vec<Reading> = (0..10_000)
            .map(|i| Reading {
                sensor: SensorKey(i % 1000),
                ts_ms: 1_764_979_200_000 + i64::from(i / 1000) * 900_000,
                value_kwh: 1.0,
            })
            .collect();
        let bytes = encode(&readings).len();
        assert!(bytes < 10_000 * 4, "{bytes} bytes for 10,000 readings");
    }
}
