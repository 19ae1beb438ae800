//! What a query's filters say about time, sensors and buildings, so the
//! readings provider can skip chunk files and memory it does not need.
//!
//! Only simple conjuncts are understood (`col op literal`, `col IN (...)`,
//! `BETWEEN`); anything else is left to DataFusion, which re-applies every
//! filter above the scan (pushdown is `Inexact`), so an unrecognised filter
//! costs speed, never correctness.
//!
//! The bounds are values, not expressions: [`ScanBounds::predicate`]
//! rebuilds a predicate from them for the Parquet reader, so nothing the
//! query wrote is ever evaluated inside a scan of shared files.

use std::collections::HashSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use datafusion::prelude::{col, lit};
use wattline_storage::TimeRange;

/// Bounds extracted from the filters.
#[derive(Debug, Clone)]
pub(crate) struct ScanBounds {
    pub(crate) range: TimeRange,
    /// `None`: any sensor.
    pub(crate) sensors: Option<HashSet<String>>,
    pub(crate) buildings: Option<HashSet<String>>,
    /// The column `range` bounds.
    time_column: &'static str,
}

impl ScanBounds {
    /// The bounds `filters` put on `time_column`, `sensor_id` and
    /// `building_id`.
    pub(crate) fn from_filters(filters: &[Expr], time_column: &'static str) -> Self {
        let mut b = ScanBounds {
            range: TimeRange::ALL,
            sensors: None,
            buildings: None,
            time_column,
        };
        for f in filters {
            b.apply(f);
        }
        b
    }

    /// The bounds (and the tenant) as a predicate made of wattline's own
    /// column references and literals; `None` when nothing is bounded.
    pub(crate) fn predicate(&self, time_column: &str, tenant: Option<&str>) -> Option<Expr> {
        let ids = |name: &str, set: &Option<HashSet<String>>| {
            set.as_ref().map(|ids| {
                let mut ids: Vec<&String> = ids.iter().collect();
                ids.sort_unstable();
                col(name).in_list(ids.into_iter().map(|id| lit(id.as_str())).collect(), false)
            })
        };
        let mut parts: Vec<Expr> = Vec::new();
        parts.extend(tenant.map(|t| col("tenant_id").eq(lit(t))));
        if self.range.start_ms != i64::MIN {
            parts.push(col(time_column).gt_eq(ts_literal(self.range.start_ms)));
        }
        if self.range.end_ms != i64::MAX {
            parts.push(col(time_column).lt(ts_literal(self.range.end_ms)));
        }
        parts.extend(ids("sensor_id", &self.sensors));
        parts.extend(ids("building_id", &self.buildings));
        conjunction(parts)
    }

    fn apply(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                self.apply(left);
                self.apply(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if let (Some(col), Some(v)) = (column(left), literal(right)) {
                    self.compare(col, *op, v);
                } else if let (Some(v), Some(col)) = (literal(left), column(right))
                    && let Some(op) = op.swap()
                {
                    self.compare(col, op, v);
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                if let (Some(col), Some(lo), Some(hi)) = (column(expr), literal(low), literal(high))
                {
                    self.compare(col, Operator::GtEq, lo);
                    self.compare(col, Operator::LtEq, hi);
                }
            }
            Expr::InList(list) if !list.negated => {
                let Some(col) = column(&list.expr) else {
                    return;
                };
                let values: Option<HashSet<String>> = list
                    .list
                    .iter()
                    .map(|e| literal(e).and_then(utf8))
                    .collect();
                if let Some(values) = values {
                    self.restrict(col, values);
                }
            }
            _ => {}
        }
    }

    fn compare(&mut self, col: &str, op: Operator, v: &ScalarValue) {
        match col {
            c if c == self.time_column => {
                // `floor` is the literal rounded down to a millisecond;
                // stored times are whole milliseconds, so a bound between
                // two of them keeps every time the filter keeps.
                let Some((floor, exact)) = millis(v) else {
                    return;
                };
                let next = floor.saturating_add(1);
                let r = &mut self.range;
                match op {
                    Operator::Eq => {
                        r.start_ms = r.start_ms.max(floor);
                        r.end_ms = r.end_ms.min(next);
                    }
                    Operator::Gt => r.start_ms = r.start_ms.max(next),
                    Operator::GtEq => r.start_ms = r.start_ms.max(if exact { floor } else { next }),
                    Operator::Lt => r.end_ms = r.end_ms.min(if exact { floor } else { next }),
                    Operator::LtEq => r.end_ms = r.end_ms.min(next),
                    _ => {}
                }
            }
            "sensor_id" | "building_id" if op == Operator::Eq => {
                if let Some(s) = utf8(v) {
                    self.restrict(col, HashSet::from([s]));
                }
            }
            _ => {}
        }
    }

    fn restrict(&mut self, col: &str, values: HashSet<String>) {
        let slot = match col {
            "sensor_id" => &mut self.sensors,
            "building_id" => &mut self.buildings,
            _ => return,
        };
        *slot = Some(match slot.take() {
            Some(old) => old.intersection(&values).cloned().collect(),
            None => values,
        });
    }
}

