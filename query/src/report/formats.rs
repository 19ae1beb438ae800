//! A report as a file: JSON (everything), CSV
//! (`day,kwh,kind,peak_kw,cost,coverage`, actual and forecast rows; the
//! last three empty where unknown) or PDF.

use wattline_storage::ReportFormat;

use super::content::Report;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("building {0} no longer exists")]
    BuildingGone(String),
    #[error("writing the {0} file failed: {1}")]
    Encode(&'static str, String),
}

/// The report in `format`.
pub fn render(format: ReportFormat, report: &Report) -> Result<Vec<u8>, ReportError> {
    match format {
        ReportFormat::Json => serde_json::to_vec_pretty(report)
            .map_err(|e| ReportError::Encode("JSON", e.to_string())),
        ReportFormat::Csv => csv(report).map_err(|e| ReportError::Encode("CSV", e.to_string())),
        ReportFormat::Pdf => super::pdf::render(report).map_err(|e| ReportError::Encode("PDF", e)),
    }
}

fn csv(report: &Report) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["day", "kwh", "kind", "peak_kw", "cost", "coverage"])?;
    let text = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for d in &report.days {
        w.write_record([
            d.day.as_str(),
            &d.kwh.to_string(),
            "actual",
            &text(d.peak_kw),
            &text(d.cost),
            &text(d.coverage),
        ])?;
    }
    for d in &report.forecast {
        w.write_record([d.day.as_str(), &d.kwh.to_string(), "forecast", "", "", ""])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}
