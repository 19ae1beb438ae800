//! The fleet's tables and what one publish of a unit puts in them.
//!
//! A *unit* is what one publish replaces as a whole: a UTC day of raw
//! readings or sensor hours, a month of building days or months. A unit
//! lives in the table as the site's files named after it, in the
//! partition `site=<site>/month=<YYYY-MM>`; publishing it again removes
//! those files and adds the new ones in one commit, so readers never see
//! a reading twice or a corrected value beside the old one.
//!
//! Data files hold the columns of the local table, timestamps as UTC
//! microseconds (Delta's `timestamp`); `site` and `month` are partition
//! values, not columns of the files.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{Datelike, NaiveDate};
use deltalake_core::kernel::{DataType as DeltaType, StructField};
use wattline_storage::{
    DAY_MS, DayChange, ReadingStore, RollupRow, RollupTable, SensorNames, TimeRange, from_days,
    rollup_batch, to_record_batch,
};

use crate::error::Result;

/// How long the store keeps raw readings and rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw: std::time::Duration,
    pub rollups: std::time::Duration,
}

/// One table of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// Raw readings, unit: UTC day of `ts`.
    Readings,
    /// Energy per sensor and hour, unit: UTC day of `hour`.
    SensorHourly,
    /// Energy, demand and cost per building and local day, unit: month.
    BuildingDaily,
    /// Energy, demand and cost per building and local month, unit: month.
    BuildingMonthly,
}

/// What one publish replaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    /// `YYYY-MM-DD` (a UTC day) or `YYYY-MM` (a month); starts the names
    /// of the unit's files.
    pub key: String,
    /// The `month` partition value.
    pub month: String,
}

impl Unit {
    fn day(day: i64) -> Self {
        let d = from_days(day);
        Unit {
            key: d.format("%Y-%m-%d").to_string(),
            month: d.format("%Y-%m").to_string(),
        }
    }

    fn month(day: i64) -> Self {
        let month = from_days(day).format("%Y-%m").to_string();
        Unit {
            key: month.clone(),
            month,
        }
    }

    /// Every day of the month `YYYY-MM`, as units.
    pub fn days_of_month(month: &str) -> Result<Vec<Unit>> {
        let first = parse_month(month)?;
        let start = first.signed_duration_since(NaiveDate::default()).num_days();
        Ok((start..start + 31)
            .map(Unit::day)
            .filter(|u| u.month == month)
            .collect())
    }

    /// The unit a data file of the table belongs to, from its name
    /// (`<key>--<rest>.parquet`).
    pub fn key_of_file(path: &str) -> Option<&str> {
        let name = path.rsplit('/').next()?;
        name.split_once("--").map(|(key, _)| key)
    }
}

impl Dataset {
    pub const ALL: [Dataset; 4] = [
        Dataset::Readings,
        Dataset::SensorHourly,
        Dataset::BuildingDaily,
        Dataset::BuildingMonthly,
    ];

