//! Re-costing after a tariff change: a tariff created or deleted after
//! the readings changes the cost of days already rolled up.
//!
//! The rollups remember, per tenant, the tariffs their costs follow, in
//! `chunks/rollups/costed_tariffs.json` (written after a re-cost, so a
//! crash or a failed re-cost leaves the old record and the re-cost is
//! done again after a restart). A step that sees the catalog's tariffs
//! differ re-costs the days of that tenant's buildings only, from the
//! quarter files (no raw data): the figures are computed with no lock
//! held, day by day in date order with a few UTC days of quarter files in
//! memory, then applied and the months re-derived.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::NaiveDate;

use super::calendar::{day_start, next_day};
use super::demand::{Pricing, QuarterFiles};
use super::rollups::Rollups;
use crate::chunk::DAY_MS;
use crate::error::{Error, Result};
use crate::sync::RecoverRw;
use crate::tree::sync_dir;

/// Tenant -> its tariffs as JSON, as the costs follow them.
type Costed = BTreeMap<String, String>;

impl Rollups {
    fn costed_path(&self) -> PathBuf {
        self.data_dir
            .join("chunks")
            .join("rollups")
            .join("costed_tariffs.json")
    }

    /// What the costs follow; nothing when the file is missing or
    /// unreadable (then every tenant with tariffs is re-costed).
    fn costed(&self) -> Costed {
        std::fs::read(self.costed_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write_costed(&self, costed: &Costed) -> Result<()> {
        let path = self.costed_path();
        let dir = path.parent().expect("a file in a folder");
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let tmp = dir.join(".tmp-costed_tariffs.json");
        let json = serde_json::to_vec(costed)
            .map_err(|e| Error::InvalidArgument(format!("encoding tariffs: {e}")))?;
        let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
        std::fs::write(&tmp, json).map_err(|e| io("writing", e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("fsync of", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("renaming", e))?;
        sync_dir(dir)
    }

    /// Re-costs the tenants whose tariffs differ from those their costs
    /// follow. Cheap when nothing changed (a version compare). Blocking;
    /// call with the step lock held.
    pub(super) fn recost_if_tariffs_changed(&self) -> Result<()> {
        let version = self.catalog.tariff_version();
        if self.tariffs_seen.load(Ordering::Acquire) == version {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (current, buildings_of): (Costed, HashMap<String, Vec<Arc<str>>>) = {
            let view = self.catalog.view();
            let mut current = Costed::new();
            let mut buildings_of: HashMap<String, Vec<Arc<str>>> = HashMap::new();
            for t in view.tenants() {
                let tariffs: Vec<_> = view.tariffs_of(t.id.as_str()).collect();
                if !tariffs.is_empty() {
                    let json = serde_json::to_string(&tariffs)
                        .map_err(|e| Error::InvalidArgument(format!("encoding tariffs: {e}")))?;
                    current.insert(t.id.to_string(), json);
                }
                buildings_of.insert(
                    t.id.to_string(),
                    view.buildings_of(t.id.as_str())
                        .map(|b| Arc::from(b.id.as_str()))
                        .collect(),
                );
            }
            (current, buildings_of)
        };
        let costed = self.costed();
        let changed: BTreeSet<&String> = current
            .keys()
            .chain(costed.keys())
            .filter(|t| current.get(*t) != costed.get(*t))
            .collect();
        let buildings: Vec<Arc<str>> = changed
            .iter()
            .flat_map(|t| buildings_of.get(*t).into_iter().flatten().cloned())
            .collect();
        if !buildings.is_empty() {
            self.recost(&buildings)?;
        }
        if !changed.is_empty() {
            self.write_costed(&current)?;
        }
        self.tariffs_seen.store(version, Ordering::Release);
        if !changed.is_empty() {
            tracing::info!(
                tenants = changed.len(),
                buildings = buildings.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "re-costed the rollups after a tariff change"
            );
        }
        Ok(())
    }

    /// Recomputes the peak and cost of every day of `buildings`, then
    /// their months and files.
    fn recost(&self, buildings: &[Arc<str>]) -> Result<()> {
        let pricing = Pricing::of(&self.catalog.view(), buildings.iter());
        // (day, building), in date order, read under a brief lock.
        let mut days: Vec<(NaiveDate, Arc<str>)> = {
            let map = self.buildings.read_locked();
            buildings
                .iter()
                .filter_map(|b| Some((b, map.get(b)?)))
                .flat_map(|(b, r)| r.daily.keys().map(move |d| (*d, b.clone())))
                .collect()
        };
        days.sort();
        let mut quarters = QuarterFiles::new(self);
        let mut figures = Vec::with_capacity(days.len());
        for (d, b) in days {
            let Some(p) = pricing.get(&b) else { continue };
            let span = day_start(p.tz, d)..day_start(p.tz, next_day(d));
            // Local days in date order start at most a day apart in UTC.
            quarters.forget_before(span.start.div_euclid(DAY_MS) - 2);
            let (peak, cost) = quarters.day(&b, span, p.tz, p.tariff(d))?;
            figures.push((b, d, peak, cost));
        }
        let mut touched: HashMap<Arc<str>, BTreeSet<NaiveDate>> = HashMap::new();
        {
            let mut map = self.buildings.write_locked();
            for (b, d, peak, cost) in figures {
                if let Some(a) = map.get_mut(&b).and_then(|r| r.daily.get_mut(&d)) {
                    (a.peak_kw, a.cost) = (peak, cost);
                    touched.entry(b).or_default().insert(d);
                }
            }
        }
        self.rederive_with(&touched, false)
    }
}
