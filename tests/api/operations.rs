//! What an operator runs and reads: `wattline config`, the log formats,
//! and the systemd unit.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{Options, Server};

fn wattline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wattline"))
        .args(args)
        .env_remove("WATTLINE_LOG_FORMAT")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_check_names_the_key_and_the_line_of_each_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A value checked after parsing (a duration).
        (
            "[server]\nlisten = \"127.0.0.1:8080\"\n\n[query]\ntimeout = \"30 parsecs\"\n",
            "line 5: query.timeout:",
        ),
        // A wrong type, found while parsing.
        (
            "[ingest]\nmax_body_bytes = \"big\"\n",
            "ingest.max_body_bytes: TOML parse error at line 2",
        ),
        // An unknown key.
        (
            "[server]\nlisten = \"127.0.0.1:8080\"\nlisten_port = 3\n",
            "server.listen_port: TOML parse error at line 3",
        ),
        // A count that must be positive.
        (
            "[reports]\n\nworkers = 0\n",
            "line 3: reports.workers: must be a positive integer",
        ),
        // Not TOML at all.
        ("[server\n", "TOML parse error at line 1"),
        // A secret's line is not quoted back.
        (
            "[smtp]\npassword = 12345s3cr\n",
            "smtp: invalid value at line 2",
        ),
        (
            "[smtp]\npassword = \"s3cr\\qt\"\n",
            "smtp: invalid value at line 2",
        ),
    ];
    for (i, (toml, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let out = wattline(&["config", "check", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{toml}: {err}");
        assert!(
            err.contains(expected),
            "{toml}: expected {expected:?} in {err}"
        );
        assert!(!err.contains("s3cr"), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = wattline(&["config", "check", "/nonexistent/wattline.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read config file /nonexistent/wattline.toml"));
}

#[test]
fn config_defaults_is_the_shipped_file_and_checks_clean() {
    let out = wattline(&["config", "defaults"]);
    assert!(out.status.success());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/wattline.toml"
    ))
    .unwrap();
    assert_eq!(text(&out.stdout), shipped);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wattline.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let out = wattline(&["config", "check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("valid. listen 127.0.0.1:8080, data_dir /var/lib/wattline"),
        "{}",
        text(&out.stdout)
    );
}

/// `--log-format json`: every line is a JSON object; the start line has
/// version, data directory, listen address and recovery figures; no
/// secret (the SMTP password, the admin key) appears anywhere.
#[tokio::test]
async fn json_logs_carry_the_start_figures_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        dir.path(),
        Options {
            config: Some(
                "[smtp]\nhost = \"127.0.0.1\"\nport = 1\nusername = \"u\"\npassword = \"hunter2-smtp-secret\"\n"
                    .into(),
            ),
            env: vec![("WATTLINE_LOG_FORMAT".into(), "json".into())],
        },
    )
    .await;
    server.flush().await;
    let (status, _) = server.terminate();
    assert!(status.success());
    let log = server.log();
    let mut start = None;
    for line in log.lines().filter(|l| !l.starts_with("admin key written")) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
        if v["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("wattline ready on")
        {
            start = Some(v);
        }
    }
    let start = start.expect("a start line");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        start["data_dir"].as_str().unwrap(),
        std::fs::canonicalize(&server.data_dir)
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert!(start["listen"].as_str().unwrap().starts_with("127.0.0.1:"));
    for field in [
        "chunk_files",
        "recovered_readings",
        "recovered_batches",
        "recovery_ms",
    ] {
        assert!(start[field].is_u64(), "{field}: {start}");
    }
    assert!(!log.contains("hunter2-smtp-secret"));
    assert!(!log.contains(&server.admin));
}

/// Run by systemd, stderr is the journal (`JOURNAL_STREAM` names it): no
/// timestamps or colour, each line led by its syslog priority.
#[tokio::test]
async fn journal_lines_carry_their_priority() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // The harness sends stderr to this file: make it "the journal".
    let log = dir.path().join("server.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let mut server = Server::start_with(
        dir.path(),
        Options {
            config: None,
            env: vec![(
                "JOURNAL_STREAM".into(),
                format!("{}:{}", meta.dev(), meta.ino()),
            )],
        },
    )
    .await;
    server.terminate();
    let text = server.log();
    let ready = text
        .lines()
        .find(|l| l.contains("wattline ready on"))
        .unwrap();
    assert!(
        ready.starts_with("<6> INFO wattline::serve: wattline ready on"),
        "{ready}"
    );
    assert!(!text.contains('\u{1b}'), "no colour codes");
}

