//! Arrow columns as PostgreSQL types and rows, in text or binary format.
//!
//! Each Arrow type maps to the PostgreSQL type clients expect for it:
//! integers to `int2`/`int4`/`int8`, floats to `float4`/`float8`, strings
//! (plain, view or dictionary) to `text`, timestamps with a zone to
//! `timestamptz` (sent in UTC, the session's `TimeZone`), without to
//! `timestamp`, dates to `date`, bytes to `bytea`. Anything else (decimals,
//! intervals, lists) is sent as `text`, exactly as the engine prints it,
//! which every client can show and no client can misread.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::DateTime;
use futures::Stream;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

/// How a column is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytes,
    Date,
    Timestamp,
    TimestampTz,
    /// Printed by Arrow's formatter, sent as `text`.
    Printed,
}

impl Kind {
    fn of(ty: &DataType) -> Kind {
        use DataType as D;
        match ty {
            D::Boolean => Kind::Bool,
            D::Int8 | D::Int16 | D::UInt8 => Kind::Int2,
            D::Int32 | D::UInt16 => Kind::Int4,
            D::Int64 | D::UInt32 | D::UInt64 => Kind::Int8,
            D::Float16 | D::Float32 => Kind::Float4,
            D::Float64 => Kind::Float8,
            D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Null => Kind::Text,
            D::Dictionary(_, v) if Kind::of(v) == Kind::Text => Kind::Text,
            D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => Kind::Bytes,
            D::Date32 | D::Date64 => Kind::Date,
            D::Timestamp(_, None) => Kind::Timestamp,
            D::Timestamp(_, Some(_)) => Kind::TimestampTz,
            _ => Kind::Printed,
        }
    }

    fn pg_type(self) -> Type {
        match self {
            Kind::Bool => Type::BOOL,
            Kind::Int2 => Type::INT2,
            Kind::Int4 => Type::INT4,
            Kind::Int8 => Type::INT8,
            Kind::Float4 => Type::FLOAT4,
            Kind::Float8 => Type::FLOAT8,
            Kind::Text | Kind::Printed => Type::TEXT,
            Kind::Bytes => Type::BYTEA,
            Kind::Date => Type::DATE,
            Kind::Timestamp => Type::TIMESTAMP,
            Kind::TimestampTz => Type::TIMESTAMPTZ,
        }
    }

    /// The Arrow type a column is cast to before it is sent.
    fn wire_arrow_type(self, ty: &DataType) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Bytes => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => match ty {
                DataType::Timestamp(_, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
                }
                _ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            },
            Kind::Printed => ty.clone(),
        }
    }
}

/// The PostgreSQL type an Arrow type is sent as.
pub(crate) fn pg_type(ty: &DataType) -> Type {
    Kind::of(ty).pg_type()
}

/// The format of column `i` that a Bind asked for (text where it named
/// fewer formats than columns: the protocol allows none, one or all).
pub(crate) fn format_of(format: Option<&Format>, i: usize) -> FieldFormat {
    match format {
        Some(Format::UnifiedBinary) => FieldFormat::Binary,
        Some(Format::Individual(codes)) => match codes.as_slice() {
            [one] => FieldFormat::from(*one),
            all => all
                .get(i)
                .map_or(FieldFormat::Text, |c| FieldFormat::from(*c)),
        },
        _ => FieldFormat::Text,
    }
}

/// The row description of `schema`.
pub(crate) fn fields(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format_of(format, i),
            )
        })
        .collect()
}

/// `batches` with each column in the type `schema` (what a Describe told
/// the client) sends it as; a statement planned again may differ slightly
/// (a parameter bound to a typed value where it was untyped).
pub(crate) fn conform(
    batches: Vec<RecordBatch>,
    schema: &Schema,
) -> PgWireResult<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| {
            if batch.num_columns() != schema.fields().len() {
                return Err(PgWireError::ApiError(
                    "the statement's columns changed since it was described; prepare it again"
                        .into(),
                ));
            }
            let mut changed = false;
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    let kind = Kind::of(f.data_type());
                    if Kind::of(c.data_type()) == kind {
                        return Ok(c.clone());
                    }
                    changed = true;
                    let cast = CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    cast_with_options(c, &kind.wire_arrow_type(f.data_type()), &cast).map_err(to_pg)
                })
                .collect::<PgWireResult<Vec<ArrayRef>>>()?;
            if !changed {
                return Ok(batch);
            }
            let fields: Vec<_> = columns
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| Field::new(f.name(), c.data_type().clone(), true))
                .collect();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(to_pg)
        })
        .collect()
}

