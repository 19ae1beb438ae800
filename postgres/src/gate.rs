//! The gate every connection passes before the protocol library sees a
//! byte: it bounds what a client can make the server hold.
//!
//! pgwire buffers any message whole, up to 1 GiB, in any state, so a
//! client that never logs in could make the server hold gigabytes. The
//! gate speaks the protocol's framing itself and relays the connection to
//! pgwire over an in-process socket pair:
//!
//! - before the first message it answers TLS negotiation itself (TLS ends
//!   here), refuses a plain start-up where TLS is required, and answers a
//!   client over the connection limit with PostgreSQL's 53300;
//! - until the server says ReadyForQuery (the key checked out), the client
//!   may send only password messages of at most [`LOGIN_MESSAGE_BYTES`],
//!   and must finish within [`LOGIN_TIMEOUT`];
//! - after that, no message may exceed [`MAX_MESSAGE_BYTES`] (SQL is
//!   capped far below it; parameters fit).
//!
//! A client breaking a rule is disconnected (and counted in
//! `wattline_pgwire_violations_total`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgwire::tokio::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::Handlers;

/// Time from connecting to the end of the login.
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message before login (a password: a key is 40 bytes).
pub(crate) const LOGIN_MESSAGE_BYTES: usize = 16 * 1024;
/// The largest message of a logged-in client.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// The largest untyped start-up message (PostgreSQL's own limit).
const STARTUP_BYTES: usize = 10_000;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// A client's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the connection may do, decided when it was accepted.
pub(crate) enum Admission {
    Admitted,
    /// Over `pgwire.max_connections`: told so once it says who it is.
    TooMany,
}

/// Serves one client connection to its end.
pub(crate) async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<Handlers>,
    admission: Admission,
) {
    // One deadline for the whole login, from the connection on.
    let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    keep_alive(&tcp);
    let login = tokio::time::timeout_at(deadline, open(tcp, tls, admission)).await;
    let (client, startup) = match login {
        Ok(Ok(Some(opened))) => opened,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "pgwire connection refused at start-up");
            return;
        }
        Err(_) => return violation("no start-up message within the login timeout"),
    };
    let (inner, mut outer) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return tracing::warn!(error = %e, "pgwire: creating a socket pair"),
    };
    let protocol = tokio::spawn(pgwire::tokio::process_socket_unix(inner, handlers));
    if outer.write_all(&startup).await.is_ok() {
        relay(client, outer, deadline).await;
    }
    protocol.abort();
}

/// TCP keepalive, as PostgreSQL sets it: a client gone without closing
/// (power cut, cable pulled) frees its slot within minutes.
fn keep_alive(tcp: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "pgwire: TCP keepalive");
    }
}

/// Reads the start-up sequence: TLS negotiation, then the start-up or
/// cancel message, returned whole for pgwire. `None`: answered here.
async fn open(
    mut tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    admission: Admission,
) -> std::io::Result<Option<(Box<dyn Io>, Vec<u8>)>> {
    let mut message = read_untyped(&mut tcp).await?;
    if code_of(&message) == GSSENC_REQUEST {
        tcp.write_all(b"N").await?;
        message = read_untyped(&mut tcp).await?;
    }
    if code_of(&message) == SSL_REQUEST {
        if let Some(acceptor) = &tls {
            tcp.write_all(b"S").await?;
            let mut secure = acceptor.accept(tcp).await?;
            let message = read_untyped(&mut secure).await?;
            return admit(Box::new(secure), message, true, true, admission).await;
        }
        tcp.write_all(b"N").await?;
        message = read_untyped(&mut tcp).await?;
    }
    admit(Box::new(tcp), message, false, tls.is_some(), admission).await
}

