//! Test harness: runs the real `wattline` binary on an ephemeral port with
//! its own data directory, and talks HTTP to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    pub admin: String,
    pub client: Client,
    log: PathBuf,
}

/// A reqwest client builder. reqwest shares the daemon's TLS set-up
/// (rustls without a built-in provider), so ring is installed first.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
}

pub fn client() -> Client {
    client_builder().build().unwrap()
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    /// TOML written to a config file passed with `--config`.
    pub config: Option<String>,
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server on a fresh data directory inside `root`.
    pub async fn start(root: &Path) -> Server {
        Self::start_with(root, Options::default()).await
    }

    pub async fn start_with(root: &Path, opts: Options) -> Server {
        let data_dir = root.join("data");
        let mut child = spawn(root, &data_dir, &opts);
        let log = root.join("server.log");
        let addr = match wait_for_ready_line(&log, &mut child) {
            Ok(addr) => addr,
            Err(e) => panic!("{e}\n--- server log ---\n{}", read_log(&log)),
        };
        let admin = std::fs::read_to_string(data_dir.join("admin.key"))
            .expect("admin.key")
            .trim()
            .to_owned();
        let server = Server {
            child: Some(child),
            base: format!("http://{addr}"),
            data_dir,
            admin,
            client: client_builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            log,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "server never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the admin key.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.with_key(&self.admin, method, path)
    }

    pub fn with_key(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        signal(child.id(), libc::SIGTERM);
        let status = child.wait().expect("wait");
        (status, started.elapsed())
    }

    /// Waits for an exit caused by a signal sent earlier.
    pub fn terminate_wait(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let status = child.wait().expect("wait");
        (status, started.elapsed())
    }

    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    // --- catalog helpers (admin) ---

    pub async fn create_tenant(&self, id: &str) {
        let r = self
            .admin(Method::POST, "/api/v1/tenants")
            .json(&serde_json::json!({"id": id, "name": format!("Tenant {id}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    pub async fn create_building(&self, tenant: &str, id: &str) {
        let r = self
            .admin(Method::POST, &format!("/api/v1/tenants/{tenant}/buildings"))
            .json(&serde_json::json!({"id": id, "name": format!("Building {id}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    pub async fn create_sensor(&self, building: &str, id: &str) {
        self.create_sensor_with(building, serde_json::json!({"id": id}))
            .await;
    }

    /// Creates a sensor from a whole body (meter settings and all).
    pub async fn create_sensor_with(&self, building: &str, body: Value) {
        let r = self
            .admin(
                Method::POST,
                &format!("/api/v1/buildings/{building}/sensors"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    /// Tenant `t`, building `b`, and the given sensors in it.
    pub async fn setup(&self, t: &str, b: &str, sensors: &[&str]) {
        self.create_tenant(t).await;
        self.create_building(t, b).await;
        for s in sensors {
            self.create_sensor(b, s).await;
        }
    }

    /// A new key of `role` for `tenant`; returns the secret.
    pub async fn create_key(&self, role: &str, tenant: Option<&str>) -> String {
        let r = self
            .admin(Method::POST, "/api/v1/keys")
            .json(&serde_json::json!({"role": role, "tenant_id": tenant, "name": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["key"].as_str().unwrap().to_owned()
    }

    /// POSTs a CSV body to `path` with the admin key.
    pub async fn post_csv(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        self.admin(Method::POST, path)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a JSON batch with the admin key.
    pub async fn post_json(&self, body: &Value) -> Response {
        self.admin(Method::POST, "/api/v1/readings")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// GET with the admin key, expecting 200 and a JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Runs SQL with `key`; expects 200 and returns the JSON answer.
    pub async fn sql_with(&self, key: &str, sql: &str) -> Value {
        let r = self
            .with_key(key, Method::POST, "/api/v1/sql")
            .json(&serde_json::json!({"sql": sql}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{sql}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Runs SQL with the admin key; returns the rows.
    pub async fn sql(&self, sql: &str) -> Vec<Value> {
        self.sql_with(&self.admin, sql).await["rows"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// `POST /api/v1/admin/flush`, expecting 200. A flush rolls up all
    /// the data sent: a year of it takes longer than other requests on a
    /// busy debug build, so it has the maintenance routes' patience.
    pub async fn flush(&self) -> Value {
        let r = self
            .admin(Method::POST, "/api/v1/admin/flush")
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// POSTs a JSON batch with the admin key (owning the body, for
    /// concurrent sends).
    pub async fn post_json_owned(&self, body: Value) -> Response {
        self.post_json(&body).await
    }

    /// All readings of a sensor as `(ts, value)`.
    /// Asserts that the daemon still answers `/healthz`.
    /// The `/metrics` text (without a key).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn assert_alive(&self) {
        let r = self.client.get(self.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the daemon stopped answering");
    }

    pub async fn readings(&self, sensor: &str) -> Vec<(String, f64)> {
        let v = self
            .get_json(&format!("/api/v1/sensors/{sensor}/readings"))
            .await;
        v["readings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["ts"].as_str().unwrap().to_owned(),
                    p["value_kwh"].as_f64().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(root: &Path, data_dir: &Path, opts: &Options) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("server.log"))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wattline"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("WATTLINE_ADMIN_KEY")
        .env_remove("WATTLINE_DATA_DIR")
        .env_remove("WATTLINE_LISTEN")
        .env_remove("WATTLINE_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(cfg) = &opts.config {
        let path = root.join("wattline.toml");
        std::fs::write(&path, cfg).unwrap();
        cmd.arg("--config").arg(path);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn wattline")
}

/// Waits for the daemon's "ready on http://ADDR" line (after this start's
/// part of the log) and returns ADDR.
fn wait_for_ready_line(log: &Path, child: &mut Child) -> Result<String, String> {
    let skip = read_log(log).matches("ready on http://").count();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = read_log(log);
        if let Some(line) = text.split("ready on http://").nth(skip + 1) {
            let addr: String = line
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            return Ok(addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("wattline exited early with {status}"));
        }
        if Instant::now() > deadline {
            return Err("wattline did not get ready in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Now, in epoch milliseconds, rounded down to the minute (so tests get
/// stable timestamps well inside the accepted window).
pub fn now_minute_ms() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ms - ms % 60_000
}

/// RFC 3339 UTC text of epoch milliseconds, as the API answers it.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A JSON reading object.
pub fn reading(sensor: &str, ts_ms: i64, value: f64) -> Value {
    serde_json::json!({"sensor_id": sensor, "ts": ts_ms, "value_kwh": value})
}

/// Reads a JSON error answer and returns its code, checking the shape.
pub async fn error_code(r: Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("error answers are JSON");
    let code = v["error"]["code"].as_str().expect("error.code").to_owned();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message missing: {v}"
    );
    (status, code, v)
}

pub(crate) use crate::pydeps::duckdb_pythonpath;

/// Runs a DuckDB SQL query in Python; returns its rows as JSON.
pub fn duckdb_query(sql: &str) -> Value {
    let script = format!(
        "import duckdb, json\nrows = duckdb.sql({sql:?}).fetchall()\nprint(json.dumps([list(r) for r in rows], default=str))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .env("PYTHONPATH", duckdb_pythonpath())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A SQL request with `key`: status, error code and message.
pub async fn sql_status(server: &Server, key: &str, sql: &str) -> (u16, String, String) {
    let r = server
        .with_key(key, reqwest::Method::POST, "/api/v1/sql")
        .json(&serde_json::json!({"sql": sql}))
        .send()
        .await
        .unwrap();
    let (status, code, v) = error_code(r).await;
    (
        status,
        code,
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}