/// The rows of `batches`, encoded one batch at a time as they are sent.
pub(crate) fn rows(
    batches: Vec<RecordBatch>,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send {
    let encoded =
        batches
            .into_iter()
            .flat_map(move |batch| match encode_batch(&batch, fields.clone()) {
                Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            });
    futures::stream::iter(encoded)
}

fn encode_batch(batch: &RecordBatch, fields: Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let cast = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            let kind = Kind::of(c.data_type());
            let wire = kind.wire_arrow_type(c.data_type());
            let column = if &wire == c.data_type() {
                c.clone()
            } else {
                cast_with_options(c, &wire, &cast).map_err(to_pg)?
            };
            Ok((kind, column))
        })
        .collect::<PgWireResult<Vec<(Kind, ArrayRef)>>>()?;
    let options = FormatOptions::default().with_display_error(true);
    let printers = columns
        .iter()
        .map(|(kind, c)| match kind {
            Kind::Printed => ArrayFormatter::try_new(c.as_ref(), &options)
                .map(Some)
                .map_err(to_pg),
            _ => Ok(None),
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    let text: Vec<bool> = fields
        .iter()
        .map(|f| f.format() == FieldFormat::Text)
        .collect();
    let mut encoder = DataRowEncoder::new(fields);
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (((kind, column), printer), text) in columns.iter().zip(&printers).zip(&text) {
            encode_value(&mut encoder, *kind, column, printer.as_ref(), *text, row)?;
        }
        out.push(encoder.take_row());
    }
    Ok(out)
}

fn encode_value(
    encoder: &mut DataRowEncoder,
    kind: Kind,
    column: &ArrayRef,
    printer: Option<&ArrayFormatter<'_>>,
    text: bool,
    row: usize,
) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i8>);
    }
    let bad = || PgWireError::ApiError("a column changed type while it was sent".into());
    match kind {
        Kind::Bool => {
            encoder.encode_field(&as_::<BooleanArray>(column).ok_or_else(bad)?.value(row))
        }
        Kind::Int2 => encoder.encode_field(&as_::<Int16Array>(column).ok_or_else(bad)?.value(row)),
        Kind::Int4 => encoder.encode_field(&as_::<Int32Array>(column).ok_or_else(bad)?.value(row)),
        Kind::Int8 => encoder.encode_field(&as_::<Int64Array>(column).ok_or_else(bad)?.value(row)),
        Kind::Float4 => {
            let v = as_::<Float32Array>(column).ok_or_else(bad)?.value(row);
            if text {
                encoder.encode_field(&float_text(f64::from(v), v.to_string()))
            } else {
                encoder.encode_field(&v)
            }
        }
        Kind::Float8 => {
            let v = as_::<Float64Array>(column).ok_or_else(bad)?.value(row);
            if text {
                encoder.encode_field(&float_text(v, v.to_string()))
            } else {
                encoder.encode_field(&v)
            }
        }
        Kind::Text => encoder.encode_field(&as_::<StringArray>(column).ok_or_else(bad)?.value(row)),
        Kind::Bytes => {
            encoder.encode_field(&as_::<BinaryArray>(column).ok_or_else(bad)?.value(row))
        }
        Kind::Date => {
            let days = as_::<Date32Array>(column).ok_or_else(bad)?.value(row);
            encoder.encode_field(&Date32Type::to_naive_date_opt(days).ok_or_else(out_of_range)?)
        }
        Kind::Timestamp | Kind::TimestampTz => {
            let micros = as_::<TimestampMicrosecondArray>(column)
                .ok_or_else(bad)?
                .value(row);
            let at = DateTime::from_timestamp_micros(micros).ok_or_else(out_of_range)?;
            if text {
                // As PostgreSQL prints them: no trailing zeros of a fraction.
                let mut s = at.format("%Y-%m-%d %H:%M:%S").to_string();
                let fraction = micros.rem_euclid(1_000_000);
                if fraction != 0 {
                    s.push_str(format!(".{fraction:06}").trim_end_matches('0'));
                }
                if kind == Kind::TimestampTz {
                    s.push_str("+00");
                }
                encoder.encode_field(&s)
            } else if kind == Kind::Timestamp {
                encoder.encode_field(&at.naive_utc())
            } else {
                encoder.encode_field(&at)
            }
        }
        Kind::Printed => {
            let printer = printer.ok_or_else(bad)?;
            encoder.encode_field(&printer.value(row).try_to_string().map_err(to_pg)?)
        }
    }
}

/// A float as PostgreSQL prints it: the shortest text that reads back
/// exactly (`shortest`, Rust's), with an exponent below 1e-4 and from 1e15.
fn float_text(v: f64, shortest: String) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let magnitude = v.abs();
    if v == 0.0 || (1e-4..1e15).contains(&magnitude) {
        return shortest;
    }
    // Rust's `{:e}` of the same digits: 1.5e-7 -> 1.5e-07, 1e21 -> 1e+21.
    let digits = shortest.trim_start_matches('-').replace('.', "");
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    let leading_zeros = digits.len() - digits.trim_start_matches('0').len();
    let point = shortest
        .trim_start_matches('-')
        .find('.')
        .unwrap_or(digits.len());
    let exponent = point as i64 - leading_zeros as i64 - 1;
    let mantissa = match significant.split_at(1.min(significant.len())) {
        (first, "") => first.to_owned(),
        (first, rest) => format!("{first}.{rest}"),
    };
    let sign = if v < 0.0 { "-" } else { "" };
    let exp_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
}

