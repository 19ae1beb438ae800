//! Report jobs: requests, their state and their result files, durable in
//! `<data-dir>/reports.redb` and `<data-dir>/reports/`.
//!
//! A request is answered at once with a job; workers apart from the
//! request path take queued jobs, render them and store the result here.
//! Jobs survive a restart: one queued, or running when the daemon
//! stopped, is queued again and completes. Identical requests within the
//! cache period share one job. Rendering is the query crate's; this
//! module only keeps jobs and bytes.
//!
//! - [`model`]: the request, the job and its status.
//! - [`db`]: the job store and its queue.

mod db;
mod model;
#[cfg(test)]
mod tests;

pub use db::ReportStore;
pub use model::{JobStatus, ReportFormat, ReportJob, ReportRequest};