/// A UTC timestamp literal of `ms` milliseconds.
pub(crate) fn ts_literal(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

/// The column `e` names, directly or through a cast that keeps every
/// value apart (to a timestamp of millisecond precision or finer, or
/// between string types); a cast that merges values (to a date, to whole
/// seconds) would make a comparison mean a range.
fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => {
            use datafusion::arrow::datatypes::{DataType, TimeUnit};
            let lossless = matches!(
                c.field.data_type(),
                DataType::Timestamp(
                    TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
                    _
                ) | DataType::Utf8
                    | DataType::Utf8View
                    | DataType::LargeUtf8
            );
            if lossless { column(&c.expr) } else { None }
        }
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn utf8(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A timestamp literal in epoch milliseconds, rounded down, and whether
/// that was exact.
fn millis(v: &ScalarValue) -> Option<(i64, bool)> {
    match v {
        ScalarValue::TimestampMillisecond(Some(ms), _) => Some((*ms, true)),
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000).map(|ms| (ms, true)),
        // A date column's value is its day's start.
        ScalarValue::Date32(Some(d)) => Some((i64::from(*d) * 86_400_000, true)),
        ScalarValue::TimestampMicrosecond(Some(us), _) => {
            Some((us.div_euclid(1000), us.rem_euclid(1000) == 0))
        }
        ScalarValue::TimestampNanosecond(Some(ns), _) => {
            Some((ns.div_euclid(1_000_000), ns.rem_euclid(1_000_000) == 0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ms: i64) -> Expr {
        Expr::Literal(
            ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into())),
            None,
        )
    }

    #[test]
    fn extracts_ranges_and_ids() {
        let b = ScanBounds::from_filters(
            &[
                col("ts").gt_eq(ts(100)).and(col("ts").lt(ts(200))),
                col("sensor_id").eq(lit("a")),
                col("building_id").in_list(vec![lit("x"), lit("y")], false),
            ],
            "ts",
        );
        assert_eq!((b.range.start_ms, b.range.end_ms), (100, 200));
        assert_eq!(b.sensors, Some(HashSet::from(["a".to_string()])));
        assert_eq!(b.buildings.unwrap().len(), 2);
    }

    #[test]
    fn reversed_and_between_and_unknown_filters() {
        let b = ScanBounds::from_filters(
            &[
                ts(150).lt_eq(col("ts")),
                col("ts").between(ts(0), ts(300)),
                col("value_kwh").gt(lit(1.0)),
            ],
            "ts",
        );
        assert_eq!((b.range.start_ms, b.range.end_ms), (150, 301));
        assert!(b.sensors.is_none() && b.buildings.is_none());
        let or = ScanBounds::from_filters(&[col("ts").lt(ts(5)).or(col("ts").gt(ts(9)))], "ts");
        assert_eq!(or.range, TimeRange::ALL);
    }

    #[test]
    fn sub_millisecond_bounds_and_lossy_casts_never_narrow() {
        let ns = |v: i64| Expr::Literal(ScalarValue::TimestampNanosecond(Some(v), None), None);
        // ts < 100.0005 ms keeps ts = 100 ms.
        let b = ScanBounds::from_filters(&[col("ts").lt(ns(100_000_500))], "ts");
        assert_eq!(b.range.end_ms, 101);
        // ts >= 100.0005 ms starts at 101 ms; ts >= 100 ms at 100.
        let b = ScanBounds::from_filters(&[col("ts").gt_eq(ns(100_000_500))], "ts");
        assert_eq!(b.range.start_ms, 101);
        let b = ScanBounds::from_filters(&[col("ts").gt_eq(ns(100_000_000))], "ts");
        assert_eq!(b.range.start_ms, 100);
        // A cast to whole seconds makes `=` a range: no bound is taken.
        let secs = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("ts")),
            datafusion::arrow::datatypes::DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Second,
                None,
            ),
        ));
        let b = ScanBounds::from_filters(&[secs.eq(ts(100_000))], "ts");
        assert_eq!(b.range, TimeRange::ALL);
    }

    #[test]
    fn the_predicate_holds_only_literals_of_the_bounds() {
        // An expression that would fail or leak if evaluated in a scan.
        let hostile = (lit(1) / col("value_kwh")).eq(lit(1));
        let b = ScanBounds::from_filters(
            &[
                hostile,
                col("hour").gt_eq(ts(100)),
                col("sensor_id").eq(lit("s")),
            ],
            "hour",
        );
        let p = b.predicate("hour", Some("t")).unwrap().to_string();
        assert!(!p.contains("value_kwh"), "{p}");
        assert!(p.contains("tenant_id = Utf8(\"t\")"), "{p}");
        assert!(p.contains("hour >="), "{p}");
        assert!(p.contains("sensor_id IN"), "{p}");
        assert!(
            ScanBounds::from_filters(&[], "ts")
                .predicate("ts", None)
                .is_none()
        );
    }
}
