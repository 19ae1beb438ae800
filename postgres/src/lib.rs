//! The PostgreSQL wire protocol in front of wattline's query engine, for
//! the tools people already have: psql, Grafana's PostgreSQL data source,
//! DBeaver and other JDBC/ODBC clients, drivers in any language.
//!
//! - [`auth`]: the password is an API key; its tenant scopes the session.
//! - [`handler`]: simple and extended query protocols over the engine,
//!   with the same guards and limits as `POST /api/v1/sql`.
//! - [`statements`]: session housekeeping (`SET`, `BEGIN`, `SHOW`)
//!   answered here, everything else sent to the engine.
//! - [`encode`] and [`params`]: Arrow values to and from PostgreSQL's.
//!
//! The protocol itself (framing, start-up, TLS negotiation, portals,
//! cancel requests) is the `pgwire` crate's.

mod auth;
mod encode;
mod errors;
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
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
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
        let queries = Arc::new(handler::Queries::new(engine));
        let handlers = Arc::new(Handlers {
            login: Arc::new(auth::KeyLogin::new(catalog, manager.clone(), tls.is_some())),
            extended: Arc::new(handler::Extended::new(queries.clone())),
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
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                metrics::counter!("wattline_pgwire_connections_refused_total").increment(1);
                tracing::warn!(%peer, "pgwire connection refused: pgwire.max_connections reached");
                tasks.spawn(refuse(socket));
                continue;
            };
            let _ = socket.set_nodelay(true);
            let handlers = self.handlers.clone();
            let tls = self.tls.clone();
            tasks.spawn(async move {
                let gauge = metrics::gauge!("wattline_pgwire_connections");
                gauge.increment(1.0);
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "pgwire connection ended");
                }
                gauge.decrement(1.0);
                drop(permit);
            });
        }
        tasks.shutdown().await;
    }
}

/// Tells a client over the connection limit why, the way PostgreSQL does.
async fn refuse(mut socket: TcpStream) {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (
            b'M',
            "sorry, too many clients already (pgwire.max_connections)",
        ),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    message.extend_from_slice(&body);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = socket.write_all(&message).await;
        let _ = socket.shutdown().await;
    })
    .await;
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
    extended: Arc<handler::Extended>,
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
