use proptest::prelude::*;

use super::*;

const STEP_MS: i64 = 900_000;

fn register(max_gap_ms: i64) -> Meter {
    Meter {
        meter_type: MeterType::Cumulative,
        register_max: Some(1000.0),
        max_gap_ms,
        max_kw: None,
        interval_s: 900,
    }
}

/// A register's readings for true consumption `use_kwh` (interval `i`
/// from reading `i` to `i + 1`), with resets, wraps at 1000 and glitches,
/// and the reference: energy per reading as derivation must find it.
#[derive(Debug)]
struct Case {
    series: Vec<(i64, f64)>,
    expected: Vec<Option<f64>>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(0u32..9_000, 8..200),
        0u32..1000,
        prop::collection::vec((0u8..4, 20u32..400), 0..20),
    )
        .prop_map(|(milli, start, events)| {
            let n = milli.len() + 1;
            let c: Vec<f64> = milli.iter().map(|&m| f64::from(m) / 1000.0).collect();
            // Events at least three readings apart, not at the ends:
            // closer ones are ambiguous to anyone.
            let mut event_at = vec![0u8; n];
            for (i, &(kind, at)) in events.iter().enumerate() {
                let k = (at as usize * (i + 7)) % n;
                if k >= 3 && k + 3 < n && event_at[k - 3..=k + 3].iter().all(|&e| e == 0) {
                    event_at[k] = kind + 1;
                }
            }
            // Register values in whole mWh, so the reference is exact;
            // wraps where the register passes 1000 kWh. 1: a reset, from
            // at least 100 kWh (a smaller drop that recovers reads as a
            // glitch) in the register's lower half (from the upper half
            // it reads as a wrap).
            let mut units = vec![i64::from(start) * 1_000_000];
            for k in 1..n {
                let used = i64::from(milli[k - 1]) * 1000;
                let prev = units[k - 1];
                units.push(
                    if event_at[k] == 1 && (100_000_000..500_000_000).contains(&prev) {
                        used
                    } else {
                        (prev + used) % 1_000_000_000
                    },
                );
            }
            // No glitch next to a wrap.
            let wrapped = |k: usize| (k - 2..=k + 3).any(|j| units[j] < units[j - 1]);
            for (k, e) in event_at.iter_mut().enumerate() {
                if *e >= 3 && wrapped(k) {
                    *e = 0;
                }
            }
            let mut series: Vec<(i64, f64)> = units
                .iter()
                .enumerate()
                .map(|(i, &u)| (i as i64 * STEP_MS, u as f64 / 1e6))
                .collect();
            let mut expected: Vec<Option<f64>> = c.iter().map(|&v| Some(v)).collect();
            expected.push(None);
            for k in 0..n {
                // 3: a glitch that drops, 4: one that spikes.
                if event_at[k] >= 3 {
                    let v = if event_at[k] == 3 {
                        series[k - 1].1 - 50.0
                    } else {
                        series[k + 1].1 + 50.0
                    };
                    series[k].1 = v;
                    expected[k - 1] = Some(round_kwh(c[k - 1] + c[k]));
                    expected[k] = None;
                }
            }
            // A wrap needs the register in its upper half before it; a
            // drop glitch below zero is still a glitch.
            Case { series, expected }
        })
}

proptest! {
    #[test]
    fn registers_give_the_consumption(case in case()) {
        let got = derive(&register(STEP_MS), &case.series);
        let kwh: Vec<Option<f64>> = got.iter().map(|d| d.kwh).collect();
        prop_assert_eq!(kwh, case.expected);
    }

    #[test]
    fn a_reading_reaches_no_further_than_its_reach(case in case(), cut in 0usize..200) {
        // Derived values far from a removed reading do not change.
        let meter = register(STEP_MS);
        let cut = cut % case.series.len();
        let all = derive(&meter, &case.series);
        let mut fewer = case.series.clone();
        let (gone, _) = fewer.remove(cut);
        let after = derive(&meter, &fewer);
        for d in &after {
            if (d.ts_ms - gone).abs() > reach_ms(&meter) {
                let before = all.iter().find(|a| a.ts_ms == d.ts_ms).unwrap();
                prop_assert_eq!(before, d);
            }
        }
    }
}

proptest! {
    #[test]
    fn a_power_sample_reaches_no_further_than_its_reach(
        steps in prop::collection::vec((1i64..1200, -50i32..200), 2..150),
        cut in 0usize..150,
    ) {
        let meter = Meter {
            meter_type: MeterType::Power,
            max_gap_ms: 600_000,
            max_kw: Some(150.0),
            ..Meter::default()
        };
        let mut t = 0;
        let series: Vec<(i64, f64)> = steps
            .iter()
            .map(|&(dt, kw)| {
                t += dt * 1000;
                (t, f64::from(kw))
            })
            .collect();
        let cut = cut % series.len();
        let all = derive(&meter, &series);
        let mut fewer = series.clone();
        let (gone, _) = fewer.remove(cut);
        for d in derive(&meter, &fewer) {
            if (d.ts_ms - gone).abs() > reach_ms(&meter) {
                let before = all.iter().find(|a| a.ts_ms == d.ts_ms).unwrap();
                prop_assert_eq!(*before, d);
            }
        }
    }
}