/// The start-up or cancel message `message`, let through or answered.
async fn admit(
    mut client: Box<dyn Io>,
    message: Vec<u8>,
    secure: bool,
    tls_required: bool,
    admission: Admission,
) -> std::io::Result<Option<(Box<dyn Io>, Vec<u8>)>> {
    let code = code_of(&message);
    if code == CANCEL_REQUEST {
        return Ok(Some((client, message)));
    }
    if code >> 16 != 3 {
        violation("an unknown start-up message");
        return Ok(None);
    }
    let refusal = match admission {
        Admission::TooMany => Some((
            "53300",
            "sorry, too many clients already (pgwire.max_connections)",
        )),
        Admission::Admitted if tls_required && !secure => Some((
            "28000",
            "this server takes connections over TLS only (sslmode=require)",
        )),
        Admission::Admitted => None,
    };
    match refusal {
        Some((sqlstate, text)) => {
            client.write_all(&fatal(sqlstate, text)).await?;
            let _ = client.shutdown().await;
            Ok(None)
        }
        None => Ok(Some((client, message))),
    }
}

fn code_of(message: &[u8]) -> u32 {
    u32::from_be_bytes([message[4], message[5], message[6], message[7]])
}

/// One untyped message (length, then code): start-up, SSL or cancel.
async fn read_untyped(client: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    let len = u32::from_be_bytes(head) as usize;
    if !(8..=STARTUP_BYTES).contains(&len) {
        violation("a start-up message of an impossible length");
        return Err(std::io::Error::other("bad start-up length"));
    }
    let mut message = vec![0u8; len];
    message[..4].copy_from_slice(&head);
    client.read_exact(&mut message[4..]).await?;
    Ok(message)
}

/// How the client-to-server half of a relay ended.
enum Upstream {
    /// The client stopped sending (and the server was told).
    ClientDone,
    /// The client broke a rule: it is disconnected at once.
    Violation,
    /// The server closed its side (a FATAL error ends a session).
    ServerGone,
}

/// How long a closing relay waits for the server's last answer and for
/// the client to hang up on it.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

