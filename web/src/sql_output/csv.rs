//! `text/csv`: a header line, then one line a row.

use wattline_query::QueryOutput;

pub(super) fn encode(output: &QueryOutput) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.3fZ".to_string())
        .build(Vec::new());
    if output.batches.is_empty() {
        let empty = arrow::array::RecordBatch::new_empty(output.schema.clone());
        writer.write(&empty)?;
    }
    for batch in &output.batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner())
}
