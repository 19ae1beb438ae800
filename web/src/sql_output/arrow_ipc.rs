//! `application/vnd.apache.arrow.stream`: the Arrow IPC stream format.

use wattline_query::QueryOutput;

pub(super) fn encode(output: &QueryOutput) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &output.schema)?;
    for batch in &output.batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    writer.into_inner()
}
