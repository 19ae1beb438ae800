//! `application/json`:
//! `{"columns":[{"name","type"}],"rows":[[...]],"truncated":false}`.
//!
//! Numbers stay numbers (non-finite floats become `null`), timestamps
//! become RFC 3339 strings in UTC, dates `YYYY-MM-DD`; other types are
//! written as Arrow displays them.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};
use wattline_query::QueryOutput;

use crate::ingest::timestamp::format_utc;

pub(super) fn encode(output: &QueryOutput) -> Result<Vec<u8>, ArrowError> {
    let columns: Vec<Value> = output
        .schema
        .fields()
        .iter()
        .map(|f| {
            let mut c = Map::new();
            c.insert("name".into(), f.name().clone().into());
            c.insert("type".into(), f.data_type().to_string().into());
            Value::Object(c)
        })
        .collect();
    let mut rows = Vec::new();
    for batch in &output.batches {
        let cells = batch
            .columns()
            .iter()
            .map(column_values)
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(Value::Array(cells.iter().map(|c| c[i].clone()).collect()));
        }
    }
    let answer = json!({"columns": columns, "rows": rows, "truncated": output.truncated});
    Ok(serde_json::to_vec(&answer).expect("JSON values serialise"))
}

fn column_values(array: &ArrayRef) -> Result<Vec<Value>, ArrowError> {
    let n = array.len();
    let nulls = |mut values: Vec<Value>| {
        for (i, v) in values.iter_mut().enumerate() {
            if array.is_null(i) {
                *v = Value::Null;
            }
        }
        values
    };
    let values = match array.data_type() {
        DataType::Boolean => {
            let a = array.as_boolean();
            (0..n).map(|i| Value::Bool(a.value(i))).collect()
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let a = cast(array, &DataType::Int64)?;
            let a = a.as_primitive::<arrow::datatypes::Int64Type>();
            (0..n).map(|i| Value::from(a.value(i))).collect()
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let a = cast(array, &DataType::UInt64)?;
            let a = a.as_primitive::<arrow::datatypes::UInt64Type>();
            (0..n).map(|i| Value::from(a.value(i))).collect()
        }
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            let a = cast(array, &DataType::Float64)?;
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            (0..n)
                .map(|i| {
                    serde_json::Number::from_f64(a.value(i)).map_or(Value::Null, Value::Number)
                })
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a = cast(array, &DataType::Utf8)?;
            let a = a.as_string::<i32>();
            (0..n).map(|i| Value::from(a.value(i))).collect()
        }
        DataType::Timestamp(_, _) => {
            let a = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let a = a.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
            (0..n)
                .map(|i| Value::from(format_utc(a.value(i))))
                .collect()
        }
        _ => {
            let f = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
            (0..n)
                .map(|i| Value::from(f.value(i).to_string()))
                .collect()
        }
    };
    Ok(nulls(values))
}
