//! A building's energy per 15-minute clock interval, from the raw
//! readings (every real UTC offset is a multiple of 15 minutes, so UTC
//! quarters are local quarters). Hours, days and months come from the
//! rollups instead, in the storage crate.

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use wattline_storage::{Agg, BuildingId, Meter, Quality, TenantId, TimeRange, derive, reach_ms};

use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::functions::expr_fn::{date_bin, round};
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_aggregate::expr_fn::{max, sum};
use datafusion::prelude::{col, lit};

use crate::error::{QueryError, Result};
use crate::filters::ts_literal;
use crate::query_engine::collect_capped;
use crate::{QueryEngine, Scope};

/// Timestamps DataFusion's millisecond conversions accept.
const LIMIT_MS: i64 = 8_000_000_000_000;
/// A quarter hour in milliseconds.
const QUARTER_MS: i64 = 900_000;

impl QueryEngine {
    /// The non-empty quarters of `building` (of `tenant`, whose query
    /// slots it takes) whose start lies in `range`, in order.
    ///
    /// Interval meters are summed by the engine. Cumulative and power
    /// meters' readings are read with those up to their reach around the
    /// range and their interval energy derived, as the rollups do. Both
    /// are plans built from expressions (no SQL text, so any number of
    /// meters fits); an answer cut at `query.max_rows` is an error rather
    /// than a partial series.
    pub async fn quarter_hours(
        &self,
        building: &BuildingId,
        tenant: &TenantId,
        range: TimeRange,
    ) -> Result<Vec<(i64, Agg)>> {
        let meters: Vec<(String, Meter)> = self
            .store
            .catalog()
            .view()
            .sensors_of(building.as_str())
            .filter(|s| !s.meter.counts_as_sent())
            .map(|s| (s.id.to_string(), s.meter))
            .collect();
        let scope = Scope::tenant(tenant.clone());
        let in_range = |r: TimeRange| {
            col("ts")
                .gt_eq(ts_literal(r.start_ms.max(-LIMIT_MS)))
                .and(col("ts").lt(ts_literal(r.end_ms.min(LIMIT_MS))))
        };
        let mut filter = col("building_id")
            .eq(lit(building.as_str()))
            .and(in_range(range));
        if !meters.is_empty() {
            let ids = meters.iter().map(|(i, _)| lit(i.as_str())).collect();
            filter = filter.and(col("sensor_id").in_list(ids, true));
        }
        let quarter = date_bin(
            lit(ScalarValue::new_interval_mdn(0, 0, QUARTER_MS * 1_000_000)),
            col("ts"),
            ts_literal(0),
        );
        let out = self
            .plan(&scope, move |df| {
                df.filter(filter)?
                    .aggregate(
                        vec![quarter.alias("q")],
                        vec![
                            sum(round(vec![col("value_kwh") * lit(1e6)])),
                            max(col("value_kwh")),
                            count_all(),
                        ],
                    )?
                    .sort(vec![col("q").sort(true, false)])
            })
            .await?;
        let mut points: BTreeMap<i64, Agg> = BTreeMap::new();
        for b in &out {
            let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
            let ts = column::<TimestampMillisecondArray>(b.column(0), &ms)?;
            let kwh = column::<Float64Array>(b.column(1), &DataType::Float64)?;
            let peak = column::<Float64Array>(b.column(2), &DataType::Float64)?;
            let n = column::<Int64Array>(b.column(3), &DataType::Int64)?;
            points.extend((0..b.num_rows()).map(|i| {
                (
                    ts.value(i),
                    Agg {
                        // Whole milliwatt-hours, summed exactly (each
                        // reading rounded, as the rollups count it).
                        kwh: wattline_storage::round_kwh(kwh.value(i) / 1e6),
                        peak_kwh: peak.value(i),
                        readings: n.value(i),
                        peak_kw: None,
                        cost: None,
                        quarantined: 0,
                    },
                )
            }));
        }
        if !meters.is_empty() {
            for (q, agg) in self.metered_quarters(&meters, &scope, range).await? {
                points.entry(q).and_modify(|a| a.add(&agg)).or_insert(agg);
            }
        }
        Ok(points.into_iter().collect())
    }