/// The unit file passes `systemd-analyze verify` (with ExecStart pointed
/// at the built binary) and rates "OK" or better in `systemd-analyze
/// security`, at an exposure of 2.0 or lower.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/wattline.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wattline.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/wattline", env!("CARGO_BIN_EXE_wattline")),
    )
    .unwrap();
    let analyze = |args: &[&str]| {
        Command::new("systemd-analyze")
            .args(args)
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd package)")
    };
    let out = analyze(&["verify"]);
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = analyze(&["security", "--offline=true", "--no-pager"]);
    let report = text(&out.stdout);
    let overall = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for wattline.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("{report}{}", text(&out.stderr)));
    let score: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    assert!(score <= 2.0, "{overall}\n{report}");
    eprintln!("systemd-analyze security: {overall}");
}

/// `wattline check` against `data_dir` (and the daemon at `listen`, if any).
fn check(data_dir: &std::path::Path, listen: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wattline"))
        .args(["check", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", listen])
        .env_remove("WATTLINE_CONFIG")
        .env_remove("WATTLINE_ADMIN_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// Three days of quarter-hour readings for two meters, flushed to chunk
/// files (one per day).
async fn three_flushed_days(server: &Server) {
    server.setup("t", "b", &["m1", "m2"]).await;
    let day = 86_400_000;
    let start = (crate::support::now_minute_ms() / day - 4) * day;
    let readings: Vec<Value> = (start..start + 3 * day)
        .step_by(900_000)
        .flat_map(|t| {
            [
                crate::support::reading("m1", t, 1.0),
                crate::support::reading("m2", t, 2.0),
            ]
        })
        .collect();
    for batch in readings.chunks(5_000) {
        let r = server
            .post_json(&serde_json::json!({ "readings": batch }))
            .await;
        assert!(r.status().is_success());
    }
    server.flush().await;
}

fn chunk_files(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = walk(&data_dir.join("chunks/readings"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// On a running daemon under ingest, `check` checks a copy the daemon
/// makes (and removes it); on the stopped daemon's directory, the
/// directory itself. Both clean.
#[tokio::test]
async fn check_passes_on_a_live_directory_under_ingest_and_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    three_flushed_days(&server).await;
    // And a batch still only in the write-ahead.
    let t = crate::support::now_minute_ms() - 7_200_000;
    let r = server
        .post_json(&serde_json::json!({"readings": [
            crate::support::reading("m2", t, 0.25),
            crate::support::reading("m2", t + 60_000, 0.25),
        ]}))
        .await;
    assert!(r.status().is_success());
    let listen = server.base.trim_start_matches("http://").to_owned();

    // Ingest goes on while the check runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, base, key) = (stop.clone(), server.base.clone(), server.admin.clone());
        tokio::spawn(async move {
            let client = crate::support::client();
            let mut t = crate::support::now_minute_ms() - 3_600_000;
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(format!("{base}/api/v1/readings"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"readings": [crate::support::reading("m1", t, 0.5)]}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                t += 1_000;
                sent += 1;
            }
            sent
        })
    };
    let data_dir = server.data_dir.clone();
    let (code, out) = tokio::task::spawn_blocking(move || check(&data_dir, &listen))
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = writer.await.unwrap();
    assert!(sent > 0);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("a consistent copy made by the running daemon"),
        "{out}"
    );
    assert!(
        out.contains("chunk files: 3 named by the manifest"),
        "{out}"
    );
    assert!(
        out.contains("catalog: 1 tenants, 1 buildings, 2 sensors, consistent"),
        "{out}"
    );
    assert!(out.contains("no problems found"), "{out}");
    let wal_line = out.lines().find(|l| l.contains("write-ahead:")).unwrap();
    let batches: u64 = wal_line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(batches >= 1, "{out}");
    let left: Vec<_> = std::fs::read_dir(&server.data_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".check-"))
        .collect();
    assert!(left.is_empty(), "the copy is removed");

    server.terminate();
    // A copy left by a check that was killed (its process is gone).
    let stale = server.data_dir.join(".check-999999999");
    std::fs::create_dir_all(stale.join("chunks")).unwrap();
    let (code, out) = check(&server.data_dir, "127.0.0.1:1");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(no daemon running)"), "{out}");
    assert!(out.contains("no problems found"), "{out}");
    assert!(!stale.exists(), "the leftover copy is removed");
}

/// A daemon starting removes copies that checks left behind.
#[tokio::test]
async fn the_daemon_removes_a_checks_leftover_copy_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    server.terminate();
    let left = server.data_dir.join(".check-42");
    std::fs::create_dir_all(left.join("chunks/readings")).unwrap();
    std::fs::write(left.join("meta.redb"), b"x").unwrap();
    let server = Server::start(dir.path()).await;
    assert!(!left.exists());
    assert!(server.log().contains("removed a check's leftover copy"));
}

/// Damage of each kind is found and named, with what to do; the check
/// itself changes nothing.
#[tokio::test]
async fn check_names_a_truncated_a_changed_and_a_missing_chunk_and_a_damaged_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    three_flushed_days(&server).await;
    server.terminate();
    let data = server.data_dir.clone();
    let files = chunk_files(&data);
    assert_eq!(files.len(), 3, "{files:?}");
    let rel = |p: &std::path::Path| p.strip_prefix(&data).unwrap().display().to_string();

    // Truncated.
    let len = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // Bytes flipped in the middle, size unchanged.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&files[1], &bytes).unwrap();
    // Missing.
    std::fs::remove_file(&files[2]).unwrap();
    // A database whose first page is overwritten.
    let alerts = data.join("alerts.redb");
    let mut db = std::fs::read(&alerts).unwrap();
    db[..64].fill(0xff);
    std::fs::write(&alerts, &db).unwrap();

    let before: Vec<_> = walk(&data)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let (code, out) = check(&data, "127.0.0.1:1");
    assert_eq!(code, 1, "{out}");
    let broken = |file: &str, what: &str| {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("BROKEN {file}: ")) && l.contains(what)),
            "{file} {what:?} in\n{out}"
        );
    };
    broken(&rel(&files[0]), "bytes long, the manifest says");
    broken(&rel(&files[1]), "does not match its checksum");
    broken(&rel(&files[2]), "is missing");
    broken("alerts.redb", "cannot be opened");
    assert!(out.contains("what to do: stop the daemon and put back this file from a backup"));
    assert!(out.contains("4 problem(s) found"), "{out}");
    let after: Vec<_> = walk(&data)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(before == after, "check changed the directory");
}

