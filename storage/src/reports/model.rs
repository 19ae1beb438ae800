//! A report request, the job made of it and where the job stands.

use serde::{Deserialize, Serialize};

use crate::ids::{BuildingId, TenantId};

/// What a report is rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Pdf,
    Csv,
    Json,
}

impl ReportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pdf" => Some(Self::Pdf),
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
        }
    }
}

/// A validated request: the building of the tenant, the period
/// `[start_ms, end_ms)`, the format and how many days to forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub tenant_id: TenantId,
    pub building_id: BuildingId,
    pub start_ms: i64,
    pub end_ms: i64,
    pub format: ReportFormat,
    pub forecast_days: u32,
}

impl ReportRequest {
    /// Identical requests have the same key (the cache of shared jobs).
    pub(crate) fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}/{}",
            self.tenant_id,
            self.building_id,
            self.start_ms,
            self.end_ms,
            self.format.extension(),
            self.forecast_days
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// One report job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportJob {
    pub id: String,
    pub request: ReportRequest,
    pub status: JobStatus,
    /// Why it failed, in words a person can act on.
    pub error: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Times a worker took it (more than one: the daemon stopped while it
    /// ran).
    pub runs: u32,
}
