//! `wattline fleet maintain`: table maintenance, run by one operator for
//! the whole fleet (never by every appliance, whose commits would then
//! race each other's checkpoints).
//!
//! Per table:
//! - compaction: in tables published by day, each site's files of a
//!   month closed for [`CLOSED_FOR`] are merged into one (Remove and Add
//!   with `dataChange: false`: readers of changes see none). A commit is
//!   abandoned if the site published into that month meanwhile; an
//!   appliance that later republishes a day of a compacted month replaces
//!   the month's file with its days (see `publisher`);
//! - a checkpoint of the log (readers then skip replaying every commit);
//! - a full vacuum: files no commit refers to any more, older than the
//!   retention period, are deleted. That covers files removed by
//!   republishing, compaction and retention, and uploads a crash left
//!   without a commit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use deltalake_core::kernel::Action;
use deltalake_core::protocol::DeltaOperation;

use crate::config::FleetConfig;
use crate::datasets::Dataset;
use crate::error::{Error, Result};
use crate::table::FleetTable;

/// How long after its end a month is compacted: late data for it is
/// rare by then, and republishing a day of it rewrites the whole month.
pub const CLOSED_FOR: chrono::Duration = chrono::Duration::days(7);

/// What maintenance did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintained {
    pub table: &'static str,
    pub version: i64,
    /// Site months whose files were merged into one.
    pub compacted: usize,
    pub files_deleted: usize,
}

/// Checkpoints and vacuums every table of the fleet. `retention` keeps
/// unreferenced files that long (a reader may still be reading a removed
/// file; Delta's default is 7 days).
pub async fn maintain(config: &FleetConfig, retention: Duration) -> Result<Vec<Maintained>> {
    config.validate()?;
    let bucket = crate::s3::Bucket::s3(config)?;
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| Error::Config(format!("retention: {e}")))?;
    let mut out = Vec::new();
    for dataset in Dataset::ALL {
        let mut table = FleetTable::open(&bucket, config, dataset).await?;
        let compacted = if dataset.by_day() {
            compact(&mut table, chrono::Utc::now().date_naive()).await?
        } else {
            0
        };
        let version = table.version().unwrap_or(0);
        let delta = table.into_delta();
        deltalake_core::checkpoints::create_checkpoint(&delta, None).await?;
        let (_, metrics) = delta
            .vacuum()
            .with_mode(deltalake_core::operations::vacuum::VacuumMode::Full)
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await?;
        out.push(Maintained {
            table: dataset.name(),
            version,
            compacted,
            files_deleted: metrics.files_deleted.len(),
        });
    }
    Ok(out)
}

/// Merges each site's files of every month closed before `today` into one.
async fn compact(table: &mut FleetTable, today: NaiveDate) -> Result<usize> {
    let mut months: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
    for f in table.files(None)? {
        months
            .entry((f.site.clone(), f.month.clone()))
            .or_default()
            .push(f);
    }
    let mut done = 0;
    for ((site, month), files) in months {
        if files.len() < 2 || !closed(&month, today) {
            continue;
        }
        let guard = table.guard(&site, BTreeSet::from([month.clone()]))?;
        let add = table.merge(&site, &month, &files).await?;
        let mut actions: Vec<Action> = files
            .iter()
            .map(|f| Action::Remove(table.remove(f, false)))
            .collect();
        actions.push(Action::Add(add));
        let operation = DeltaOperation::Optimize {
            predicate: Some(format!("site = '{site}' AND month = '{month}'")),
            target_size: 0,
        };
        match table.commit(actions, None, operation, Some(&guard)).await {
            Ok(_) => done += 1,
            // The site published into the month meanwhile: next time.
            Err(Error::Stale { .. }) => {
                tracing::info!(
                    table = table.dataset.name(),
                    site,
                    month,
                    "compaction skipped: the month changed"
                )
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Whether month `YYYY-MM` ended at least [`CLOSED_FOR`] before `today`.
fn closed(month: &str, today: NaiveDate) -> bool {
    let Ok(first) = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d") else {
        return false;
    };
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.is_some_and(|end| end + CLOSED_FOR <= today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_compacted_a_week_after_it_ends() {
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(!closed("2026-11", day("2026-12-07")));
        assert!(closed("2026-11", day("2026-12-08")));
        assert!(closed("2026-12", day("2027-01-08")));
        assert!(!closed("2026-12", day("2026-12-31")));
        assert!(!closed("not-a-month", day("2030-01-01")));
    }
}
