//! Whose rows a query may see.

use wattline_storage::TenantId;

/// The rows visible to a query: one tenant's, or (for admin keys) all.
/// Every table provider applies it itself, so no SQL can get around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    tenant: Option<TenantId>,
}

impl Scope {
    /// Everything (admin keys).
    pub fn all() -> Self {
        Self { tenant: None }
    }

    pub fn tenant(tenant: TenantId) -> Self {
        Self {
            tenant: Some(tenant),
        }
    }

    /// The tenant the rows are restricted to, if any.
    pub fn restricted_to(&self) -> Option<&str> {
        self.tenant.as_ref().map(|t| t.as_str())
    }

    pub fn sees(&self, tenant: &str) -> bool {
        self.restricted_to().is_none_or(|t| t == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_scope_sees_only_its_tenant_and_all_sees_everyone() {
        let a = Scope::tenant(TenantId::parse("a").unwrap());
        assert_eq!(a.restricted_to(), Some("a"));
        assert!(a.sees("a"));
        assert!(!a.sees("b") && !a.sees("") && !a.sees("A"));
        let all = Scope::all();
        assert_eq!(all.restricted_to(), None);
        assert!(all.sees("a") && all.sees("b"));
    }
}