    /// The table's name, and its folder under the prefix.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Readings => "readings",
            Dataset::SensorHourly => "sensor_hourly",
            Dataset::BuildingDaily => "building_daily",
            Dataset::BuildingMonthly => "building_monthly",
        }
    }

    /// Whether a unit is a UTC day (else a month). Such tables' files of
    /// a month may be compacted into one (`wattline fleet maintain`).
    pub fn by_day(self) -> bool {
        matches!(self, Dataset::Readings | Dataset::SensorHourly)
    }

    fn rollup(self) -> Option<RollupTable> {
        match self {
            Dataset::Readings => None,
            Dataset::SensorHourly => Some(RollupTable::SensorHourly),
            Dataset::BuildingDaily => Some(RollupTable::BuildingDaily),
            Dataset::BuildingMonthly => Some(RollupTable::BuildingMonthly),
        }
    }

    /// The columns of the data files.
    pub fn file_schema(self) -> SchemaRef {
        let local = match self.rollup() {
            None => wattline_storage::readings_schema(),
            Some(t) => t.schema(),
        };
        let fields: Vec<Field> = local
            .fields()
            .iter()
            // The monthly table's own `month` is its partition value.
            .filter(|f| !(self == Dataset::BuildingMonthly && f.name() == "month"))
            .map(|f| match f.data_type() {
                DataType::Timestamp(_, tz) => f
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
                _ => f.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The table's columns: the partition columns, then the files'.
    pub fn delta_columns(self) -> Vec<StructField> {
        let mut out = vec![
            StructField::new("site", DeltaType::STRING, false),
            StructField::new("month", DeltaType::STRING, false),
        ];
        for f in self.file_schema().fields() {
            let ty = match f.data_type() {
                DataType::Utf8 => DeltaType::STRING,
                DataType::Float64 => DeltaType::DOUBLE,
                DataType::Int64 => DeltaType::LONG,
                DataType::Date32 => DeltaType::DATE,
                DataType::Timestamp(..) => DeltaType::TIMESTAMP,
                other => unreachable!("no Delta type chosen for {other}"),
            };
            out.push(StructField::new(f.name(), ty, f.is_nullable()));
        }
        out
    }

    /// The partition columns.
    pub fn partition_columns() -> [&'static str; 2] {
        ["site", "month"]
    }

    /// The units a change touches.
    pub fn units_of(self, change: &DayChange) -> Vec<Unit> {
        match self {
            Dataset::Readings | Dataset::SensorHourly if change.buildings_only => vec![],
            _ => self.units_of_day(change.day),
        }
    }

    /// The units a change of UTC day `day` touches: the day's readings;
    /// sensor hours of the day and its neighbours (an hour of a zone at
    /// +05:30 starts the UTC day before; a register's interval reaches
    /// across midnight); the months of local days a step of the day
    /// recomputes (the quarters of the neighbouring UTC days, which are
    /// local days up to two days off in zones from -12:00 to +14:00).
    pub fn units_of_day(self, day: i64) -> Vec<Unit> {
        let mut out = match self {
            Dataset::Readings => vec![Unit::day(day)],
            Dataset::SensorHourly => (day - 1..=day + 1).map(Unit::day).collect(),
            Dataset::BuildingDaily | Dataset::BuildingMonthly => {
                (day - 2..=day + 2).map(Unit::month).collect()
            }
        };
        out.dedup();
        out
    }

    /// The unit's rows as they are in the store now, as one batch of
    /// [`Self::file_schema`]; `None` when the store no longer has the
    /// unit (retention dropped it). Blocking.
    pub fn local_rows(self, store: &ReadingStore, unit: &Unit) -> Result<Option<RecordBatch>> {
        let batch = match self.rollup() {
            None => {
                let day = parse_day(&unit.key)?;
                let range = TimeRange {
                    start_ms: day * DAY_MS,
                    end_ms: (day + 1) * DAY_MS,
                };
                let snap = store.snapshot();
                if range.end_ms <= snap.raw_floor_ms {
                    return Ok(None);
                }
                let names = SensorNames::from_catalog(&store.catalog().view());
                let rows = snap.merged_readings(&|_| true, range, &names)?;
                to_record_batch(&rows, &names)?
            }
            Some(table @ RollupTable::BuildingMonthly) => {
                let Some(rows) = store.rollups().partition_rows(table, "")? else {
                    return Ok(None);
                };
                let first = parse_month(&unit.key)?;
                let in_month: Vec<RollupRow> = rows
                    .into_iter()
                    .filter(|r| {
                        let d = from_days(r.at);
                        (d.year(), d.month()) == (first.year(), first.month())
                    })
                    .collect();
                if in_month.is_empty() {
                    return Ok(None);
                }
                rollup_batch(table, &in_month)?
            }
            Some(table) => match store.rollups().partition_rows(table, &unit.key)? {
                None => return Ok(None),
                Some(rows) => rollup_batch(table, &rows)?,
            },
        };
        Ok(Some(to_file_schema(&batch, &self.file_schema())?))
    }
}

/// What retention dropped of a table's published units.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gone {
    /// Units (and compacted months) the store no longer holds any of.
    pub units: Vec<String>,
    /// Compacted months whose first days it dropped, each with the first
    /// UTC day (days since the epoch) it still holds of the month.
    pub trims: Vec<(String, i64)>,
}

impl Dataset {
    /// Which of the published units `keys` retention dropped: the store
    /// no longer holds them and they ended before what it keeps (a unit
    /// this store never held, such as history published from an earlier
    /// data directory of the site, stays). A compacted month is judged
    /// day by day: retention drops the oldest days first, so what it
    /// dropped is a run of days from the month's start. Blocking.
    pub fn gone_units(
        self,
        store: &ReadingStore,
        keys: &[String],
        retention: Retention,
    ) -> Result<Gone> {
        let kept_from = wattline_storage::now_ms()
            - i64::try_from(retention.rollups.as_millis()).unwrap_or(i64::MAX);
        let rollups = store.rollups();
        let months: Option<std::collections::HashSet<String>> = match self {
            Dataset::BuildingMonthly => Some(
                rollups
                    .partition_rows(RollupTable::BuildingMonthly, "")?
                    .unwrap_or_default()
                    .iter()
                    .map(|r| from_days(r.at).format("%Y-%m").to_string())
                    .collect(),
            ),
            _ => None,
        };
        let floor = store.snapshot().raw_floor_ms;
        // Whether a day or a (not compacted) month is gone.
        let unit_gone = |key: &str| -> Result<bool> {
            let end_ms = if key.len() == 7 {
                let first = parse_day(&format!("{key}-01"))?;
                (first + Unit::days_of_month(key)?.len() as i64) * DAY_MS
            } else {
                (parse_day(key)? + 1) * DAY_MS
            };
            if self != Dataset::Readings && end_ms > kept_from {
                return Ok(false);
            }
            let held = match (self, &months) {
                // Raw readings: below the floor only retention drops.
                (Dataset::Readings, _) => end_ms > floor,
                (_, Some(months)) => months.contains(key),
                (d, None) => d.rollup().is_some_and(|t| rollups.has_partition(t, key)),
            };
            Ok(!held)
        };
        let mut gone = Gone::default();
        for key in keys {
            if !(self.by_day() && key.len() == 7) {
                if unit_gone(key)? {
                    gone.units.push(key.clone());
                }
                continue;
            }
            // Only a run of gone days from the month's start: a day with
            // nothing held after a held one is a gap, not retention.
            let days = Unit::days_of_month(key)?;
            let mut held_from = 0;
            while held_from < days.len() && unit_gone(&days[held_from].key)? {
                held_from += 1;
            }
            match days.get(held_from) {
                _ if held_from == 0 => {}
                None => gone.units.push(key.clone()),
                Some(day) => gone.trims.push((key.clone(), parse_day(&day.key)?)),
            }
        }
        Ok(gone)
    }
}

/// The columns of the files, by name, millisecond timestamps cast to
/// microseconds.
/// A nullable column a batch lacks (a file written before the column
/// existed) is filled with nulls.
pub(crate) fn to_file_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(column) => arrow::compute::cast(column, f.data_type()),
            None if f.is_nullable() => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
            None => Err(arrow::error::ArrowError::SchemaError(format!(
                "no column {}",
                f.name()
            ))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl Dataset {
    /// The rows of `batch` (a file of this by-day table) in UTC day `unit`.
    pub(crate) fn rows_of_day(self, batch: &RecordBatch, unit: &Unit) -> Result<RecordBatch> {
        let day = parse_day(&unit.key)?;
        self.rows_between(batch, day * DAY_MS, (day + 1) * DAY_MS)
    }

    /// The rows of `batch` (a file of this by-day table) whose time is in
    /// `[start_ms, end_ms)`.
    pub(crate) fn rows_between(
        self,
        batch: &RecordBatch,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<RecordBatch> {
        use arrow::array::{Array, TimestampMicrosecondArray};
        // By name of this table: a newer version may add other columns.
        let name = match self {
            Dataset::SensorHourly => "hour",
            _ => "ts",
        };
        let (start, end) = (start_ms.saturating_mul(1000), end_ms.saturating_mul(1000));
        let column = batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no time column {name}"))
            })?;
        let keep: arrow::array::BooleanArray = (0..column.len())
            .map(|i| Some(column.is_valid(i) && (start..end).contains(&column.value(i))))
            .collect();
        Ok(arrow::compute::filter_record_batch(batch, &keep)?)
    }
}

/// `YYYY-MM-DD` of a UTC day (days since the epoch).
pub(crate) fn day_key(day: i64) -> String {
    Unit::day(day).key
}

pub(crate) fn parse_day(key: &str) -> Result<i64> {
    let d = NaiveDate::parse_from_str(key, "%Y-%m-%d")
        .map_err(|e| crate::Error::Config(format!("unit {key:?}: {e}")))?;
    Ok(d.signed_duration_since(NaiveDate::default()).num_days())
}

fn parse_month(key: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{key}-01"), "%Y-%m-%d")
        .map_err(|e| crate::Error::Config(format!("unit {key:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_touches_its_neighbours_hours_and_their_months() {
        // 2026-11-30 is day 20_422 since the epoch.
        let day = parse_day("2026-11-30").unwrap();
        assert_eq!(Unit::day(day).key, "2026-11-30");
        let keys = |d: Dataset| -> Vec<String> {
            d.units_of_day(day).into_iter().map(|u| u.key).collect()
        };
        assert_eq!(keys(Dataset::Readings), ["2026-11-30"]);
        assert_eq!(
            keys(Dataset::SensorHourly),
            ["2026-11-29", "2026-11-30", "2026-12-01"]
        );
        assert_eq!(keys(Dataset::BuildingDaily), ["2026-11", "2026-12"]);
        // A late reading of March 2 reaches local February 28 in New York.
        let march = parse_day("2026-03-02").unwrap();
        let months: Vec<String> = Dataset::BuildingDaily
            .units_of_day(march)
            .into_iter()
            .map(|u| u.key)
            .collect();
        assert_eq!(months, ["2026-02", "2026-03"]);
        let mid = parse_day("2026-11-15").unwrap();
        assert_eq!(Dataset::BuildingMonthly.units_of_day(mid).len(), 1);
    }

    #[test]
    fn a_month_has_its_days() {
        let days = Unit::days_of_month("2028-02").unwrap();
        assert_eq!(days.len(), 29);
        assert_eq!(days[0].key, "2028-02-01");
        assert!(days.iter().all(|d| d.month == "2028-02"));
        assert_eq!(Unit::days_of_month("2026-12").unwrap().len(), 31);
    }

    #[test]
    fn a_file_name_tells_its_unit() {
        assert_eq!(
            Unit::key_of_file("site=a/month=2026-11/2026-11-30--0000042-17.parquet"),
            Some("2026-11-30")
        );
        assert_eq!(
            Unit::key_of_file("site=a/month=2026-11/other.parquet"),
            None
        );
    }

    #[test]
    fn every_table_has_partition_columns_then_microsecond_timestamps() {
        for d in Dataset::ALL {
            let cols = d.delta_columns();
            assert_eq!(cols[0].name(), "site");
            assert_eq!(cols[1].name(), "month");
            let names: std::collections::HashSet<_> = cols.iter().map(|c| c.name()).collect();
            assert_eq!(names.len(), cols.len(), "{} repeats a column", d.name());
            for f in d.file_schema().fields() {
                if let DataType::Timestamp(unit, tz) = f.data_type() {
                    assert_eq!(*unit, TimeUnit::Microsecond);
                    assert_eq!(tz.as_deref(), Some("UTC"));
                }
            }
        }
    }
}
