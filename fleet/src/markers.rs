//! This site's transaction markers in a table's log, followed entry by
//! entry.
//!
//! Two markers matter to a publisher: the last change sequence the site
//! committed (`wattline/site=<site>`) and the data directory that committed
//! it (`wattline/site=<site>/feed`, its change feed's id). delta-rs reads a
//! marker by replaying the log since the last checkpoint; done at every
//! retry of a commit in a herd of sites, that was most of a commit's cost.
//! Here they are read that way once, when a table is opened, and then
//! followed through the log entries each refresh has not seen yet. That is
//! also exact where a look at the whole log would not be needed: whether an
//! attempt whose answer was lost landed after all, and whether another data
//! directory committed for this site in between.

use deltalake_core::DeltaTable;

use crate::error::Result;

/// The markers' application ids of one site.
#[derive(Debug, Clone)]
pub(crate) struct MarkerIds {
    pub sequence: String,
    pub feed: String,
}

impl MarkerIds {
    pub(crate) fn of_site(site: &str) -> Self {
        Self {
            sequence: format!("wattline/site={site}"),
            feed: format!("wattline/site={site}/feed"),
        }
    }
}

/// The markers as of log version `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Markers {
    through: u64,
    /// The last change sequence the site committed.
    pub sequence: Option<u64>,
    /// The feed id of the data directory that committed it.
    pub feed: Option<u64>,
}

impl Markers {
    /// Brings `known` (if any) up to the table's version from the entries
    /// after it; from the whole log when unknown or when an entry is gone
    /// (log cleanup after a checkpoint).
    pub(crate) async fn follow(
        known: Option<Markers>,
        table: &DeltaTable,
        ids: &MarkerIds,
    ) -> Result<Option<Markers>> {
        let Some(version) = table.version() else {
            return Ok(None);
        };
        if let Some(mut m) = known.filter(|m| m.through <= version) {
            let log = table.log_store();
            let mut complete = true;
            for v in m.through + 1..=version {
                match log.read_commit_entry(v).await? {
                    Some(entry) => m.absorb(&entry, ids),
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                m.through = version;
                return Ok(Some(m));
            }
        }
        Ok(Some(Markers {
            through: version,
            sequence: from_whole_log(table, &ids.sequence).await?,
            feed: from_whole_log(table, &ids.feed).await?,
        }))
    }

    /// Takes the markers an entry (newline-delimited actions) sets.
    fn absorb(&mut self, entry: &[u8], ids: &MarkerIds) {
        for line in entry.split(|b| *b == b'\n') {
            // Only transaction actions are parsed (data files' statistics
            // make the other lines long).
            if !line.windows(6).any(|w| w == b"\"txn\":") {
                continue;
            }
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let Some(txn) = action.get("txn") else {
                continue;
            };
            let app = txn.get("appId").and_then(|v| v.as_str());
            let version = txn
                .get("version")
                .and_then(|v| v.as_i64())
                .and_then(|v| u64::try_from(v).ok());
            match app {
                Some(a) if a == ids.sequence => self.sequence = version,
                Some(a) if a == ids.feed => self.feed = version,
                _ => {}
            }
        }
    }
}

/// The version of marker `id` as delta-rs reads it: by replaying the log
/// since the last checkpoint.
async fn from_whole_log(table: &DeltaTable, id: &str) -> Result<Option<u64>> {
    let version = table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), id)
        .await?;
    Ok(version.and_then(|v| u64::try_from(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_sets_the_markers_of_its_site_only() {
        let ids = MarkerIds::of_site("a");
        let mut m = Markers {
            through: 0,
            sequence: Some(3),
            feed: None,
        };
        let entry = concat!(
            r#"{"add":{"path":"site=a/x.parquet","stats":"{\"txn\":1}"}}"#,
            "\n",
            r#"{"txn":{"appId":"wattline/site=ab","version":99}}"#,
            "\n",
            r#"{"txn":{"appId":"wattline/site=a","version":4,"lastUpdated":1}}"#,
            "\n",
            r#"{"txn":{"appId":"wattline/site=a/feed","version":77}}"#,
            "\n",
            r#"{"commitInfo":{"operation":"WRITE"}}"#,
        );
        m.absorb(entry.as_bytes(), &ids);
        assert_eq!((m.sequence, m.feed), (Some(4), Some(77)));
    }
}
