//! The alert store against a real reading store: rule writes while passes
//! run, window changes, and the outbox's move of failed rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::ids::{BuildingId, TenantId};
use crate::rollup::WindowSpan;
use crate::store::ReadingStore;
use crate::test_util::{batch, catalog_with_sensors};

const DAY: i64 = 86_400_000;

const SETTINGS: EvalSettings = EvalSettings {
    lookback_ms: 86_400_000,
    renotify_ms: 21_600_000,
    settle_ms: 1_000,
};

fn rule(threshold: f64) -> NewRule {
    NewRule {
        building_id: BuildingId::parse("b").unwrap(),
        tenant_id: TenantId::parse("t").unwrap(),
        kind: RuleKind::Threshold,
        threshold_kwh: Some(threshold),
        window: WindowSpan::Quarter,
        emails: vec!["ops@b.test".into()],
        webhook_url: None,
        enabled: true,
        weeks: None,
        percent: None,
        silent_for: None,
        sensor_id: None,
    }
}

#[test]
fn rule_writes_while_passes_run_never_wait_on_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog_with_sensors(dir.path(), 1);
    let store = Arc::new(ReadingStore::open(dir.path(), catalog.clone()).unwrap().0);
    let alerts = Arc::new(AlertStore::open(dir.path()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let passes = {
        let (alerts, store, catalog, stop) =
            (alerts.clone(), store.clone(), catalog.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                alerts
                    .evaluate(
                        crate::now_ms(),
                        store.rollups(),
                        store.last_seen(),
                        &catalog,
                        &SETTINGS,
                    )
                    .unwrap();
            }
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = {
        let alerts = alerts.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                let r = alerts.create_rule(rule(f64::from(i))).unwrap();
                alerts
                    .update_rule(
                        &r.id,
                        RulePatch {
                            enabled: Some(i % 2 == 0),
                            ..RulePatch::default()
                        },
                    )
                    .unwrap();
                alerts.delete_rule(&r.id).unwrap();
            }
            done_tx.send(()).unwrap();
        })
    };
    let finished = done_rx.recv_timeout(Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    assert!(finished.is_ok(), "rule writes and passes deadlocked");
    writer.join().unwrap();
    passes.join().unwrap();
}

#[test]
fn a_window_change_starts_the_episodes_over_instead_of_failing_passes() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog_with_sensors(dir.path(), 1);
    let (store, _) = ReadingStore::open(dir.path(), catalog.clone()).unwrap();
    let alerts = AlertStore::open(dir.path()).unwrap();
    let now = crate::now_ms();
    let hour = now - now.rem_euclid(3_600_000) - 3 * 3_600_000;
    // 12:15 over, 12:30 under: fired and resolved at quarter alignment.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.append(batch(&[
        (0, hour + 960_000, 5.0),
        (0, hour + 3_600_000 + 60_000, 5.0),
    ])))
    .unwrap();
    store.catch_up_rollups().unwrap();
    let r = alerts.create_rule(rule(1.0)).unwrap();
    let pass = |at| {
        alerts
            .evaluate(at, store.rollups(), store.last_seen(), &catalog, &SETTINGS)
            .unwrap()
            .events
    };
    let first = pass(now);
    assert_eq!(first.len(), 4, "{first:?}");
    // Hour windows: the resolution at a quarter start falls inside an
    // over-hour run.
    alerts
        .update_rule(
            &r.id,
            RulePatch {
                window: Some(WindowSpan::Hour),
                ..RulePatch::default()
            },
        )
        .unwrap();
    let events = pass(now + 1_000);
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.window_start)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Fired, hour),
            (EventKind::Resolved, hour + 2 * 3_600_000)
        ]
    );
    assert!(pass(now + 2_000).is_empty());
}

#[test]
fn a_failed_delivery_leaves_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = AlertStore::open(dir.path()).unwrap();
    let catalog = catalog_with_sensors(dir.path(), 1);
    let (store, _) = ReadingStore::open(dir.path(), catalog.clone()).unwrap();
    let now = crate::now_ms();
    let q = now - now.rem_euclid(900_000) - 2 * 900_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.append(batch(&[(0, q + 60_000, 5.0)])))
        .unwrap();
    store.catch_up_rollups().unwrap();
    alerts.create_rule(rule(1.0)).unwrap();
    let events = alerts
        .evaluate(now, store.rollups(), store.last_seen(), &catalog, &SETTINGS)
        .unwrap()
        .events;
    assert_eq!(events.len(), 2);
    assert_eq!(alerts.outbox_depth().unwrap(), 2);
    let due = alerts.due(now).unwrap();
    let failed = Delivery {
        attempts: 1,
        next_ms: now,
        failed: true,
        last_error: Some("550".into()),
    };
    alerts
        .settle(&[
            (
                due[0].event.event_id,
                due[0].recipient.clone(),
                Some(failed),
            ),
            (due[1].event.event_id, due[1].recipient.clone(), None),
        ])
        .unwrap();
    assert_eq!(alerts.outbox_depth().unwrap(), 0);
    assert!(alerts.due(now + 10_000_000).unwrap().is_empty());
}