/// `wattline import` with `args` against the daemon `server`, `stdin` fed.
fn import(server: &Server, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wattline"))
        .arg("import")
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["--listen", server.base.trim_start_matches("http://")])
        .args(args)
        .env_remove("WATTLINE_CONFIG")
        .env_remove("WATTLINE_KEY")
        .env_remove("WATTLINE_ADMIN_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// A daemon that keeps 2019's readings and rollups.
async fn history_server(root: &std::path::Path) -> Server {
    Server::start_with(
        root,
        Options {
            config: Some("[retention]\nraw = \"20y\"\nrollups = \"20y\"\n".into()),
            env: vec![],
        },
    )
    .await
}

/// Per sensor: (readings, kWh) of `sensor_id,ts,value_kwh` text.
fn csv_totals(csv: &str) -> std::collections::BTreeMap<String, (u64, f64)> {
    let mut totals = std::collections::BTreeMap::new();
    for line in csv.lines().skip(1) {
        let mut f = line.split(',');
        let (s, _, v) = (f.next().unwrap(), f.next(), f.next().unwrap());
        let e = totals.entry(s.to_owned()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += v.parse::<f64>().unwrap();
    }
    totals
}

async fn stored_totals(server: &Server) -> std::collections::BTreeMap<String, (u64, f64)> {
    server
        .sql("SELECT sensor_id, count(*), sum(value_kwh) FROM readings GROUP BY sensor_id")
        .await
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                (r[1].as_u64().unwrap(), r[2].as_f64().unwrap()),
            )
        })
        .collect()
}

fn assert_same_totals(
    a: &std::collections::BTreeMap<String, (u64, f64)>,
    b: &std::collections::BTreeMap<String, (u64, f64)>,
) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, (n, kwh)) in a {
        let (m, other) = b[k];
        assert_eq!(*n, m, "{k}");
        assert!(
            (kwh - other).abs() <= 1e-6 * kwh.abs().max(1.0),
            "{k}: {kwh} vs {other}"
        );
    }
}