fn as_<T: 'static>(column: &ArrayRef) -> Option<&T> {
    column.as_any().downcast_ref::<T>()
}

fn out_of_range() -> PgWireError {
    PgWireError::ApiError("a date or timestamp is out of PostgreSQL's range".into())
}

fn to_pg(e: arrow::error::ArrowError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// A date PostgreSQL can show; used by tests of the mapping.
#[cfg(test)]
fn date(days: i32) -> Option<chrono::NaiveDate> {
    Date32Type::to_naive_date_opt(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array as I32, StringViewArray, UInt64Array};
    use arrow::datatypes::Int32Type;
    use futures::StreamExt;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    /// Each value of the first row, as the text format sends it.
    async fn text_row(b: RecordBatch) -> Vec<Option<String>> {
        let fields = Arc::new(fields(b.schema().as_ref(), None));
        let mut rows = Box::pin(rows(vec![b], fields));
        let row = rows.next().await.unwrap().unwrap();
        let mut data = &row.data[..];
        (0..row.field_count)
            .map(|_| {
                let len = i32::from_be_bytes(data[..4].try_into().unwrap());
                data = &data[4..];
                (len >= 0).then(|| {
                    let (v, rest) = data.split_at(len as usize);
                    data = rest;
                    String::from_utf8(v.to_vec()).unwrap()
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn arrow_types_map_to_the_types_clients_expect() {
        let ts = TimestampMicrosecondArray::from(vec![Some(1_700_000_000_123_000)]);
        let dict: DictionaryArray<Int32Type> = vec!["b1"].into_iter().collect();
        let b = batch(vec![
            Arc::new(ts.clone().with_timezone("UTC")),
            Arc::new(ts),
            Arc::new(dict),
            Arc::new(StringViewArray::from(vec!["s"])),
            Arc::new(Float64Array::from(vec![699.566])),
            Arc::new(UInt64Array::from(vec![7])),
            Arc::new(I32::from(vec![None])),
            Arc::new(Date32Array::from(vec![19_000])),
            Arc::new(
                arrow::array::Decimal128Array::from(vec![12345])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ]);
        let types: Vec<Type> = fields(b.schema().as_ref(), None)
            .iter()
            .map(|f| f.datatype().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                Type::TIMESTAMPTZ,
                Type::TIMESTAMP,
                Type::TEXT,
                Type::TEXT,
                Type::FLOAT8,
                Type::INT8,
                Type::INT4,
                Type::DATE,
                Type::TEXT
            ]
        );
        let text = text_row(b).await;
        let text: Vec<&str> = text
            .iter()
            .map(|v| v.as_deref().unwrap_or("NULL"))
            .collect();
        assert_eq!(
            text,
            vec![
                "2023-11-14 22:13:20.123+00",
                "2023-11-14 22:13:20.123",
                "b1",
                "s",
                "699.566",
                "7",
                "NULL",
                &date(19_000).unwrap().to_string(),
                "123.45"
            ]
        );
    }

    #[test]
    fn floats_print_as_postgresql_prints_them() {
        for (v, want) in [
            (1.0, "1"),
            (699.566, "699.566"),
            (-0.5, "-0.5"),
            (0.0, "0"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-07"),
            (-123456789012345680.0, "-1.2345678901234568e+17"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float_text(v, v.to_string()), want, "{v}");
        }
    }

    #[test]
    fn a_bind_may_name_no_one_or_every_column_format() {
        let one = Format::Individual(vec![1]);
        assert_eq!(format_of(Some(&one), 3), FieldFormat::Binary);
        let each = Format::Individual(vec![0, 1]);
        assert_eq!(format_of(Some(&each), 1), FieldFormat::Binary);
        assert_eq!(format_of(Some(&each), 5), FieldFormat::Text);
        assert_eq!(format_of(None, 0), FieldFormat::Text);
    }

    /// `pg_attribute` (what drivers read of a column) says what is sent.
    #[test]
    fn the_catalog_names_the_types_that_are_sent() {
        let types = [
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float16,
            DataType::Float32,
            DataType::Float64,
            DataType::Utf8,
            DataType::Utf8View,
            DataType::LargeUtf8,
            DataType::Binary,
            DataType::BinaryView,
            DataType::FixedSizeBinary(4),
            DataType::Date32,
            DataType::Date64,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+01:00".into())),
            DataType::Decimal128(18, 3),
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
        ];
        for ty in types {
            assert_eq!(
                i64::from(pg_type(&ty).oid()),
                wattline_query::pg_type_oid(&ty),
                "{ty}"
            );
        }
    }
}
