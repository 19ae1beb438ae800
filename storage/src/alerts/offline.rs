//! Offline rules: a meter whose newest reading is older than the rule's
//! `for`. Each silent sensor is an episode of its own: `fired` once it
//! has been silent that long (the window runs from its last reading to
//! now), `resolved` when a newer reading arrives, `renotified` while it
//! stays silent past `alerts.renotify`. Silent meters are the most common
//! real fault, and a threshold rule cannot see them.

use std::borrow::Cow;

use super::episodes::{Episode, Found, Measure};
use super::model::EventKind;

/// Nothing is measured: an offline event carries zero kWh.
const NOTHING: Measure = Measure {
    kwh: 0.0,
    threshold: 0.0,
};

/// The episodes after this pass and the events, for the rule's open
/// `episodes` and `sensors` (id and
/// newest reading time; `None`: not seen since the store opened); `None`
/// when nothing changes (the common case, found without copying).
pub(crate) fn reconcile(
    episodes: &Vec<Episode>,
    sensors: &[(&str, Option<i64>)],
    silence_ms: i64,
    now_ms: i64,
    renotify_ms: i64,
) -> Option<(Vec<Episode>, Vec<Found>)> {
    let mut eps = Cow::Borrowed(episodes);
    let mut found = Vec::new();
    let event = |kind, window, end, sensor: &str| Found {
        kind,
        window,
        measure: NOTHING,
        offline: Some((end, sensor.to_owned())),
    };
    for &(id, last) in sensors {
        let open = eps
            .iter()
            .position(|e| e.resolved.is_none() && e.sensor.as_deref() == Some(id));
        let Some(last) = last else { continue };
        let silent = now_ms - last >= silence_ms;
        match open {
            None if silent => {
                eps.to_mut().push(Episode {
                    fired: last,
                    resolved: None,
                    notified_ms: now_ms,
                    sensor: Some(id.to_owned()),
                });
                found.push(event(EventKind::Fired, last, now_ms, id));
            }
            Some(i) if !silent || last > eps[i].fired => {
                let e = &mut eps.to_mut()[i];
                e.resolved = Some(last);
                found.push(event(EventKind::Resolved, e.fired, last, id));
            }
            Some(i) if now_ms - eps[i].notified_ms >= renotify_ms => {
                let e = &mut eps.to_mut()[i];
                e.notified_ms = now_ms;
                found.push(event(EventKind::Renotified, e.fired, now_ms, id));
            }
            _ => {}
        }
    }
    match eps {
        Cow::Borrowed(_) => None,
        Cow::Owned(mut eps) => {
            eps.retain(|e| e.resolved.is_none());
            Some((eps, found))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::episodes::RuleState;

    fn pass(state: &mut RuleState, last: Option<i64>, now: i64) -> Vec<(EventKind, i64)> {
        let Some((eps, found)) = reconcile(&state.episodes, &[("m1", last)], 30, now, 100) else {
            return vec![];
        };
        state.episodes = eps;
        found.iter().map(|f| (f.kind, f.window)).collect()
    }

    use EventKind::*;

    #[test]
    fn a_meter_silent_for_the_period_fires_once_and_resolves_when_it_reports() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, Some(0), 29), []);
        assert_eq!(pass(&mut s, Some(0), 30), [(Fired, 0)]);
        assert_eq!(pass(&mut s, Some(0), 60), []);
        assert_eq!(pass(&mut s, Some(61), 62), [(Resolved, 0)]);
        assert_eq!(pass(&mut s, Some(61), 63), []);
    }

    #[test]
    fn a_late_reading_from_the_gap_also_ends_the_silence_and_renotify_repeats() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, Some(0), 40), [(Fired, 0)]);
        assert_eq!(pass(&mut s, Some(0), 140), [(Renotified, 0)]);
        // A reading from inside the gap still shows the meter is alive.
        assert_eq!(pass(&mut s, Some(20), 150), [(Resolved, 0)]);
        // ... and a new silence after it is a new episode.
        assert_eq!(pass(&mut s, Some(20), 151), [(Fired, 20)]);
    }

    #[test]
    fn a_meter_never_seen_is_not_judged() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, None, 1_000), []);
    }
}
