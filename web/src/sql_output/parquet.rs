//! `application/vnd.apache.parquet`: one zstd Parquet file.

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use wattline_query::QueryOutput;

pub(super) fn encode(output: &QueryOutput) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), output.schema.clone(), Some(props))?;
    for batch in &output.batches {
        writer.write(batch)?;
    }
    writer.into_inner()
}
