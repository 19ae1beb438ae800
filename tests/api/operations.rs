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