#[test]
fn a_building_has_at_most_a_hundred_rules() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = AlertStore::open(dir.path()).unwrap();
    for i in 0..100 {
        alerts.create_rule(rule(f64::from(i))).unwrap();
    }
    let err = alerts.create_rule(rule(1.0)).unwrap_err();
    assert!(err.to_string().contains("100 alert rules"), "{err}");
    let first = alerts.rules_of("b", "t")[0].id.clone();
    alerts.delete_rule(&first).unwrap();
    alerts.create_rule(rule(1.0)).unwrap();
}

#[test]
fn a_pass_after_nothing_changed_reads_only_the_windows_completed_since() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog_with_sensors(dir.path(), 1);
    let (store, _) = ReadingStore::open(dir.path(), catalog.clone()).unwrap();
    let alerts = AlertStore::open(dir.path()).unwrap();
    let now = crate::now_ms();
    let q = now - now.rem_euclid(900_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<(u32, i64, f64)> = (1..40)
        .map(|i| (0, q - i * 900_000 + 60_000, 2.0))
        .collect();
    rt.block_on(store.append(batch(&rows))).unwrap();
    store.catch_up_rollups().unwrap();
    alerts.create_rule(rule(1.0)).unwrap();
    let day = NewRule {
        window: WindowSpan::Day,
        ..rule(1.0)
    };
    alerts.create_rule(day).unwrap();
    let pass = |at| {
        alerts
            .evaluate(at, store.rollups(), store.last_seen(), &catalog, &SETTINGS)
            .unwrap()
            .windows_read
    };
    assert!(pass(q + 120_000) > 90);
    assert_eq!(pass(q + 180_000), 0, "nothing changed, nothing completed");
    // One quarter completed (and the day, when that quarter ended it).
    let day_ended = usize::from((q + 900_000).rem_euclid(DAY) == 0);
    assert_eq!(pass(q + 900_000 + 120_000), 1 + day_ended);
    // A correction of one quarter: from that quarter on, and its day.
    rt.block_on(store.append(batch(&[(0, q - 3 * 900_000 + 60_000, 0.5)])))
        .unwrap();
    store.catch_up_rollups().unwrap();
    // The day is read again only if it is complete (the correction fell
    // on an earlier UTC day than the pass).
    let corrected = q - 3 * 900_000 + 60_000;
    let day_read = usize::from(corrected.div_euclid(DAY) < (q + 900_000).div_euclid(DAY));
    assert_eq!(
        pass(q + 900_000 + 180_000),
        4 + day_read,
        "quarters q-3 to q, and the day if complete"
    );
}

#[test]
fn offline_rules_skip_quiet_passes_yet_see_late_first_readings_new_sensors_and_new_silences() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog_with_sensors(dir.path(), 2);
    let (store, _) = ReadingStore::open(dir.path(), catalog.clone()).unwrap();
    let alerts = AlertStore::open(dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let minute = 60_000;
    let now = crate::now_ms();
    let t0 = now - 10 * minute;
    rt.block_on(store.append(batch(&[(0, t0, 1.0)]))).unwrap();
    let offline = |sensor: Option<&str>| NewRule {
        kind: RuleKind::Offline,
        threshold_kwh: None,
        silent_for: Some(Silence::try_from("30m".to_owned()).unwrap()),
        sensor_id: sensor.map(|s| crate::ids::SensorId::parse(s).unwrap()),
        ..rule(0.0)
    };
    let all = alerts.create_rule(offline(None)).unwrap();
    let one = alerts.create_rule(offline(Some("s0"))).unwrap();
    let pass = |at| {
        let report = alerts
            .evaluate(at, store.rollups(), store.last_seen(), &catalog, &SETTINGS)
            .unwrap();
        let mut fired: Vec<(String, String)> = report
            .events
            .iter()
            .map(|e| (e.rule_id.clone(), e.sensor_id.clone().unwrap().to_string()))
            .collect();
        fired.sort();
        fired
    };
    let both = |sensor: &str| {
        let mut v = vec![
            (all.id.clone(), sensor.to_owned()),
            (one.id.clone(), sensor.to_owned()),
        ];
        v.sort();
        v
    };
    assert_eq!(pass(now), []);
    assert_eq!(pass(now + minute), []);
    // s1, never seen so far, sends a first reading 40 minutes old.
    rt.block_on(store.append(batch(&[(1, now - 40 * minute, 1.0)])))
        .unwrap();
    assert_eq!(pass(now + 2 * minute), [(all.id.clone(), "s1".to_owned())]);
    // A sensor added to the building is watched from the next pass.
    let s2 = catalog
        .create_sensor(crate::catalog::NewSensor {
            id: crate::ids::SensorId::parse("s2").unwrap(),
            building_id: BuildingId::parse("b").unwrap(),
            kind: None,
            unit: None,
            is_active: None,
            meter: Default::default(),
        })
        .unwrap();
    rt.block_on(store.append(batch(&[(s2.key.0, now - 35 * minute, 1.0)])))
        .unwrap();
    assert_eq!(pass(now + 3 * minute), [(all.id.clone(), "s2".to_owned())]);
    // s0 stays quiet until 30 minutes after its reading, then both fire.
    assert_eq!(pass(t0 + 30 * minute - 1), []);
    assert_eq!(pass(t0 + 30 * minute), both("s0"));
}
