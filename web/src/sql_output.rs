//! Query answers in the four formats of `POST /api/v1/sql`, chosen by
//! `?format=` or else the `Accept` header; JSON by default.

mod arrow_ipc;
mod csv;
mod json;
mod parquet;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use wattline_query::QueryOutput;

use crate::error::{ApiError, ApiResult};

/// The answer with view-typed strings (how DataFusion reads them) as
/// plain `Utf8`, the type every client library knows.
fn plain_strings(output: &QueryOutput) -> Result<QueryOutput, arrow::error::ArrowError> {
    let fields: Vec<Field> = output
        .schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
            DataType::BinaryView => f.as_ref().clone().with_data_type(DataType::Binary),
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        output.schema.metadata().clone(),
    ));
    let batches = output
        .batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueryOutput {
        schema,
        batches,
        truncated: output.truncated,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    /// From `?format=`, else from `Accept`.
    pub(crate) fn choose(param: Option<&str>, headers: &HeaderMap) -> ApiResult<Self> {
        if let Some(p) = param {
            return match p {
                "json" => Ok(Self::Json),
                "csv" => Ok(Self::Csv),
                "arrow" => Ok(Self::Arrow),
                "parquet" => Ok(Self::Parquet),
                other => Err(ApiError::bad_request(
                    "invalid_query",
                    format!("format {other:?} is not one of json, csv, arrow, parquet"),
                )),
            };
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(accept
            .split(',')
            .map(|m| m.split(';').next().unwrap_or("").trim())
            .find_map(|m| match m {
                "application/json" => Some(Self::Json),
                "text/csv" => Some(Self::Csv),
                "application/vnd.apache.arrow.stream" => Some(Self::Arrow),
                "application/vnd.apache.parquet" => Some(Self::Parquet),
                _ => None,
            })
            .unwrap_or(Self::Json))
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Encodes `output` in `format`. A cut answer says so: `"truncated": true`
/// in JSON, the `X-Wattline-Truncated: true` header otherwise.
pub(crate) fn respond(output: &QueryOutput, format: Format) -> ApiResult<Response> {
    let plain = plain_strings(output).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("converting the answer failed: {e}"),
        )
    })?;
    let output = &plain;
    let body = match format {
        Format::Json => json::encode(output).map_err(|e| e.to_string()),
        Format::Csv => csv::encode(output).map_err(|e| e.to_string()),
        Format::Arrow => arrow_ipc::encode(output).map_err(|e| e.to_string()),
        Format::Parquet => parquet::encode(output).map_err(|e| e.to_string()),
    }
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding the answer failed: {e}"),
        )
    })?;
    let mut res = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if output.truncated && format != Format::Json {
        res.headers_mut()
            .insert("x-wattline-truncated", HeaderValue::from_static("true"));
    }
    Ok(res)
}
