//! Start-up: the password is a wattline API key.
//!
//! The client is asked for a cleartext password (so use TLS, which the
//! gate requires once configured, or a loopback or otherwise private
//! listener), which is hashed and looked up
//! in the in-memory catalog exactly as an HTTP `Bearer` key is. The user
//! and database names are the client's to choose and decide nothing. The
//! key's tenant becomes the session's [`Session`]: every statement runs in
//! that scope, as `POST /api/v1/sql` does. Ingest keys may not query; an
//! unknown or revoked key gets PostgreSQL's "password authentication
//! failed". The key is looked up again before every statement: a revoked
//! key ends its open sessions.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::ConnectionManager;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::auth::{protocol_negotiation, save_startup_parameters_to_metadata};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use wattline_query::Scope;
use wattline_storage::{Catalog, Role, hash_secret};

/// Who a connection is, once the key checked out.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub scope: Scope,
    /// The key's hash, looked up again before each statement.
    key_hash: String,
}

/// The session of `client`, which passed start-up, if its key is still
/// valid (a revoked key ends the session at its next statement).
pub(crate) fn session_of<C: ClientInfo + ?Sized>(
    client: &C,
    catalog: &Catalog,
) -> PgWireResult<Session> {
    let session = client
        .session_extensions()
        .get::<Session>()
        .map(|s| s.as_ref().clone())
        .ok_or_else(|| PgWireError::ApiError("the connection has not authenticated".into()))?;
    if catalog.view().key_by_hash(&session.key_hash).is_none() {
        return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "FATAL".into(),
            "28000".into(),
            "the key of this session was revoked".into(),
        ))));
    }
    Ok(session)
}

/// Checks a presented key against the catalog.
struct Keys {
    catalog: Arc<Catalog>,
}

impl Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

#[async_trait]
impl AuthSource<Session> for Keys {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Keys are stored hashed: only `verify_password` can check one.
        Err(PgWireError::ApiError(
            "keys are checked by hash only".into(),
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Session>> {
        let refused = || {
            metrics::counter!("wattline_pgwire_logins_total", "result" => "refused").increment(1);
            // PostgreSQL's own words, which tools and people search for.
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!(
                    "password authentication failed for user \"{}\" (the password is a wattline API key)",
                    login.user().unwrap_or_default()
                ),
            )))
        };
        let secret = std::str::from_utf8(presented).map_err(|_| refused())?;
        let key_hash = hash_secret(secret);
        let key = self
            .catalog
            .view()
            .key_by_hash(&key_hash)
            .cloned()
            .ok_or_else(refused)?;
        let scope = match (key.role, key.tenant_id) {
            (Role::Admin, _) => Scope::all(),
            (Role::Tenant, Some(tenant)) => Scope::tenant(tenant),
            (Role::Ingest, _) | (Role::Tenant, None) => {
                metrics::counter!("wattline_pgwire_logins_total", "result" => "refused")
                    .increment(1);
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "28000".into(),
                    "this key may not query: use a tenant or admin key".into(),
                ))));
            }
        };
        metrics::counter!("wattline_pgwire_logins_total", "result" => "ok").increment(1);
        Ok(Some(Session { scope, key_hash }))
    }
}

/// The start-up handler: cleartext password, checked as an API key.
pub(crate) struct KeyLogin {
    driver: AuthDriver<DefaultServerParameterProvider, Session>,
    mechanism: CleartextPasswordAuth<Keys>,
}

impl KeyLogin {
    pub(crate) fn new(catalog: Arc<Catalog>, connections: Arc<ConnectionManager>) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = wattline_query::SERVER_VERSION.to_owned();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        parameters.time_zone = "UTC".to_owned();
        Self {
            driver: AuthDriver::new(parameters).with_connection_manager(connections),
            mechanism: CleartextPasswordAuth::new(Arc::new(Keys { catalog })),
        }
    }
}

#[async_trait]
impl StartupHandler for KeyLogin {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.driver
                    .begin_authentication(client, self.mechanism.create())
                    .await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.driver.advance_authentication(client, message).await?
            }
            _ => return Ok(()),
        };
        if let AuthOutcome::Authenticated {
            identity,
            final_message,
        } = outcome
        {
            let session = identity
                .ok_or_else(|| PgWireError::ApiError("a login passed without a session".into()))?;
            client.session_extensions().insert(session);
            self.driver
                .complete_authentication(client, final_message)
                .await?;
        }
        Ok(())
    }
}