/// The real 2019 excerpt (three sensors, 26,280 hourly readings) with three
/// bad lines slipped in: the good lines give the CSV's own totals, the bad
/// ones land in the side file with file, line and reason; a second run
/// adds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn import_gives_the_csvs_totals_rejects_bad_lines_and_adds_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = history_server(dir.path()).await;
    server.create_tenant("ucam").await;
    for (b, s) in [("b0", "b0-elec"), ("b1", "b1-elec"), ("b2", "b2-gas")] {
        server.create_building("ucam", b).await;
        server.create_sensor(b, s).await;
    }
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cambridge_2019_excerpt.csv"
    ))
    .unwrap();
    let expected = csv_totals(&fixture);
    let mut lines: Vec<&str> = fixture.lines().collect();
    lines.insert(1000, "no-such-meter,2019-03-01T00:00:00Z,1.0");
    lines.insert(2000, "b0-elec,yesterday,1.0");
    lines.insert(3000, "b1-elec,2019-03-01T00:00:00Z");
    let file = dir.path().join("history.csv");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let rejects = dir.path().join("rejects.txt");
    let args = [
        "--rejects",
        rejects.to_str().unwrap(),
        file.to_str().unwrap(),
    ];

    let (code, out, err) = tokio::task::block_in_place(|| import(&server, &args, ""));
    assert_eq!(code, 1, "lines were rejected: {out}{err}");
    assert!(out.contains("imported 26280 readings"), "{out}");
    assert!(out.contains("3 lines rejected"), "{out}");
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    let numbers: Vec<&str> = rejected
        .lines()
        .map(|l| l.split(':').nth(1).unwrap())
        .collect();
    assert_eq!(numbers, ["1001", "2001", "3001"], "{rejected}");
    assert!(
        rejected
            .lines()
            .all(|l| l.starts_with(file.to_str().unwrap()))
    );
    assert!(
        rejected.contains("no-such-meter,2019-03-01T00:00:00Z,1.0"),
        "{rejected}"
    );
    assert_same_totals(&expected, &stored_totals(&server).await);

    // Interrupted or not, a second run changes nothing.
    let (code, out, err) = tokio::task::block_in_place(|| import(&server, &args, ""));
    assert_eq!(code, 1, "{out}{err}");
    assert_same_totals(&expected, &stored_totals(&server).await);
    // The plain progress lines (not a terminal) name the rate.
    assert!(!err.contains('\r'), "{err}");
}

/// Line protocol from stdin, with a bad line; a wrong key is told.
#[tokio::test(flavor = "multi_thread")]
async fn import_reads_line_protocol_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let server = history_server(dir.path()).await;
    server.setup("t", "b", &["m1"]).await;
    let lp = "# meter dump\n\
              energy,sensor_id=m1 value_kwh=1.5 1546300800\n\
              energy,sensor_id=m1 value_kwh=oops 1546304400\n\
              energy,sensor_id=m1 value_kwh=2.5 1546308000\n";
    let rejects = dir.path().join("r.txt");
    let args = [
        "--precision",
        "s",
        "--rejects",
        rejects.to_str().unwrap(),
        "-",
    ];
    let (code, out, err) = tokio::task::block_in_place(|| import(&server, &args, lp));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("imported 2 readings"), "{out}");
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert!(rejected.starts_with("-:3: "), "{rejected}");
    let rows = server
        .sql("SELECT sum(value_kwh), count(*) FROM readings")
        .await;
    assert_eq!(rows[0][0], 4.0);

    let r = rejects.to_str().unwrap();
    let (code, out, err) = tokio::task::block_in_place(|| {
        import(
            &server,
            &["--key", "wl_wrong", "--rejects", r, "-"],
            "energy,sensor_id=m1 value_kwh=1 1\n",
        )
    });
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("401"), "{err}");
    // A clean run leaves no side file.
    std::fs::remove_file(&rejects).unwrap();
    let (code, ..) = tokio::task::block_in_place(|| {
        import(
            &server,
            &["--precision", "s", "--rejects", r, "-"],
            "energy,sensor_id=m1 value_kwh=1 1546311600\n",
        )
    });
    assert_eq!(code, 0);
    assert!(!rejects.exists(), "{:?}", std::fs::read_to_string(&rejects));
}

