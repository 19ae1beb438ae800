//! The PostgreSQL wire protocol in front of wattline's query engine, for
//! the tools people already have: psql, Grafana's PostgreSQL data source,
//! DBeaver and other JDBC/ODBC clients, drivers in any language.
//!
//! - [`auth`]: the password is an API key; its tenant scopes the session.
//! - [`handler`] and [`extended`]: the simple and extended query
//!   protocols over the engine, with the same guards and limits as
//!   `POST /api/v1/sql`.
//! - [`statements`]: session housekeeping (`SET`, `BEGIN`, `SHOW`)
//!   answered here, everything else sent to the engine.
//! - [`encode`] and [`params`]: Arrow values to and from PostgreSQL's.
//! - [`gate`]: in front of it all, TLS and the limits on what a client
//!   may make the server hold (message sizes, login time).
//!
//! The protocol itself (framing, start-up, TLS negotiation, portals,
//! cancel requests) is the `pgwire` crate's.

mod auth;
mod encode;
mod errors;
mod extended;
mod gate;
mod handler;
mod params;
mod statements;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wattline_query::QueryEngine;
use wattline_storage::Catalog;

/// The `[pgwire]` settings.
#[derive(Debug, Clone)]
pub struct PgConfig {
    pub listen: SocketAddr,
    /// Open connections at most; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Certificate chain and private key (PEM). With them, connections
    /// without TLS are refused before a key is sent.
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot listen on {addr} (pgwire.listen): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("pgwire TLS: {0}")]
    Tls(String),
}

/// A bound listener, ready to serve.
pub struct PgServer {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
}

impl PgServer {
    pub async fn bind(
        config: &PgConfig,
        engine: Arc<QueryEngine>,
        catalog: Arc<Catalog>,
    ) -> Result<Self, PgError> {
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| PgError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let manager = Arc::new(ConnectionManager::new());
        let queries = Arc::new(handler::Queries {
            engine,
            catalog: catalog.clone(),
        });
        let handlers = Arc::new(Handlers {
            login: Arc::new(auth::KeyLogin::new(catalog, manager.clone())),
            extended: Arc::new(extended::Extended::new(queries.clone())),
            queries,
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
        });
        Ok(Self {
            listener,
            handlers,
            tls,
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` completes; then open connections are closed.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        // Connections over the limit are told why, a bounded number at once.
        let refusals = Arc::new(Semaphore::new(self.connections.available_permits().max(1)));
        tokio::pin!(stop);
        loop {
            let (socket, peer) = tokio::select! {
                () = &mut stop => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(error = %e, "pgwire accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            let (handlers, tls) = (self.handlers.clone(), self.tls.clone());
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                metrics::counter!("wattline_pgwire_connections_refused_total").increment(1);
                tracing::warn!(%peer, "pgwire connection refused: pgwire.max_connections reached");
                if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                    tasks.spawn(async move {
                        gate::serve(socket, tls, handlers, gate::Admission::TooMany).await;
                        drop(refusal);
                    });
                }
                continue;
            };
            tasks.spawn(async move {
                let _open = OpenConnection::new(permit);
                gate::serve(socket, tls, handlers, gate::Admission::Admitted).await;
            });
        }
        tasks.shutdown().await;
    }
}

/// An open connection: its slot and its count in the gauge, both given
/// back however the connection ends.
struct OpenConnection {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!("wattline_pgwire_connections").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("wattline_pgwire_connections").decrement(1.0);
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, PgError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PgError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(PgError::Tls(format!(
            "{}: no certificate in the file",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| PgError::Tls(format!("{}: {e}", files.key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| PgError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct Handlers {
    login: Arc<auth::KeyLogin>,
    queries: Arc<handler::Queries>,
    extended: Arc<extended::Extended>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.extended.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.login.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}
