//! Who is calling: the `Authorization: Bearer <key>` header resolved against
//! the in-memory catalog (a hash and a map lookup, no disk), and the checks
//! every route makes with it.
//!
//! Order of checks, everywhere: unknown caller -> 401, role not allowed on
//! the route -> 403, object missing *or* owned by another tenant -> 404.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use wattline_storage::{ApiKey, Building, Role, Sensor, hash_secret};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The authenticated key behind a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub key: ApiKey,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> ApiResult<Self> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <key> header"))?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("Authorization header must be \"Bearer <key>\"")
            })?;
        let hash = hash_secret(secret);
        let key = state
            .catalog
            .view()
            .key_by_hash(&hash)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
        Ok(Caller { key })
    }
}

impl Caller {
    pub(crate) fn is_admin(&self) -> bool {
        self.key.role == Role::Admin
    }

    pub(crate) fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an admin key"))
        }
    }

    /// Admin or tenant keys: the roles that read and manage catalog objects.
    pub(crate) fn require_manager(&self) -> ApiResult<()> {
        match self.key.role {
            Role::Admin | Role::Tenant => Ok(()),
            Role::Ingest => Err(ApiError::forbidden("an ingest key may only write readings")),
        }
    }

    /// Whether the caller may see objects of tenant `tenant`.
    pub(crate) fn sees_tenant(&self, tenant: &str) -> bool {
        self.is_admin()
            || self
                .key
                .tenant_id
                .as_ref()
                .is_some_and(|t| t.as_str() == tenant)
    }

    /// Checks that the caller manages `tenant`; another tenant's id is 404.
    pub(crate) fn check_tenant(&self, tenant: &str) -> ApiResult<()> {
        self.require_manager()?;
        if self.sees_tenant(tenant) {
            Ok(())
        } else {
            Err(ApiError::not_found("tenant", tenant))
        }
    }

    /// The building if the caller manages it; 404 otherwise.
    pub(crate) fn visible_building(&self, b: Option<&Building>, id: &str) -> ApiResult<Building> {
        self.require_manager()?;
        b.filter(|b| self.sees_tenant(b.tenant_id.as_str()))
            .cloned()
            .ok_or_else(|| ApiError::not_found("building", id))
    }

    /// The sensor if the caller manages it; 404 otherwise.
    pub(crate) fn visible_sensor(&self, s: Option<&Sensor>, id: &str) -> ApiResult<Sensor> {
        self.require_manager()?;
        s.filter(|s| self.sees_tenant(s.tenant_id.as_str()))
            .cloned()
            .ok_or_else(|| ApiError::not_found("sensor", id))
    }
}
