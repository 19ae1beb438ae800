//! A building's energy per 15-minute clock interval, from the raw
//! readings (every real UTC offset is a multiple of 15 minutes, so UTC
//! quarters are local quarters). Hours, days and months come from the
//! rollups instead, in the storage crate.

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use wattline_storage::{Agg, BuildingId, Meter, TenantId, TimeRange, derive, reach_ms};

use crate::error::{QueryError, Result};
use crate::{QueryEngine, Scope};

/// Timestamps DataFusion's millisecond conversions accept.
const LIMIT_MS: i64 = 8_000_000_000_000;
/// A quarter hour in milliseconds.
const QUARTER_MS: i64 = 900_000;

impl QueryEngine {
    /// The non-empty quarters of `building` (of `tenant`, whose query
    /// slots it takes) whose start lies in `range`, in order.
    ///
    /// Interval meters are summed in SQL. Cumulative and power meters'
    /// readings are read with those up to their reach around the range
    /// and their interval energy derived, as the rollups do.
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
            .filter(|s| !s.meter.is_interval())
            .map(|s| (s.id.to_string(), s.meter))
            .collect();
        // Ids are limited to A-Za-z0-9_.:- and cannot break the quoting.
        let quoted = |ids: &mut dyn Iterator<Item = &str>| {
            ids.map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ")
        };
        let mut filter = format!(
            "building_id = '{}' AND ts >= to_timestamp_millis({}) AND ts < to_timestamp_millis({})",
            building.as_str(),
            range.start_ms.max(-LIMIT_MS),
            range.end_ms.min(LIMIT_MS)
        );
        if !meters.is_empty() {
            let ids = quoted(&mut meters.iter().map(|(i, _)| i.as_str()));
            filter.push_str(&format!(" AND sensor_id NOT IN ({ids})"));
        }
        let sql = format!(
            "SELECT date_bin(INTERVAL '15 minutes', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS q, \
             sum(round(value_kwh * 1000000)), max(value_kwh), count(*) FROM readings \
             WHERE {filter} GROUP BY q ORDER BY q"
        );
        let scope = Scope::tenant(tenant.clone());
        let out = self.sql(&sql, &scope).await?;
        let mut points: BTreeMap<i64, Agg> = BTreeMap::new();
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
                        peak_kw: None,
                        cost: None,
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
        let ids: Vec<String> = meters.iter().map(|(i, _)| format!("'{i}'")).collect();
        let sql = format!(
            "SELECT sensor_id, ts, value_kwh FROM readings WHERE sensor_id IN ({}) \
             AND ts >= to_timestamp_millis({}) AND ts < to_timestamp_millis({}) \
             ORDER BY sensor_id, ts",
            ids.join(", "),
            range.start_ms.saturating_sub(reach).max(-LIMIT_MS),
            range.end_ms.saturating_add(reach).min(LIMIT_MS)
        );
        let out = self.sql(&sql, scope).await?;
        if out.truncated {
            return Err(QueryError::TooComplex(
                "the range holds more meter readings than a query may answer \
                 (query.max_rows): ask for a shorter range"
                    .into(),
            ));
        }
        let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for b in &out.batches {
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
                let Some(kwh) = d.kwh.filter(|_| range.contains(d.ts_ms)) else {
                    continue;
                };
                let q = d.ts_ms - d.ts_ms.rem_euclid(QUARTER_MS);
                quarters
                    .entry(q)
                    .and_modify(|a| a.add(&Agg::one(kwh)))
                    .or_insert_with(|| Agg::one(kwh));
            }
        }
        Ok(quarters)
    }
}

/// `array` as `T`, cast to `ty` first.
fn column<T: Array + Clone + 'static>(array: &ArrayRef, ty: &DataType) -> Result<T> {
    cast(array, ty)
        .ok()
        .and_then(|a| a.as_any().downcast_ref::<T>().cloned())
        .ok_or_else(|| QueryError::Internal("15-minute energy has an unexpected schema".into()))
}
