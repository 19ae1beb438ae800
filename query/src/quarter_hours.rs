//! A building's energy per 15-minute clock interval, from the raw
//! readings (every real UTC offset is a multiple of 15 minutes, so UTC
//! quarters are local quarters). Hours, days and months come from the
//! rollups instead, in the storage crate.

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use wattline_storage::{Agg, BuildingId, Quality, TenantId, TimeRange};

use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::functions::expr_fn::{date_bin, round};
use datafusion::functions_aggregate::count::count;
use datafusion::functions_aggregate::expr_fn::{max, sum};
use datafusion::prelude::{col, lit, when};

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
    /// One plan, built from expressions (no SQL text), over the
    /// `readings` table's derived energy: registers and power meters
    /// counted as the rollups count them. An answer cut at
    /// `query.max_rows` is an error rather than a partial series.
    pub async fn quarter_hours(
        &self,
        building: &BuildingId,
        tenant: &TenantId,
        range: TimeRange,
    ) -> Result<Vec<(i64, Agg)>> {
        let scope = Scope::tenant(tenant.clone());
        let filter = col("building_id")
            .eq(lit(building.as_str()))
            .and(col("ts").gt_eq(ts_literal(range.start_ms.max(-LIMIT_MS))))
            .and(col("ts").lt(ts_literal(range.end_ms.min(LIMIT_MS))));
        let quarter = date_bin(
            lit(ScalarValue::new_interval_mdn(0, 0, QUARTER_MS * 1_000_000)),
            col("ts"),
            ts_literal(0),
        );
        let quarantined = when(
            col("quality").eq(lit(Quality::Quarantined.name())),
            lit(1_i64),
        )
        .otherwise(lit(0_i64))
        .map_err(|e| QueryError::Internal(e.to_string()))?;
        let out = self
            .plan(&scope, move |df| {
                df.filter(filter)?
                    .aggregate(
                        vec![quarter.alias("q")],
                        vec![
                            sum(round(vec![col("value_kwh") * lit(1e6)])),
                            max(col("value_kwh")),
                            count(col("value_kwh")),
                            sum(quarantined),
                        ],
                    )?
                    .sort(vec![col("q").sort(true, false)])
            })
            .await?;
        let mut points = Vec::new();
        for b in &out {
            let ms = DataType::Timestamp(TimeUnit::Millisecond, None);
            let ts = column::<TimestampMillisecondArray>(b.column(0), &ms)?;
            let kwh = column::<Float64Array>(b.column(1), &DataType::Float64)?;
            let peak = column::<Float64Array>(b.column(2), &DataType::Float64)?;
            let n = column::<Int64Array>(b.column(3), &DataType::Int64)?;
            let bad = column::<Int64Array>(b.column(4), &DataType::Int64)?;
            for i in 0..b.num_rows() {
                // A quarter of register glitches and gaps only: no energy.
                if n.value(i) == 0 && bad.value(i) == 0 {
                    continue;
                }
                let known = |a: &Float64Array| if a.is_valid(i) { a.value(i) } else { 0.0 };
                points.push((
                    ts.value(i),
                    Agg {
                        // Whole milliwatt-hours, summed exactly (each
                        // reading rounded, as the rollups count it).
                        kwh: wattline_storage::round_kwh(known(&kwh) / 1e6),
                        peak_kwh: known(&peak),
                        readings: n.value(i),
                        peak_kw: None,
                        cost: None,
                        quarantined: bad.value(i),
                    },
                ));
            }
        }
        Ok(points)
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
