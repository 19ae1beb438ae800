//! A building's energy per 15-minute clock interval, from the raw
//! readings (every real UTC offset is a multiple of 15 minutes, so UTC
//! quarters are local quarters). Hours, days and months come from the
//! rollups instead, in the storage crate.

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use wattline_storage::{Agg, BuildingId, TenantId, TimeRange};

use crate::error::{QueryError, Result};
use crate::{QueryEngine, Scope};

/// Timestamps DataFusion's millisecond conversions accept.
const LIMIT_MS: i64 = 8_000_000_000_000;

impl QueryEngine {
    /// The non-empty quarters of `building` (of `tenant`, whose query
    /// slots it takes) whose start lies in `range`, in order.
    pub async fn quarter_hours(
        &self,
        building: &BuildingId,
        tenant: &TenantId,
        range: TimeRange,
    ) -> Result<Vec<(i64, Agg)>> {
        // Building ids are limited to A-Za-z0-9_.:- and cannot break the
        // quoting.
        let sql = format!(
            "SELECT date_bin(INTERVAL '15 minutes', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS q, \
             sum(round(value_kwh * 1000000)), max(value_kwh), count(*) FROM readings \
             WHERE building_id = '{}' AND ts >= to_timestamp_millis({}) \
             AND ts < to_timestamp_millis({}) GROUP BY q ORDER BY q",
            building.as_str(),
            range.start_ms.max(-LIMIT_MS),
            range.end_ms.min(LIMIT_MS)
        );
        let out = self.sql(&sql, &Scope::tenant(tenant.clone())).await?;
        let mut points = Vec::new();
        for b in &out.batches {
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
                    },
                )
            }));
        }
        Ok(points)
    }
}

/// `array` as `T`, cast to `ty` first.
fn column<T: Array + Clone + 'static>(array: &ArrayRef, ty: &DataType) -> Result<T> {
    cast(array, ty)
        .ok()
        .and_then(|a| a.as_any().downcast_ref::<T>().cloned())
        .ok_or_else(|| QueryError::Internal("15-minute energy has an unexpected schema".into()))
}
