//! One evaluation pass over every enabled rule of every building.
//!
//! The pass reads window energy from the rollups in memory (no query per
//! building) and re-reads only windows whose buckets changed since the
//! last pass, plus the windows completed since. Its events, their outbox
//! rows and the changed episode state are committed in one transaction.

use std::sync::Arc;
use std::time::Instant;

use chrono_tz::Tz;
use redb::ReadableTable;

use super::db::{AlertStore, BUILDING_EVENTS, Delivery, EVENTS, META, OUTBOX, RULE_STATE, to_json};
use super::episodes::{Cache, Clock, Episode, Found, Measure, Placement, RuleState, Windows};
use super::model::{AlertEvent, AlertRule, Recipient, RuleKind};
use crate::catalog::{Catalog, CatalogView};
use crate::error::Result;
use crate::last_seen::LastSeen;
use crate::reading::DAY_MS;
use crate::rollup::{QUARTER_DAYS, Rollups, WindowReader, WindowSpan};
use crate::sync::Recover;

/// Timing of evaluation (from `alerts.*`).
#[derive(Debug, Clone, Copy)]
pub struct EvalSettings {
    /// How far back a window may still change and be announced.
    pub lookback_ms: i64,
    /// Re-announce an episode still over after this long.
    pub renotify_ms: i64,
    /// A window is read once it has been complete this long, so readings
    /// on their way and the rollup step have landed.
    pub settle_ms: i64,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub rules: usize,
    pub windows_read: usize,
    pub events: Vec<AlertEvent>,
    /// Time spent finding what changed, in memory.
    pub detect: std::time::Duration,
    /// Time spent making the events and state durable (zero when the pass
    /// found nothing to record).
    pub commit: std::time::Duration,
}

/// What `rule` needs from the catalog as it is now.
fn place(view: &CatalogView<'_>, rule: &AlertRule, version: u64) -> Placement {
    let building = view
        .building(rule.building_id.as_str())
        .filter(|b| b.tenant_id == rule.tenant_id);
    let watched = match (building, rule.kind) {
        (Some(b), RuleKind::Offline) => view
            .sensors_of(b.id.as_str())
            .filter(|s| match &rule.sensor_id {
                Some(one) => s.id == *one,
                None => s.is_active,
            })
            .map(|s| (s.id.as_str().to_owned(), s.key))
            .collect(),
        _ => Vec::new(),
    };
    Placement {
        version,
        tz: building.map(|b| b.timezone.tz()),
        watched,
        quiet_until: i64::MIN,
    }
}

/// Episodes are named by window starts: a window rule whose window length
/// or zone changed starts over.
fn align(state: &mut RuleState, rule: &AlertRule, tz: Option<Tz>) {
    let (Some(tz), false) = (tz, rule.kind == RuleKind::Offline) else {
        return;
    };
    let span = rule.window;
    let aligned = state.alignment.as_deref().and_then(|a| a.split_once('@'))
        == Some((span.name(), tz.name()));
    if !aligned {
        if state.alignment.is_some() {
            state.episodes.clear();
        }
        state.cache = None;
        state.alignment = Some(format!("{}@{}", span.name(), tz.name()));
    }
}

/// A rule whose episodes changed: its building's zone, its new episodes
/// and the events.
type Pending = (Arc<AlertRule>, Tz, Vec<Episode>, Vec<Found>);

/// One rule's view of its building's windows.
struct RuleWindows<'a> {
    reader: &'a WindowReader<'a>,
    rule: &'a AlertRule,
    tz: Tz,
}

impl Windows for RuleWindows<'_> {
    fn next(&self, start: i64) -> i64 {
        self.rule.window.next(self.tz, start)
    }

    fn measure(&self, start: i64) -> Measure {
        let b = self.rule.building_id.as_str();
        let span = self.rule.window;
        let kwh = self
            .reader
            .energy(b, span, self.tz, start)
            .map_or(0.0, |a| a.kwh);
        let threshold = match self.rule.kind {
            RuleKind::Threshold => self.rule.threshold_kwh.unwrap_or(f64::INFINITY),
            RuleKind::Baseline => baseline(self.reader, self.rule, self.tz, start),
            RuleKind::Offline => f64::INFINITY,
        };
        Measure { kwh, threshold }
    }
}