#[test]
fn resets_wraps_and_glitches_are_told_apart() {
    let m = register(STEP_MS);
    let at = |i: i64| i * STEP_MS;
    let q = |series: &[(i64, f64)]| -> Vec<(Option<f64>, Quality)> {
        derive(&m, series)
            .iter()
            .map(|d| (d.kwh, d.quality))
            .collect()
    };
    // A wrap at 1000.
    assert_eq!(
        q(&[(at(0), 999.0), (at(1), 999.5), (at(2), 0.75)]),
        vec![
            (Some(0.5), Quality::Measured),
            (Some(1.25), Quality::Wrap),
            (None, Quality::Gap)
        ]
    );
    // A reset to near zero in the lower half: counted from zero.
    assert_eq!(
        q(&[(at(0), 300.0), (at(1), 301.0), (at(2), 0.25), (at(3), 1.0)])[1],
        (Some(0.25), Quality::Reset)
    );
    // A drop that recovers is a glitch.
    assert_eq!(
        q(&[(at(0), 10.0), (at(1), 11.0), (at(2), 2.0), (at(3), 12.0)]),
        vec![
            (Some(1.0), Quality::Measured),
            (Some(1.0), Quality::Measured),
            (None, Quality::Glitch),
            (None, Quality::Gap)
        ]
    );
    // A gap longer than max_gap is not bridged.
    assert_eq!(
        q(&[(at(0), 10.0), (at(1), 11.0), (at(9), 20.0)])[1],
        (None, Quality::Gap)
    );
}

#[test]
fn implausible_intervals_are_quarantined() {
    let m = Meter {
        max_kw: Some(100.0),
        ..register(STEP_MS)
    };
    // 100 kW for 15 minutes is 25 kWh: 30 is too much.
    let d = derive(&m, &[(0, 10.0), (STEP_MS, 40.0), (2 * STEP_MS, 60.0)]);
    assert_eq!((d[0].kwh, d[0].quality), (None, Quality::Quarantined));
    assert_eq!((d[1].kwh, d[1].quality), (Some(20.0), Quality::Measured));
    // An interval meter's reading over max_kw for its interval too.
    let interval = Meter {
        max_kw: Some(10.0),
        ..Meter::default()
    };
    let d = derive(&interval, &[(0, 2.5), (STEP_MS, 2.6)]);
    assert_eq!((d[0].kwh, d[0].quality), (Some(2.5), Quality::Measured));
    assert_eq!((d[1].kwh, d[1].quality), (None, Quality::Quarantined));
    // A negative register is never summed.
    let d = derive(&m, &[(0, -1.0), (STEP_MS, 2.0)]);
    assert_eq!(d[0].quality, Quality::Quarantined);
}

#[test]
fn power_integrates_to_the_closed_form() {
    // p(t) = 2 + 3 t kW (t in hours), sampled every 10 s for two hours:
    // the trapezoid rule is exact on a line. First hour: 2 + 1.5 = 3.5 kWh.
    let m = Meter {
        meter_type: MeterType::Power,
        ..Meter::default()
    };
    let step = 10_000;
    let series: Vec<(i64, f64)> = (0..=720)
        .map(|i| {
            let t = i * step;
            (t, 2.0 + 3.0 * t as f64 / 3_600_000.0)
        })
        .collect();
    let d = derive(&m, &series);
    let hour = |h: i64| -> f64 {
        crate::kwh::kwh_sum(
            d.iter()
                .filter(|x| x.ts_ms / 3_600_000 == h)
                .filter_map(|x| x.kwh),
        )
    };
    assert!((hour(0) - 3.5).abs() < 1e-5, "{}", hour(0));
    assert!((hour(1) - 6.5).abs() < 1e-5, "{}", hour(1));
    // The last sample has no successor yet.
    assert_eq!(d.last().unwrap().quality, Quality::Gap);
    // A gap longer than max_gap (1 h) is left as a gap.
    let gapped = derive(&m, &[(0, 1.0), (2 * 3_600_000, 1.0)]);
    assert_eq!(gapped[0].kwh, None);
    // A sample above max_kw is skipped; its neighbours are joined.
    let m = Meter {
        max_kw: Some(10.0),
        ..m
    };
    let d = derive(&m, &[(0, 1.0), (step, 1e6), (2 * step, 1.0)]);
    assert_eq!(d[1].quality, Quality::Quarantined);
    assert_eq!(d[0].kwh, Some(round_kwh(2.0 * step as f64 / 3_600_000.0)));
}

#[test]
fn settings_are_checked() {
    assert!(Meter::default().validate().is_ok());
    let too_long = Meter {
        max_gap_ms: MAX_GAP_LIMIT_MS + 1,
        ..Meter::default()
    };
    assert!(too_long.validate().is_err());
    let wrap_on_interval = Meter {
        register_max: Some(10.0),
        ..Meter::default()
    };
    assert!(wrap_on_interval.validate().is_err());
    let negative = Meter {
        max_kw: Some(-1.0),
        ..Meter::default()
    };
    assert!(negative.validate().is_err());
}
