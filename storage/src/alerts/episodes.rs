//! Episodes of one rule, derived from which windows are over the line.
//!
//! An episode is a run of consecutive windows over the line: `fired`
//! names its first window, `resolved` the first window after it that is
//! back under (or, when a correction brings the fired window itself back
//! under, that window), `renotified` the latest window while it is still
//! over after `alerts.renotify`. Reconciling is a pure function of the
//! over-windows in the look-back and the episodes already announced, so
//! a late reading that makes a past window cross the line fires for that
//! window, and running it twice announces nothing twice.

use std::collections::{BTreeMap, HashSet};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::model::EventKind;
use crate::ids::SensorKey;

/// A window's measure and the line it is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measure {
    pub(crate) kwh: f64,
    pub(crate) threshold: f64,
}

impl Measure {
    pub(crate) fn over(self) -> bool {
        self.kwh > self.threshold
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Episode {
    /// Start of the window that fired it (UTC ms).
    pub(crate) fired: i64,
    /// Start of the window that resolved it.
    pub(crate) resolved: Option<i64>,
    /// When it was last announced (fired or renotified), UTC ms.
    pub(crate) notified_ms: i64,
    /// Offline rules: the silent sensor (each its own episode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sensor: Option<String>,
}

/// What evaluation remembers between passes to read only what changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    /// Over-windows in the look-back.
    pub(crate) over: BTreeMap<i64, Measure>,
    /// The window generation read up to.
    pub(crate) seen: u64,
    /// Windows before this start have been evaluated.
    pub(crate) evaluated_to: i64,
}

/// What a rule needs from the catalog, kept while the catalog is
/// unchanged, so a pass looks up neither buildings nor sensors.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// [`crate::Catalog::version`] it was read at.
    pub(crate) version: u64,
    /// The building's zone; `None`: the building is gone (or is now
    /// another tenant's) and the rule is not evaluated.
    pub(crate) tz: Option<Tz>,
    /// Offline rules: the sensors watched.
    pub(crate) watched: Vec<(String, SensorKey)>,
    /// Offline rules without an open episode: no watched sensor can be
    /// silent before this instant (newest readings only move forward),
    /// so passes before it have nothing to do.
    pub(crate) quiet_until: i64,
}

/// A rule's durable state (its episodes) and its evaluation caches.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RuleState {
    pub(crate) episodes: Vec<Episode>,
    /// Window length and zone the episodes' windows are aligned to.
    #[serde(default)]
    pub(crate) alignment: Option<String>,
    #[serde(skip)]
    pub(crate) cache: Option<Cache>,
    #[serde(skip)]
    pub(crate) placement: Option<Placement>,
    /// The rule (set from the rules on open and on every rule write).
    #[serde(skip)]
    pub(crate) rule: Option<std::sync::Arc<super::model::AlertRule>>,
}

/// An event to announce: its kind, its window and that window's measure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    pub(crate) kind: EventKind,
    pub(crate) window: i64,
    pub(crate) measure: Measure,
    /// Offline rules: the end of the silence (now, or the reading that
    /// ended it) and the sensor.
    pub(crate) offline: Option<(i64, String)>,
}

/// Window arithmetic and measures of one rule's building.
pub(crate) trait Windows {
    fn next(&self, start: i64) -> i64;
    fn measure(&self, start: i64) -> Measure;
}

/// The clock of one reconciliation.
pub(crate) struct Clock {
    /// First window of the look-back.
    pub(crate) first: i64,
    /// First window not complete yet: windows before it are.
    pub(crate) newest: i64,
    pub(crate) now_ms: i64,
    pub(crate) renotify_ms: i64,
}

impl RuleState {
    pub(crate) fn forget_cache(&mut self) {
        self.cache = None;
        self.placement = None;
    }