    /// The quarters of the derived energy of `meters` (ids and settings)
    /// in `range`.
    async fn metered_quarters(
        &self,
        meters: &[(String, Meter)],
        scope: &Scope,
        range: TimeRange,
    ) -> Result<BTreeMap<i64, Agg>> {
        let reach = meters.iter().map(|(_, m)| reach_ms(m)).max().unwrap_or(0);
        let ids = meters.iter().map(|(i, _)| lit(i.as_str())).collect();
        let filter = col("sensor_id")
            .in_list(ids, false)
            .and(col("ts").gt_eq(ts_literal(
                range.start_ms.saturating_sub(reach).max(-LIMIT_MS),
            )))
            .and(col("ts").lt(ts_literal(range.end_ms.saturating_add(reach).min(LIMIT_MS))));
        let out = self
            .plan(scope, move |df| {
                df.filter(filter)?
                    .select(vec![col("sensor_id"), col("ts"), col("value_kwh")])?
                    .sort(vec![
                        col("sensor_id").sort(true, false),
                        col("ts").sort(true, false),
                    ])
            })
            .await?;
        let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for b in &out {
            let ids = column::<StringArray>(b.column(0), &DataType::Utf8)?;
            let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
            let ts = column::<TimestampMillisecondArray>(b.column(1), &ms)?;
            let v = column::<Float64Array>(b.column(2), &DataType::Float64)?;
            for i in 0..b.num_rows() {
                series
                    .entry(ids.value(i).to_owned())
                    .or_default()
                    .push((ts.value(i), v.value(i)));
            }
        }
        let mut quarters: BTreeMap<i64, Agg> = BTreeMap::new();
        for (id, meter) in meters {
            let Some(points) = series.get(id) else {
                continue;
            };
            for d in derive(meter, points) {
                let agg = match d.kwh {
                    Some(kwh) => Agg::one(kwh),
                    None if d.quality == Quality::Quarantined => Agg::quarantined(),
                    None => continue,
                };
                if !range.contains(d.ts_ms) {
                    continue;
                }
                let q = d.ts_ms - d.ts_ms.rem_euclid(QUARTER_MS);
                quarters.entry(q).and_modify(|a| a.add(&agg)).or_insert(agg);
            }
        }
        Ok(quarters)
    }

    /// Runs `build` on the scope's `readings` and collects the answer in
    /// full: more than `query.max_rows` rows is an error.
    async fn plan(
        &self,
        scope: &Scope,
        build: impl FnOnce(DataFrame) -> datafusion::error::Result<DataFrame> + Send + 'static,
    ) -> Result<Vec<RecordBatch>> {
        let (ctx, _) = self.context(scope)?;
        let (max_rows, max_bytes) = (self.limits().max_rows, self.answer_bytes());
        let out = self
            .run(scope, async move {
                let df = build(ctx.table("readings").await?)?;
                collect_capped(df.execute_stream().await?, max_rows, max_bytes).await
            })
            .await?;
        if out.truncated {
            return Err(QueryError::TooComplex(
                "the range holds more rows than a query may answer (query.max_rows): \
                 ask for a shorter range"
                    .into(),
            ));
        }
        Ok(out.batches)
    }
}

/// `array` as `T`, cast to `ty` first.
fn column<T: Array + Clone + 'static>(array: &ArrayRef, ty: &DataType) -> Result<T> {
    cast(array, ty)
        .ok()
        .and_then(|a| a.as_any().downcast_ref::<T>().cloned())
        .ok_or_else(|| QueryError::Internal("15-minute energy has an unexpected schema".into()))
}
