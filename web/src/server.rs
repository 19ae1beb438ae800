//! The accept loop: every connection served by hyper with the limits
//! `axum::serve` does not set.
//!
//! - At most `server.max_connections` connections are open; past that the
//!   loop stops accepting (new clients wait in the listen backlog) instead
//!   of running out of file descriptors.
//! - A client must send its request headers within `server.request_timeout`
//!   (a client dripping header lines is cut), and they must fit in
//!   [`MAX_HEADER_BYTES`] (larger: 431).
//! - A connection on which a read or a write makes no progress for
//!   `server.request_timeout` past the longest a request may take (its own
//!   timeout, or `query.timeout` on query routes) is closed: a client that
//!   stops reading its answer does not hold its slot (and the answer's
//!   memory) forever, and the request's own 408 always comes first.
//! - One client address holds at most a quarter of the connections.
//! - On shutdown the listener closes, idle connections close, and requests
//!   in flight finish.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wattline_storage::Recover;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;
use tower_service::Service;

use crate::AppState;
use crate::routes;

/// The most bytes of request line and headers a request may have.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves the API on `listener` until `shutdown` resolves, then finishes
/// the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes::router(state.clone());
    let header_timeout = state.config.request_timeout;
    let idle_timeout =
        header_timeout.max(state.config.query_timeout) + state.config.request_timeout;
    let slots = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let per_address = (state.config.max_connections / 4).max(1);
    let open: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(address_slot) = AddressSlot::take(&open, addr.ip(), per_address) else {
            // Closed at once: this address holds its share already.
            metrics::counter!("wattline_http_connections_refused_total").increment(1);
            continue;
        };
        metrics::gauge!("wattline_http_connections").increment(1.0);
        let (router, stop) = (router.clone(), stop_rx.clone());
        connections.spawn(async move {
            serve_connection(stream, addr, router, header_timeout, idle_timeout, stop).await;
            drop((permit, address_slot));
            metrics::gauge!("wattline_http_connections").decrement(1.0);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    router: Router,
    header_timeout: Duration,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        let mut router = router.clone();
        async move { router.call(req.map(axum::body::Body::new)).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let mut stream = TimeoutStream::new(stream);
    stream.set_read_timeout(Some(idle_timeout));
    stream.set_write_timeout(Some(idle_timeout));
    let conn = builder.serve_connection(TokioIo::new(Box::pin(stream)), service);
    let mut conn = std::pin::pin!(conn);
    let finished = tokio::select! {
        result = conn.as_mut() => Some(result),
        _ = stop.wait_for(|stop| *stop) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %addr, "connection ended with an error");
    }
}

/// One connection of a client address, counted while it is open.
struct AddressSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    /// Counts a connection of `ip`, unless it has `cap` open already.
    fn take(open: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, cap: usize) -> Option<Self> {
        let mut map = open.locked();
        let count = map.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Self {
            open: open.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.open.locked();
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