    /// The episodes after this pass and the events that leads to.
    pub(crate) fn reconcile(
        &self,
        over: &BTreeMap<i64, Measure>,
        clock: &Clock,
        w: &impl Windows,
    ) -> (Vec<Episode>, Vec<Found>) {
        let mut eps = self.episodes.clone();
        let mut found = Vec::new();
        let mut alive: HashSet<i64> = HashSet::new();
        for (a, b) in runs(over, w) {
            let continued = || {
                (a == clock.first)
                    .then(|| eps.iter().position(|e| e.resolved.is_none() && e.fired < a))
                    .flatten()
            };
            let inside = |e: &Episode| (a..=b).contains(&e.fired);
            let mut idx = match eps
                .iter()
                .position(|e| e.resolved.is_none() && inside(e))
                .or_else(|| eps.iter().position(inside))
                .or_else(continued)
            {
                Some(i) => i,
                None => new_episode(&mut eps, &mut found, a, over[&a], clock.now_ms),
            };
            // A resolution inside the run was premature (late readings
            // extended it): the run goes on as a new episode.
            while let Some(r) = eps[idx].resolved.filter(|r| (a..=b).contains(r)) {
                idx = match eps.iter().position(|e| e.fired == r) {
                    Some(j) if j != idx => j,
                    Some(_) => break,
                    None => {
                        let m = over.get(&r).copied().unwrap_or_else(|| w.measure(r));
                        new_episode(&mut eps, &mut found, r, m, clock.now_ms)
                    }
                };
            }
            // Late readings that join two episodes into one run: the run
            // goes on as the one above; the others end without a word.
            let keep = eps[idx].fired;
            for e in eps.iter_mut() {
                if e.resolved.is_none() && e.fired != keep && (a..=b).contains(&e.fired) {
                    e.resolved = Some(e.fired);
                }
            }
            alive.extend(
                eps.iter()
                    .filter(|e| (a..=b).contains(&e.fired))
                    .map(|e| e.fired),
            );
            alive.insert(eps[idx].fired);
            let after = w.next(b);
            let e = &mut eps[idx];
            if e.resolved.is_none() {
                if after < clock.newest {
                    e.resolved = Some(after);
                    found.push(Found {
                        kind: EventKind::Resolved,
                        window: after,
                        measure: w.measure(after),
                        offline: None,
                    });
                } else if clock.now_ms - e.notified_ms >= clock.renotify_ms {
                    e.notified_ms = clock.now_ms;
                    found.push(Found {
                        kind: EventKind::Renotified,
                        window: b,
                        measure: over[&b],
                        offline: None,
                    });
                }
            }
        }
        // Open episodes no run holds any more: corrected back under.
        for e in eps.iter_mut() {
            if e.resolved.is_none() && !alive.contains(&e.fired) {
                let window = e.fired.max(clock.first);
                e.resolved = Some(window);
                found.push(Found {
                    kind: EventKind::Resolved,
                    window,
                    measure: w.measure(window),
                    offline: None,
                });
            }
        }
        eps.retain(|e| e.resolved.is_none_or(|r| r >= clock.first));
        (eps, found)
    }
}

fn new_episode(
    eps: &mut Vec<Episode>,
    found: &mut Vec<Found>,
    window: i64,
    measure: Measure,
    now_ms: i64,
) -> usize {
    eps.push(Episode {
        fired: window,
        resolved: None,
        notified_ms: now_ms,
        sensor: None,
    });
    found.push(Found {
        kind: EventKind::Fired,
        window,
        measure,
        offline: None,
    });
    eps.len() - 1
}

