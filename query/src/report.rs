//! Analytics reports of one building: content from the rollups, a
//! forecast, and the file formats (JSON, CSV, PDF). Rendering is blocking
//! CPU work; the daemon runs it on its report workers, never on a request.
//!
//! - `content`: what the report says.
//! - `forecast`: the next days' totals, checked against a baseline.
//! - `formats`: JSON and CSV, and the PDF through `pdf`.

mod content;
mod forecast;
mod formats;
mod pdf;

pub use content::{CatalogFacts, Report, build};
pub use formats::{ReportError, render};