/// What a real export may look like: a byte-order mark and spaces in the
/// header, columns in another order, a Latin-1 line, a line far longer
/// than a batch may be. Each bad line is rejected by itself; the rest is
/// stored. The side file is never an input, nor written through a link.
#[tokio::test(flavor = "multi_thread")]
async fn import_takes_real_world_csv_and_refuses_to_overwrite_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let server = history_server(dir.path()).await;
    server.setup("t", "b", &["m1"]).await;
    let mut body = "\u{feff}ts, sensor_id, value_kwh\n2019-01-01T00:00:00Z,m1,1.25\n"
        .as_bytes()
        .to_vec();
    body.extend_from_slice(b"2019-01-01T01:00:00Z,m1,\xe9\n");
    body.extend_from_slice(
        format!("2019-01-01T02:00:00Z,m1,{}\n", "9".repeat(2_000_000)).as_bytes(),
    );
    body.extend_from_slice(b"2019-01-01T03:00:00Z,m1,2.5\r\n");
    let file = dir.path().join("export.csv");
    std::fs::write(&file, &body).unwrap();
    let rejects = dir.path().join("rejects.txt");
    let (f, r) = (file.to_str().unwrap(), rejects.to_str().unwrap());
    let (code, out, err) =
        tokio::task::block_in_place(|| import(&server, &["--rejects", r, f], ""));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("imported 2 readings"), "{out}");
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines.len(), 2, "{rejected}");
    assert!(
        lines[0].starts_with(&format!("{f}:3: not UTF-8 text")),
        "{rejected}"
    );
    assert!(
        lines[1].starts_with(&format!("{f}:4: longer than")),
        "{rejected}"
    );
    let rows = server.sql("SELECT sum(value_kwh) FROM readings").await;
    assert_eq!(rows[0][0], 3.75);

    // The input as the side file: refused before anything is read.
    let (code, _, err) = tokio::task::block_in_place(|| import(&server, &["--rejects", f, f], ""));
    assert_eq!(code, 1);
    assert!(err.contains("is one of the files to import"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), body);
    // A planted link where the side file goes: not followed.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let link = dir.path().join("link.rejected");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (code, _, err) = tokio::task::block_in_place(|| {
        import(&server, &["--rejects", link.to_str().unwrap(), f], "")
    });
    assert_eq!(code, 1);
    assert!(err.contains("creating"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

/// An estate's whole export in one command: its buildings and sensors
/// (catalog CSVs, created in one commit each) and its readings; a second
/// run creates and adds nothing. Without `--tenant` a catalog file is
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn import_loads_an_export_with_its_catalog_and_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = history_server(dir.path()).await;
    server.create_tenant("ucam").await;
    let buildings = dir.path().join("buildings.csv");
    std::fs::write(
        &buildings,
        "building_id,name,tenant_id,floor_area_m2,floors,timezone\n\
         b0,Building b0,ucam,3296.5,5,Europe/London\n\
         b1,Building b1,ucam,856.7,3,Europe/London\n\
         b2,Building b2,ucam,1200,2,Europe/London\n",
    )
    .unwrap();
    let sensors = dir.path().join("sensors.csv");
    std::fs::write(
        &sensors,
        "sensor_id,building_id,kind,unit\nb0-elec,b0,electricity,kWh\nb1-elec,b1,electricity,kWh\nb2-gas,b2,gas,kWh\n",
    )
    .unwrap();
    let readings = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cambridge_2019_excerpt.csv"
    );
    let expected = csv_totals(&std::fs::read_to_string(readings).unwrap());
    let rejects = dir.path().join("r.txt");
    let args = [
        "--tenant",
        "ucam",
        "--rejects",
        rejects.to_str().unwrap(),
        buildings.to_str().unwrap(),
        sensors.to_str().unwrap(),
        readings,
    ];
    let (code, out, err) = tokio::task::block_in_place(|| import(&server, &args, ""));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 buildings and 0 sensors created"), "{out}");
    assert!(out.contains("0 buildings and 3 sensors created"), "{out}");
    assert!(out.contains("imported 26280 readings"), "{out}");
    assert_same_totals(&expected, &stored_totals(&server).await);
    let b0 = server.get_json("/api/v1/buildings/b0").await;
    assert_eq!(b0["timezone"], "Europe/London");

    let (code, out, err) = tokio::task::block_in_place(|| import(&server, &args, ""));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 buildings and 0 sensors created"), "{out}");
    assert_same_totals(&expected, &stored_totals(&server).await);

    let (code, _, err) = tokio::task::block_in_place(|| {
        import(
            &server,
            &[
                "--rejects",
                rejects.to_str().unwrap(),
                sensors.to_str().unwrap(),
            ],
            "",
        )
    });
    assert_eq!(code, 1);
    assert!(err.contains("say whose with --tenant"), "{err}");
}
