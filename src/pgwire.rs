//! The `[pgwire]` section and the PostgreSQL listener's task: see the
//! `wattline-postgres` crate. Off unless `pgwire.listen` is set.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio::sync::watch;
use wattline_postgres::{PgConfig, PgServer, TlsFiles};
use wattline_query::QueryEngine;
use wattline_storage::Catalog;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPgwire {
    listen: Option<String>,
    max_connections: Option<i64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// Validated settings, or `None` when the protocol is off.
pub(crate) fn resolve(raw: RawPgwire) -> Result<Option<PgConfig>> {
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("pgwire.tls_cert and pgwire.tls_key go together: set both or neither"),
    };
    let Some(listen) = raw.listen else {
        if tls.is_some() {
            bail!("pgwire.tls_cert: set pgwire.listen too, or the protocol stays off");
        }
        return Ok(None);
    };
    Ok(Some(PgConfig {
        listen: crate::config::resolve_addr(&listen).context("pgwire.listen")?,
        max_connections: crate::config::count("pgwire.max_connections", raw.max_connections, 64)?,
        tls,
    }))
}

/// Binds the listener (an error stops the start) and serves on a task
/// until `stop` turns true.
pub(crate) async fn start(
    config: &PgConfig,
    engine: Arc<QueryEngine>,
    catalog: Arc<Catalog>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let server = PgServer::bind(config, engine, catalog).await?;
    let addr = server.local_addr()?;
    tracing::info!(
        listen = %addr,
        tls = config.tls.is_some(),
        "PostgreSQL protocol on {addr} (password: an API key)"
    );
    Ok(tokio::spawn(server.run(async move {
        let _ = stop.wait_for(|s| *s).await;
    })))
}
