//! Bound parameters (the extended protocol's `$1`, `$2`, ...) as values
//! of the types the query expects.
//!
//! A parameter arrives in text or binary format, typed by the client or
//! left for the server to infer. Text is given to the engine as a string
//! cast to the type the query needs there (the engine's casts parse
//! numbers, booleans, dates and timestamps); binary is decoded by its
//! PostgreSQL type first. A value that does not fit is the client's error,
//! never a silent null.

use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::PgWireResult;

use crate::errors::error;
use postgres_types::FromSql;

/// The PostgreSQL type told to clients for a parameter of type `ty`
/// (`text` where the query leaves it open, as in `SELECT $1`).
pub(crate) fn param_type(ty: Option<&DataType>) -> Type {
    ty.map_or(Type::TEXT, crate::encode::pg_type)
}

/// The Arrow type of a parameter the client declared as `ty`, where the
/// query leaves it open (`None`: bound as sent).
pub(crate) fn arrow_type(ty: &Type) -> Option<DataType> {
    use arrow::datatypes::TimeUnit::Microsecond;
    Some(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 | Type::NUMERIC => DataType::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(Microsecond, Some("UTC".into())),
        _ => return None,
    })
}

/// The values bound in `portal`, each cast to its entry of `targets`.
pub(crate) fn bind<S>(
    portal: &Portal<S>,
    types: &[Type],
    targets: &[Option<DataType>],
) -> PgWireResult<Vec<ScalarValue>> {
    if portal.parameters.len() != targets.len() {
        return Err(error(
            "08P01",
            format!(
                "the statement takes {} parameters, {} were bound",
                targets.len(),
                portal.parameters.len()
            ),
        ));
    }
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let target = targets[i].as_ref();
            let ty = types.get(i).cloned().unwrap_or(Type::TEXT);
            let value = match raw {
                None => return Ok(target.map_or(ScalarValue::Null, null_of)),
                Some(bytes) if portal.parameter_format.is_binary(i) => decode_binary(&ty, bytes)
                    .map_err(|e| {
                        error(
                            "22P03",
                            format!("parameter ${}: not a binary {}: {e}", i + 1, ty.name()),
                        )
                    })?,
                Some(bytes) => ScalarValue::Utf8(Some(
                    std::str::from_utf8(bytes)
                        .map_err(|_| error("22021", format!("parameter ${} is not UTF-8", i + 1)))?
                        .to_owned(),
                )),
            };
            match target {
                Some(t) if &value.data_type() != t => value.cast_to(t).map_err(|e| {
                    error(
                        "22P02",
                        format!("parameter ${}: {value} is not a valid {t}: {e}", i + 1),
                    )
                }),
                _ => Ok(value),
            }
        })
        .collect()
}

fn null_of(ty: &DataType) -> ScalarValue {
    ScalarValue::try_from(ty).unwrap_or(ScalarValue::Null)
}

type DecodeResult = Result<ScalarValue, Box<dyn std::error::Error + Sync + Send>>;

fn decode_binary(ty: &Type, raw: &[u8]) -> DecodeResult {
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(bool::from_sql(ty, raw)?)),
        Type::INT2 => ScalarValue::Int16(Some(i16::from_sql(ty, raw)?)),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_sql(ty, raw)?)),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_sql(ty, raw)?)),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_sql(ty, raw)?)),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_sql(ty, raw)?)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            ScalarValue::Utf8(Some(String::from_sql(ty, raw)?))
        }
        Type::BYTEA => ScalarValue::Binary(Some(Vec::<u8>::from_sql(ty, raw)?)),
        Type::DATE => {
            let days = NaiveDate::from_sql(ty, raw)?
                .signed_duration_since(DateTime::UNIX_EPOCH.date_naive())
                .num_days();
            ScalarValue::Date32(Some(i32::try_from(days)?))
        }
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            Some(
                NaiveDateTime::from_sql(ty, raw)?
                    .and_utc()
                    .timestamp_micros(),
            ),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            Some(DateTime::<Utc>::from_sql(ty, raw)?.timestamp_micros()),
            Some("UTC".into()),
        ),
        _ => {
            return Err(format!(
                "binary {} parameters are not supported; send it as text",
                ty.name()
            )
            .into());
        }
    })
}

/// A binary `timestamp` (no zone) parameter's type.
#[cfg(test)]
const TS_NAIVE: DataType = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use postgres_types::ToSql;

    fn binary<T: ToSql>(ty: &Type, v: T) -> Bytes {
        let mut b = BytesMut::new();
        v.to_sql(ty, &mut b).unwrap();
        b.freeze()
    }

    #[test]
    fn binary_values_decode_by_their_type() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            decode_binary(&Type::TIMESTAMPTZ, &binary(&Type::TIMESTAMPTZ, at)).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), Some("UTC".into()))
        );
        assert_eq!(
            decode_binary(&Type::TIMESTAMP, &binary(&Type::TIMESTAMP, at.naive_utc()))
                .unwrap()
                .data_type(),
            TS_NAIVE
        );
        assert_eq!(
            decode_binary(&Type::INT4, &binary(&Type::INT4, 7i32)).unwrap(),
            ScalarValue::Int32(Some(7))
        );
        let d = NaiveDate::from_ymd_opt(1970, 1, 11).unwrap();
        assert_eq!(
            decode_binary(&Type::DATE, &binary(&Type::DATE, d)).unwrap(),
            ScalarValue::Date32(Some(10))
        );
        assert!(decode_binary(&Type::INT8, &[1, 2]).is_err());
        assert!(decode_binary(&Type::NUMERIC, &[0; 8]).is_err());
    }
}
