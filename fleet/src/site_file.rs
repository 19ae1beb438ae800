//! A site's data file in a fleet table, and what its name tells: the
//! unit it holds (`<key>--…`) and, for a compacted month that retention
//! trimmed, the first day it holds (`<month>--from-<day>-…`). The sweep
//! reads those from the log's file list without opening a file.

use crate::error::Result;

/// A data file of one site in the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SiteFile {
    pub site: String,
    pub month: String,
    /// The unit it holds (`YYYY-MM-DD`), or the month (`YYYY-MM`) when
    /// compaction merged a month's days into it.
    pub key: String,
    pub path: String,
    pub size: i64,
}

impl SiteFile {
    /// The first UTC day (days since the epoch) the file may hold rows
    /// of: a day file's day; a compacted month's first day, or where a
    /// retention trim made it start (`<month>--from-<day>-…`).
    pub fn first_day(&self) -> Result<i64> {
        let name = self.path.rsplit('/').next().unwrap_or_default();
        match name.split_once("--from-") {
            Some((_, rest)) => crate::datasets::parse_day(rest.get(..10).unwrap_or(rest)),
            None if self.key.len() == 10 => crate::datasets::parse_day(&self.key),
            None => crate::datasets::parse_day(&format!("{}-01", self.month)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trimmed_months_file_starts_where_its_name_says() -> Result<()> {
        let file = |path: &str| SiteFile {
            site: "a".into(),
            month: "2020-01".into(),
            key: "2020-01".into(),
            path: format!("site=a/month=2020-01/{path}"),
            size: 1,
        };
        let day = crate::datasets::parse_day;
        let compacted = file("2020-01--compacted-17a.zstd.parquet");
        assert_eq!(compacted.first_day()?, day("2020-01-01")?);
        let trimmed = file("2020-01--from-2020-01-15-17a.zstd.parquet");
        assert_eq!(trimmed.first_day()?, day("2020-01-15")?);
        let day_file = SiteFile {
            key: "2020-01-09".into(),
            ..file("2020-01-09--00000000000000000007-17a.zstd.parquet")
        };
        assert_eq!(day_file.first_day()?, day("2020-01-09")?);
        assert!(file("2020-01--from-garbage").first_day().is_err());
        Ok(())
    }
}
