//! The other ends of alert delivery, real and in the test process: an SMTP
//! server (mailin-embedded) that keeps what it receives, and an HTTP
//! webhook receiver (axum) that answers from a script.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use mailin_embedded::{Handler, Response, Server, response};
use serde_json::Value;

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The value of header `name` (first line only).
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }
}

#[derive(Clone)]
struct Collect {
    inbox: Arc<Mutex<Vec<Mail>>>,
    /// RCPT commands seen per address.
    rcpts: Arc<Mutex<HashMap<String, usize>>>,
    to: Vec<String>,
    buf: Vec<u8>,
}

impl Handler for Collect {
    /// `bounce@...` is refused for good (550); `later@...` is refused for
    /// now (451) the first time.
    fn rcpt(&mut self, to: &str) -> Response {
        let address = to.trim_matches(['<', '>']).to_owned();
        let n = {
            let mut r = self.rcpts.lock().unwrap();
            let n = r.entry(address.clone()).or_default();
            *n += 1;
            *n
        };
        if address.starts_with("bounce@") {
            response::NO_MAILBOX
        } else if address.starts_with("later@") && n == 1 {
            response::INTERNAL_ERROR
        } else {
            response::OK
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.buf.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.inbox.lock().unwrap().push(Mail {
            to: self.to.clone(),
            data: String::from_utf8_lossy(&self.buf).into_owned(),
        });
        response::OK
    }
}

/// A port nobody listens on yet (for a mail server that comes up later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct MailServer {
    pub port: u16,
    inbox: Arc<Mutex<Vec<Mail>>>,
    rcpts: Arc<Mutex<HashMap<String, usize>>>,
}

impl MailServer {
    /// Serves SMTP on `port` until the test process ends.
    pub fn start_on(port: u16) -> MailServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let rcpts = Arc::new(Mutex::new(HashMap::new()));
        let handler = Collect {
            inbox: inbox.clone(),
            rcpts: rcpts.clone(),
            to: vec![],
            buf: vec![],
        };
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server.with_name("mail.test").with_tcp_listener(listener);
            let _ = server.serve();
        });
        MailServer { port, inbox, rcpts }
    }

    /// How often `address` was named in RCPT.
    pub fn rcpt_count(&self, address: &str) -> usize {
        self.rcpts
            .lock()
            .unwrap()
            .get(address)
            .copied()
            .unwrap_or(0)
    }

    pub fn start() -> MailServer {
        Self::start_on(free_port())
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.inbox.lock().unwrap().clone()
    }

    /// Waits until at least `n` mails arrived (panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} mails within {secs} s, got {}",
                mails.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// An HTTP receiver of webhook POSTs: the first `failures` attempts of
/// each event are answered 500, later ones 200.
pub struct Hook {
    pub url: String,
    received: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Hook {
    pub async fn start(failures: usize) -> Hook {
        Self::start_with(failures, std::time::Duration::ZERO).await
    }

    /// As [`Hook::start`]; the first attempt of each event is answered
    /// only after `hang` (longer than the daemon waits).
    pub async fn start_with(failures: usize, hang: std::time::Duration) -> Hook {
        use axum::routing::post;
        let received: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let attempts: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
        let rec = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |axum::Json(body): axum::Json<Value>| {
                let (rec, attempts) = (rec.clone(), attempts.clone());
                async move {
                    let id = body["event_id"].as_u64().unwrap_or(0);
                    let n = {
                        let mut a = attempts.lock().unwrap();
                        let n = a.entry(id).or_default();
                        *n += 1;
                        *n
                    };
                    let status = if n <= failures { 500 } else { 200 };
                    // Recorded on arrival: a hanging answer is cut off by
                    // the client, which drops this handler.
                    rec.lock().unwrap().push((status, body));
                    if n == 1 && !hang.is_zero() {
                        tokio::time::sleep(hang).await;
                    }
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook { url, received }
    }

    /// Every POST so far: the status answered (or meant, for a hanging
    /// one) and the body.
    pub fn received(&self) -> Vec<(u16, Value)> {
        self.received.lock().unwrap().clone()
    }
}