/// Maximal runs of consecutive over-windows, as (first, last) starts.
fn runs(over: &BTreeMap<i64, Measure>, w: &impl Windows) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &start in over.keys() {
        match out.last_mut() {
            Some((_, last)) if w.next(*last) == start => *last = start,
            _ => out.push((start, start)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hour-long windows numbered 0, 1, 2, ... with the given kWh and a
    /// threshold of 10.
    struct Hours(Vec<f64>);

    impl Windows for Hours {
        fn next(&self, start: i64) -> i64 {
            start + 1
        }
        fn measure(&self, start: i64) -> Measure {
            Measure {
                kwh: self.0.get(start as usize).copied().unwrap_or(0.0),
                threshold: 10.0,
            }
        }
    }

    fn pass(state: &mut RuleState, kwh: &[f64], now: i64) -> Vec<(EventKind, i64)> {
        pass_from(state, kwh, now, 0)
    }

    /// A pass whose look-back starts at window `first`.
    fn pass_from(
        state: &mut RuleState,
        kwh: &[f64],
        now: i64,
        first: i64,
    ) -> Vec<(EventKind, i64)> {
        let w = Hours(kwh.to_vec());
        let over = (first..kwh.len() as i64)
            .map(|i| (i, w.measure(i)))
            .filter(|(_, m)| m.over())
            .collect();
        let clock = Clock {
            first,
            newest: kwh.len() as i64,
            now_ms: now,
            renotify_ms: 100,
        };
        let (eps, found) = state.reconcile(&over, &clock, &w);
        state.episodes = eps;
        found.iter().map(|f| (f.kind, f.window)).collect()
    }

    use EventKind::*;

    #[test]
    fn a_run_fires_once_and_resolves_on_the_first_window_under() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, &[1.0, 11.0], 0), [(Fired, 1)]);
        assert_eq!(pass(&mut s, &[1.0, 11.0, 12.0], 1), []);
        assert_eq!(pass(&mut s, &[1.0, 11.0, 12.0, 3.0], 2), [(Resolved, 3)]);
        assert_eq!(pass(&mut s, &[1.0, 11.0, 12.0, 3.0, 4.0], 3), []);
    }

    #[test]
    fn a_late_reading_fires_for_its_past_window_and_resolves_after_it() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, &[1.0, 2.0, 3.0], 0), []);
        assert_eq!(
            pass(&mut s, &[1.0, 12.0, 3.0], 1),
            [(Fired, 1), (Resolved, 2)]
        );
        assert_eq!(pass(&mut s, &[1.0, 12.0, 3.0], 2), []);
    }

    #[test]
    fn a_correction_under_the_line_resolves_the_fired_window() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, &[1.0, 12.0], 0), [(Fired, 1)]);
        assert_eq!(pass(&mut s, &[1.0, 2.0], 1), [(Resolved, 1)]);
        assert_eq!(pass(&mut s, &[1.0, 2.0, 3.0], 2), []);
    }

    #[test]
    fn a_still_firing_episode_is_renotified_after_the_period() {
        let mut s = RuleState::default();
        assert_eq!(pass(&mut s, &[11.0], 0), [(Fired, 0)]);
        assert_eq!(pass(&mut s, &[11.0, 11.0], 99), []);
        assert_eq!(pass(&mut s, &[11.0, 11.0, 11.0], 100), [(Renotified, 2)]);
        assert_eq!(pass(&mut s, &[11.0, 11.0, 11.0, 11.0], 150), []);
    }

    #[test]
    fn late_readings_that_join_two_episodes_announce_nothing_twice() {
        let mut s = RuleState::default();
        assert_eq!(
            pass(&mut s, &[11.0, 1.0, 11.0], 0),
            [(Fired, 0), (Resolved, 1), (Fired, 2)]
        );
        assert_eq!(pass(&mut s, &[11.0, 11.0, 11.0, 1.0], 1), [(Resolved, 3)]);
        assert_eq!(pass_from(&mut s, &[11.0, 11.0, 11.0, 1.0], 2, 1), []);
        assert_eq!(pass_from(&mut s, &[11.0, 11.0, 11.0, 1.0], 3, 2), []);
    }

    #[test]
    fn late_readings_that_extend_a_resolved_run_open_a_new_episode() {
        let mut s = RuleState::default();
        assert_eq!(
            pass(&mut s, &[11.0, 1.0, 1.0], 0),
            [(Fired, 0), (Resolved, 1)]
        );
        assert_eq!(
            pass(&mut s, &[11.0, 11.0, 1.0], 1),
            [(Fired, 1), (Resolved, 2)]
        );
        assert_eq!(pass(&mut s, &[11.0, 11.0, 1.0], 2), []);
    }
}