/// Copies both ways, checking the client's messages.
async fn relay(client: Box<dyn Io>, server: UnixStream, deadline: tokio::time::Instant) {
    let logged_in = Arc::new(AtomicBool::new(false));
    let (mut client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = server.into_split();
    let downstream = to_client(server_read, client_write, logged_in.clone());
    tokio::pin!(downstream);
    let login_deadline = async {
        tokio::time::sleep_until(deadline).await;
        if !logged_in.load(Ordering::Acquire) {
            violation("no login within the login timeout");
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::pin!(login_deadline);
    // A client that stops sending (a cancel request, a half-close) still
    // gets its answers: the relay ends when the server side does, or at
    // once when the client broke a rule.
    let ended = tokio::select! {
        end = from_client(&mut client_read, server_write, logged_in.clone()) => Some(end),
        () = &mut downstream => None,
        () = &mut login_deadline => return,
    };
    match ended {
        None => {}
        Some(Upstream::Violation) => return,
        Some(Upstream::ClientDone) => {
            return tokio::select! {
                () = downstream => {}
                () = login_deadline => {}
            };
        }
        // The server's last words (a FATAL error) may still be on their
        // way: they are passed on before the client is let go.
        Some(Upstream::ServerGone) => {
            let _ = tokio::time::timeout(CLOSING_GRACE, &mut downstream).await;
        }
    }
    // Closing a socket with unread input resets the connection, and the
    // client may lose the answer it has not read yet: read what it still
    // sends until it hangs up, for a moment.
    let mut sink = tokio::io::sink();
    let drain = tokio::io::copy(&mut client_read, &mut sink);
    let _ = tokio::time::timeout(CLOSING_GRACE, drain).await;
}

/// Client to server, message by message, within the limits.
async fn from_client(
    client: &mut (impl AsyncRead + Unpin),
    mut server: impl AsyncWrite + Unpin,
    logged_in: Arc<AtomicBool>,
) -> Upstream {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if client.read_exact(&mut head).await.is_err() {
            let _ = server.shutdown().await;
            return Upstream::ClientDone;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let before_login = !logged_in.load(Ordering::Acquire);
        let (allowed, limit) = if before_login {
            (head[0] == b'p' || head[0] == b'X', LOGIN_MESSAGE_BYTES)
        } else {
            (true, MAX_MESSAGE_BYTES)
        };
        if !allowed {
            violation("a message other than a password before login");
            return Upstream::Violation;
        }
        if !(4..=limit).contains(&len) {
            violation(if before_login {
                "a message past the login limit"
            } else {
                "a message past 1 MiB"
            });
            return Upstream::Violation;
        }
        message.clear();
        message.extend_from_slice(&head);
        message.resize(len + 1, 0);
        if client.read_exact(&mut message[5..]).await.is_err() {
            let _ = server.shutdown().await;
            return Upstream::ClientDone;
        }
        if server.write_all(&message).await.is_err() {
            return Upstream::ServerGone;
        }
    }
}

/// Server to client; notes the first ReadyForQuery (the login is over),
/// then copies as is.
async fn to_client(
    mut server: impl AsyncRead + Unpin,
    mut client: impl AsyncWrite + Unpin,
    logged_in: Arc<AtomicBool>,
) {
    let mut message = Vec::new();
    while !logged_in.load(Ordering::Acquire) {
        let mut head = [0u8; 5];
        if server.read_exact(&mut head).await.is_err() {
            let _ = client.shutdown().await;
            return;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        message.clear();
        message.extend_from_slice(&head);
        message.resize(len.max(4) + 1, 0);
        if server.read_exact(&mut message[5..]).await.is_err() {
            return;
        }
        if head[0] == b'Z' {
            logged_in.store(true, Ordering::Release);
        }
        if client.write_all(&message).await.is_err() || client.flush().await.is_err() {
            return;
        }
    }
    let _ = tokio::io::copy(&mut server, &mut client).await;
    let _ = client.shutdown().await;
}

/// A FATAL ErrorResponse.
fn fatal(sqlstate: &str, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate),
        (b'M', text),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = vec![b'E'];
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(&body);
    message
}

fn violation(what: &'static str) {
    metrics::counter!("wattline_pgwire_violations_total").increment(1);
    tracing::info!(what, "pgwire client disconnected");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of type `kind` with `body`.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// The server ends a session with a FATAL error while the client is
    /// still sending (a pipelined Parse, Describe, Sync): the client still
    /// reads the error, not a reset connection.
    #[tokio::test]
    async fn a_fatal_error_reaches_a_client_that_is_still_sending() {
        for _ in 0..200 {
            let (client, mut client_end) = tokio::net::UnixStream::pair().unwrap();
            let (server, mut server_end) = tokio::net::UnixStream::pair().unwrap();
            let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
            let relay = tokio::spawn(relay(Box::new(client), server, deadline));
            let pgwire = tokio::spawn(async move {
                server_end.write_all(&message(b'Z', b"I")).await.unwrap();
                let mut head = [0u8; 5];
                server_end.read_exact(&mut head).await.unwrap();
                server_end
                    .write_all(&fatal("28000", "revoked"))
                    .await
                    .unwrap();
                // pgwire drops its socket at once after a FATAL error.
            });
            let mut ready = [0u8; 6];
            client_end.read_exact(&mut ready).await.unwrap();
            assert_eq!(ready[0], b'Z');
            let (mut read, mut write) = client_end.into_split();
            let sender = tokio::spawn(async move {
                let query = message(b'Q', b"SELECT 1\0");
                while write.write_all(&query).await.is_ok() {
                    tokio::task::yield_now().await;
                }
            });
            let mut got = Vec::new();
            let _ = read.read_to_end(&mut got).await;
            assert_eq!(got, fatal("28000", "revoked"));
            pgwire.await.unwrap();
            sender.abort();
            relay.await.unwrap();
        }
    }
}
