//! Tariffs in the catalog: stored in `meta.redb` with the rest, served
//! from memory. Changing them changes the cost of days already rolled up,
//! so every change bumps [`Catalog::tariff_version`], which the rollups
//! watch to re-cost.

use std::sync::atomic::Ordering;

use super::{Catalog, Put, Records, check_new_id, exists, not_found};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::tariff::Tariff;

pub(super) const TARIFFS: Records = redb::TableDefinition::new("tariffs");

/// Tariffs a tenant may have.
const MAX_PER_TENANT: usize = 1000;

impl Catalog {
    /// Stores a new tariff of an existing tenant (and building of it).
    pub fn create_tariff(&self, tariff: Tariff) -> Result<Tariff> {
        check_new_id("tariff", &tariff.id)?;
        tariff.validate()?;
        let out = self.write(
            |view| {
                if view.tenant(tariff.tenant_id.as_str()).is_none() {
                    return Err(not_found("tenant", &tariff.tenant_id));
                }
                if let Some(b) = &tariff.building_id
                    && view
                        .building(b.as_str())
                        .is_none_or(|b| b.tenant_id != tariff.tenant_id)
                {
                    return Err(not_found("building", b));
                }
                if view.state.tariffs.contains_key(&tariff.key()) {
                    return Err(exists("tariff", &tariff.id));
                }
                let mut own = view.tariffs_of(tariff.tenant_id.as_str()).peekable();
                if let Some(other) = own.peek()
                    && other.currency != tariff.currency
                {
                    return Err(Error::InvalidArgument(format!(
                        "the tenant's tariffs are in {}: all must share one currency",
                        other.currency
                    )));
                }
                if own.count() >= MAX_PER_TENANT {
                    return Err(Error::InvalidArgument(format!(
                        "a tenant has at most {MAX_PER_TENANT} tariffs"
                    )));
                }
                Ok((vec![Put::new(TARIFFS, &tariff.key(), &tariff)], tariff))
            },
            |state, t| {
                state.tariffs.insert(t.key(), t.clone());
            },
        )?;
        self.tariff_version.fetch_add(1, Ordering::Release);
        Ok(out)
    }

    /// Deletes tariff `id` of `tenant`.
    pub fn delete_tariff(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let key = crate::tariff::tariff_key(tenant.as_str(), id);
        self.write(
            |view| {
                if !view.state.tariffs.contains_key(&key) {
                    return Err(not_found("tariff", &id));
                }
                Ok((vec![Put::delete(TARIFFS, &key)], ()))
            },
            |state, ()| {
                state.tariffs.remove(&key);
            },
        )?;
        self.tariff_version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Changes whenever a tariff does.
    pub fn tariff_version(&self) -> u64 {
        self.tariff_version.load(Ordering::Acquire)
    }
}
