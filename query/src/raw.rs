//! Raw readings of one sensor over a time range.

use wattline_storage::{ReadingStore, SensorKey, TimeRange};

/// A sensor's readings in time order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SensorReadings {
    /// `(ts_ms, value_kwh)`, strictly increasing in `ts_ms`.
    pub points: Vec<(i64, f64)>,
    /// True when the range held more than the limit.
    pub truncated: bool,
}

/// The readings of `sensor` in `range`, at most `limit`, deduplicated across
/// every storage tier.
pub fn sensor_readings(
    store: &ReadingStore,
    sensor: SensorKey,
    range: TimeRange,
    limit: usize,
) -> SensorReadings {
    // Ask each tier for one more than the limit: that is enough to know
    // whether the merged answer was cut.
    let hot = store.hot().range(sensor, range, limit.saturating_add(1));
    merge_newest_wins(vec![hot.points], limit)
}

/// Merges time-ordered sources, oldest tier first. Where several sources
/// hold the same timestamp the last source's value wins (a hot correction
/// replaces a persisted value). Keeps at most `limit` points.
pub fn merge_newest_wins(sources: Vec<Vec<(i64, f64)>>, limit: usize) -> SensorReadings {
    let mut cursors: Vec<_> = sources
        .into_iter()
        .map(|s| s.into_iter().peekable())
        .collect();
    let mut points = Vec::new();
    loop {
        let Some(ts) = cursors
            .iter_mut()
            .filter_map(|c| c.peek().map(|p| p.0))
            .min()
        else {
            return SensorReadings {
                points,
                truncated: false,
            };
        };
        if points.len() == limit {
            return SensorReadings {
                points,
                truncated: true,
            };
        }
        let mut value = None;
        for c in &mut cursors {
            if let Some(&(t, v)) = c.peek()
                && t == ts
            {
                value = Some(v);
                c.next();
            }
        }
        points.push((ts, value.expect("some cursor held the minimum")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_limit_cuts() {
        let cold = vec![(1, 1.0), (2, 2.0), (4, 4.0)];
        let hot = vec![(2, 20.0), (3, 30.0)];
        let all = merge_newest_wins(vec![cold.clone(), hot.clone()], 10);
        assert_eq!(all.points, vec![(1, 1.0), (2, 20.0), (3, 30.0), (4, 4.0)]);
        assert!(!all.truncated);
        let cut = merge_newest_wins(vec![cold, hot], 2);
        assert_eq!(cut.points, vec![(1, 1.0), (2, 20.0)]);
        assert!(cut.truncated);
    }

    #[test]
    fn exactly_limit_points_is_not_truncated() {
        let got = merge_newest_wins(vec![vec![(1, 1.0), (2, 2.0)]], 2);
        assert!(!got.truncated);
        assert!(merge_newest_wins(vec![], 5).points.is_empty());
    }
}