/// The median of the same local window over the rule's weeks, raised by
/// its percent; infinite (never over) with fewer than half the weeks seen.
fn baseline(reader: &WindowReader<'_>, rule: &AlertRule, tz: Tz, start: i64) -> f64 {
    let weeks = rule.weeks.unwrap_or(4);
    let mut seen: Vec<f64> = (1..=weeks)
        .filter_map(|k| {
            reader
                .weeks_earlier(rule.building_id.as_str(), rule.window, tz, start, k)
                .map(|a| a.kwh)
        })
        .collect();
    if seen.is_empty() || seen.len() * 2 < weeks as usize {
        return f64::INFINITY;
    }
    seen.sort_by(f64::total_cmp);
    let n = seen.len();
    let median = if n % 2 == 1 {
        seen[n / 2]
    } else {
        (seen[n / 2 - 1] + seen[n / 2]) / 2.0
    };
    median * (1.0 + rule.percent.unwrap_or(0.0) / 100.0)
}

impl AlertStore {
    /// Evaluates every enabled rule at `now_ms`. Blocking; one at a time.
    pub fn evaluate(
        &self,
        now_ms: i64,
        rollups: &Rollups,
        last_seen: &LastSeen,
        catalog: &Catalog,
        settings: &EvalSettings,
    ) -> Result<PassReport> {
        let started = Instant::now();
        let mut states = self.states.locked();
        let mut report = PassReport::default();
        let mut pending: Vec<Pending> = Vec::new();
        // First what the catalog alone answers (offline rules) and each
        // window rule's zone, with the catalog read before the rollups
        // (their steps take the two the other way round) and released.
        let mut targets: Vec<(Arc<AlertRule>, Tz, &mut RuleState)> = Vec::new();
        {
            let view = catalog.view();
            // Read under the view: a change bumps it after applying.
            let version = catalog.version();
            let newest = last_seen.reader();
            for state in states.values_mut() {
                let Some(rule) = state.rule.clone().filter(|r| r.enabled) else {
                    continue;
                };
                if state
                    .placement
                    .as_ref()
                    .is_none_or(|p| p.version != version)
                {
                    let p = place(&view, &rule, version);
                    align(state, &rule, p.tz);
                    state.placement = Some(p);
                }
                let place = state.placement.as_mut().expect("placed above");
                let Some(tz) = place.tz else { continue };
                report.rules += 1;
                let (RuleKind::Offline, Some(silence)) = (rule.kind, &rule.silent_for) else {
                    targets.push((rule, tz, state));
                    continue;
                };
                if state.episodes.is_empty() && now_ms < place.quiet_until {
                    continue;
                }
                let watched: Vec<(&str, Option<i64>)> = place
                    .watched
                    .iter()
                    .map(|(id, key)| (id.as_str(), newest.get(*key)))
                    .collect();
                place.quiet_until = watched
                    .iter()
                    .map(|(_, last)| last.map_or(i64::MIN, |t| t.saturating_add(silence.ms())))
                    .min()
                    .unwrap_or(i64::MAX);
                if let Some((episodes, found)) = super::offline::reconcile(
                    &state.episodes,
                    &watched,
                    silence.ms(),
                    now_ms,
                    settings.renotify_ms,
                ) {
                    pending.push((rule, tz, episodes, found));
                }
            }
        }
        let reader = rollups.windows();
        let quarters_from = (now_ms.div_euclid(DAY_MS) - (QUARTER_DAYS - 1)) * DAY_MS;
        let mut bounds: std::collections::HashMap<(WindowSpan, Tz), (i64, i64)> =
            std::collections::HashMap::new();
        for (rule, tz, state) in targets {
            let span: WindowSpan = rule.window;
            // The same for every rule of this window length and zone.
            let (first, newest) = *bounds.entry((span, tz)).or_insert_with(|| {
                let mut first = span.start_of(tz, now_ms - settings.lookback_ms);
                if span == WindowSpan::Quarter {
                    first = first.max(quarters_from);
                }
                (first, span.start_of(tz, now_ms - settings.settle_ms))
            });
            let w = RuleWindows {
                reader: &reader,
                rule: &rule,
                tz,
            };
            let mut cache = state.cache.take().unwrap_or(Cache {
                over: Default::default(),
                seen: 0,
                evaluated_to: i64::MIN,
            });
            // Re-read from the earliest changed window, then the new ones.
            let from = match reader.changed_since(rule.building_id.as_str(), span, cache.seen) {
                Some(changed) => cache
                    .evaluated_to
                    .min(span.start_of(tz, changed.max(first))),
                None => cache.evaluated_to,
            }
            .max(first);
            cache.seen = reader.generation();
            if cache
                .over
                .first_key_value()
                .is_some_and(|(k, _)| *k < first)
            {
                cache.over = cache.over.split_off(&first);
            }
            if cache.over.last_key_value().is_some_and(|(k, _)| *k >= from) {
                let _ = cache.over.split_off(&from);
            }
            let mut start = from;
            let mut read = 0;
            while start < newest {
                let m = w.measure(start);
                read += 1;
                if m.over() {
                    cache.over.insert(start, m);
                }
                start = span.next(tz, start);
            }
            report.windows_read += read;
            cache.evaluated_to = newest.max(from);
            // Nothing read and no episode due for a reminder: nothing new
            // to announce (the common pass).
            let renotify_due = state
                .episodes
                .iter()
                .any(|e| e.resolved.is_none() && now_ms - e.notified_ms >= settings.renotify_ms);
            if read == 0 && !renotify_due {
                state.cache = Some(cache);
                continue;
            }
            let clock = Clock {
                first,
                newest,
                now_ms,
                renotify_ms: settings.renotify_ms,
            };
            let (episodes, found) = state.reconcile(&cache.over, &clock, &w);
            state.cache = Some(cache);
            if episodes != state.episodes {
                pending.push((rule.clone(), tz, episodes, found));
            }
        }
        drop(reader);
        report.detect = started.elapsed();
        if !pending.is_empty() {
            let committing = Instant::now();
            let outcome = self.commit_pass(now_ms, &pending, &states, &mut report);
            if outcome.is_err() {
                // Nothing was recorded: read these rules afresh next pass.
                for (rule, ..) in &pending {
                    if let Some(s) = states.get_mut(&rule.id) {
                        s.forget_cache();
                    }
                }
                outcome?;
            }
            report.commit = committing.elapsed();
            for (rule, _, episodes, _) in pending {
                if let Some(s) = states.get_mut(&rule.id) {
                    s.episodes = episodes;
                }
            }
        }
        metrics::histogram!("wattline_alert_pass_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("wattline_alert_detect_seconds").record(report.detect.as_secs_f64());
        metrics::counter!("wattline_alert_events_total").increment(report.events.len() as u64);
        Ok(report)
    }

    fn commit_pass(
        &self,
        now_ms: i64,
        pending: &[Pending],
        memory: &std::collections::HashMap<String, RuleState>,
        report: &mut PassReport,
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let mut next = meta.get("next_event")?.map_or(1, |v| v.value());
            let mut events = txn.open_table(EVENTS)?;
            let mut index = txn.open_table(BUILDING_EVENTS)?;
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut states = txn.open_table(RULE_STATE)?;
            let queued = to_json(&Delivery {
                attempts: 0,
                next_ms: now_ms,
                failed: false,
                last_error: None,
            });
            for (rule, tz, episodes, found) in pending {
                let tz = *tz;
                for f in found {
                    let event = AlertEvent {
                        event_id: next,
                        rule_id: rule.id.clone(),
                        building_id: rule.building_id.clone(),
                        tenant_id: rule.tenant_id.clone(),
                        kind: f.kind,
                        window_start: f.window,
                        window_end: match &f.offline {
                            Some((end, _)) => *end,
                            None => rule.window.next(tz, f.window),
                        },
                        measured_kwh: f.measure.kwh,
                        threshold_kwh: if f.measure.threshold.is_finite() {
                            f.measure.threshold
                        } else {
                            0.0
                        },
                        at: now_ms,
                        sensor_id: f.offline.as_ref().map(|(_, s)| s.clone()),
                    };
                    next += 1;
                    events.insert(event.event_id, to_json(&event).as_str())?;
                    index.insert((rule.building_id.as_str(), event.event_id), ())?;
                    let recipients = rule
                        .emails
                        .iter()
                        .map(|e| Recipient::Email(e.clone()))
                        .chain(
                            rule.webhook_url
                                .iter()
                                .map(|u| Recipient::Webhook(u.clone())),
                        );
                    for r in recipients {
                        outbox.insert((event.event_id, r.key().as_str()), queued.as_str())?;
                    }
                    report.events.push(event);
                }
                let state = RuleState {
                    episodes: episodes.clone(),
                    alignment: memory.get(&rule.id).and_then(|s| s.alignment.clone()),
                    cache: None,
                    placement: None,
                    rule: None,
                };
                states.insert(rule.id.as_str(), to_json(&state).as_str())?;
            }
            meta.insert("next_event", next)?;
        }
        txn.commit()?;
        Ok(())
    }
}
