//! `wattline import FILE...`: loads an export into a running appliance:
//! catalog CSV files (buildings, sensors) through the bulk route, then
//! readings from CSV or InfluxDB line-protocol files (or stdin).
//!
//! Readings go through the daemon's own ingestion API, so they get exactly
//! the validation, deduplication, durability and rollup maintenance of any
//! other write; nothing here interprets a reading. Files are sent in
//! batches (as many lines as `ingest.max_batch_readings` allows, bodies
//! under `ingest.max_body_bytes`), one after the other. A batch the daemon
//! refuses because of some bad lines lists them; those lines go to a side
//! file with their reason and the rest of the batch is sent again.
//!
//! Re-running an import after an interruption adds nothing twice: a
//! reading is identified by `(sensor_id, ts)`, and one sent again with the
//! same value is a no-op.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::config::Settings;

mod progress;
mod rejects;

use progress::Progress;
use rejects::Rejects;

/// Largest catalog file, as the bulk route takes it.
const CATALOG_MAX: usize = 16 << 20;

/// The columns of the CSV the API takes (any order, one header line).
const CSV_HEADER: &str = "sensor_id,ts,value_kwh";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `sensor_id,ts,value_kwh` with that header line.
    Csv,
    /// InfluxDB line protocol (`energy,sensor_id=S value_kwh=1.25 TS`).
    Lp,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// Files to load; `-` reads stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The files' format (default: CSV when the first line is the header
    /// `sensor_id,ts,value_kwh`, else line protocol).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Line-protocol timestamp unit: ns, us, ms or s.
    #[arg(long, default_value = "ns")]
    precision: String,
    /// Where rejected lines go, with their file, line and reason (default:
    /// `wattline-import.rejected` in the current directory).
    #[arg(long, default_value = "wattline-import.rejected")]
    rejects: PathBuf,
    /// API key with the right to write (admin, tenant or ingest); default:
    /// the admin key in the data directory. Other users can see command
    /// lines: prefer the environment variable.
    #[arg(long, env = "WATTLINE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The tenant whose buildings and sensors catalog files (CSV with
    /// `building_id,name,...` or `sensor_id,building_id,...`) create.
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    serve: crate::ServeArgs,
}

/// Imports; exit code 1 when lines were rejected (they are in the side
/// file).
pub(crate) fn run(args: ImportArgs) -> Result<ExitCode> {
    let settings = crate::serve::settings(&args.serve)?;
    let key = match &args.key {
        Some(k) => k.clone(),
        None => crate::backup::admin_key(&settings.data_dir)?,
    };
    if !matches!(args.precision.as_str(), "ns" | "us" | "ms" | "s") {
        bail!(
            "--precision must be ns, us, ms or s, not {:?}",
            args.precision
        );
    }
    // The side file must never be one of the inputs (it is truncated).
    if let Ok(r) = std::fs::metadata(&args.rejects) {
        use std::os::unix::fs::MetadataExt;
        for f in &args.files {
            if let Ok(m) = std::fs::metadata(f)
                && (m.dev(), m.ino()) == (r.dev(), r.ino())
            {
                bail!(
                    "--rejects {} is one of the files to import",
                    args.rejects.display()
                );
            }
        }
    }
    let total_bytes = args
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let mut import = Import {
        settings: &settings,
        key,
        precision: args.precision.clone(),
        tenant: args.tenant.clone(),
        rejects: Rejects {
            path: args.rejects.clone(),
            file: None,
        },
        progress: Progress::new(total_bytes, args.files.iter().any(|f| f == Path::new("-"))),
        accepted: 0,
        rejected: 0,
    };
    for path in &args.files {
        import.file(path, args.format)?;
    }
    import.rejects.flush()?;
    import.progress.finish(import.accepted, import.rejected);
    if import.rejected > 0 {
        println!(
            "{} rejected lines, each with its reason, in {}",
            import.rejected,
            args.rejects.display()
        );
    }
    Ok(if import.rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct Import<'a> {
    settings: &'a Settings,
    key: String,
    precision: String,
    tenant: Option<String>,
    rejects: Rejects,
    progress: Progress,
    accepted: u64,
    rejected: u64,
}

/// Lines of one batch: (line number in the file, text).
type Lines = Vec<(u64, String)>;

impl Import<'_> {
    fn file(&mut self, path: &Path, format: Option<Format>) -> Result<()> {
        let name = path.display().to_string();
        let input: Box<dyn Read> = if path == Path::new("-") {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(path).with_context(|| format!("opening {name}"))?)
        };
        let mut reader = BufReader::with_capacity(1 << 20, input);
        // A batch is at most half the body limit, so it is never refused
        // for size; a longer line cannot be sent at all.
        let max_bytes = self.settings.max_body_bytes / 2;
        let max_lines = self.settings.max_batch_readings;
        let mut buf = Vec::new();
        let mut batch: Lines = Vec::new();
        let mut batch_bytes = 0usize;
        let mut header: Option<String> = None;
        let mut number = 0u64;
        let mut consumed = 0u64;
        loop {
            let (n, whole) = read_capped_line(&mut reader, &mut buf, max_bytes)
                .with_context(|| format!("reading {name} after line {number}"))?;
            if n == 0 {
                break;
            }
            number += 1;
            consumed += n as u64;
            let text = match std::str::from_utf8(&buf) {
                Ok(t) if whole => t.trim_end_matches(['\n', '\r']),
                Ok(_) => {
                    let why =
                        format!("longer than {max_bytes} bytes (half of ingest.max_body_bytes)");
                    self.rejects.add(&name, number, &why, "(not kept)")?;
                    self.rejected += 1;
                    continue;
                }
                Err(_) => {
                    let shown = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    self.rejects.add(&name, number, "not UTF-8 text", &shown)?;
                    self.rejected += 1;
                    continue;
                }
            };
            let text = if number == 1 {
                text.trim_start_matches('\u{feff}')
            } else {
                text
            };
            if number == 1 && format != Some(Format::Lp) && is_catalog_header(text) {
                // The rest is read whole: a catalog goes in one commit.
                let mut rest = Vec::new();
                reader
                    .take(CATALOG_MAX as u64 + 1)
                    .read_to_end(&mut rest)
                    .with_context(|| format!("reading {name}"))?;
                return self.catalog(&name, text, &rest);
            }
            if number == 1 {
                let csv = is_csv_header(text);
                match format.unwrap_or(if csv { Format::Csv } else { Format::Lp }) {
                    Format::Csv if !csv => bail!(
                        "{name}: a CSV file starts with a header naming {CSV_HEADER}, not {text:?}"
                    ),
                    Format::Csv => {
                        header = Some(text.to_owned());
                        continue;
                    }
                    Format::Lp => {}
                }
            }
            if is_blank_or_comment(text) {
                continue;
            }
            if !batch.is_empty() && batch_bytes + text.len() + 1 > max_bytes {
                self.send(&name, header.as_deref(), std::mem::take(&mut batch))?;
                batch_bytes = 0;
                self.progress.update(consumed, self.accepted);
                consumed = 0;
            }
            batch_bytes += text.len() + 1;
            batch.push((number, text.to_owned()));
            if batch.len() >= max_lines {
                self.send(&name, header.as_deref(), std::mem::take(&mut batch))?;
                batch_bytes = 0;
                self.progress.update(consumed, self.accepted);
                consumed = 0;
            }
        }
        if !batch.is_empty() {
            self.send(&name, header.as_deref(), batch)?;
        }
        self.progress.update(consumed, self.accepted);
        Ok(())
    }

    /// Creates the buildings or sensors of a catalog CSV (`header`, then
    /// `rest`) in one request; those the tenant has already are left as
    /// they are, so a second run creates nothing.
    fn catalog(&mut self, name: &str, header: &str, rest: &[u8]) -> Result<()> {
        let Some(tenant) = &self.tenant else {
            bail!("{name} is a catalog file (buildings or sensors): say whose with --tenant");
        };
        if rest.len() + header.len() > CATALOG_MAX {
            bail!("{name} is larger than {CATALOG_MAX} bytes: split it into files of fewer rows");
        }
        let mut body = String::with_capacity(header.len() + 1 + rest.len());
        body.push_str(header);
        body.push('\n');
        body.push_str(
            std::str::from_utf8(rest).with_context(|| format!("{name} is not UTF-8 text"))?,
        );
        let (status, answer) = crate::http_client::request(
            self.settings.listen,
            "POST",
            &format!("/api/v1/tenants/{tenant}/bulk?existing=skip"),
            &self.key,
            "text/csv",
            &body,
            Duration::from_secs(3600),
        )
        .with_context(|| {
            format!(
                "no daemon answers at {}; start it first",
                self.settings.listen
            )
        })?;
        if status != 201 {
            bail!(
                "{name}: the daemon refused the catalog ({status}), nothing of it was stored: {answer}"
            );
        }
        let created: Value = serde_json::from_str(&answer).unwrap_or_default();
        println!(
            "{name}: {} buildings and {} sensors created (any others were there already)",
            created["buildings"], created["sensors"]
        );
        Ok(())
    }

    /// Sends `lines` (CSV rows under `header`, or line protocol without
    /// one) until the daemon takes what is valid of them.
    fn send(&mut self, name: &str, header: Option<&str>, mut lines: Lines) -> Result<()> {
        let mut busy_since: Option<Instant> = None;
        while !lines.is_empty() {
            let (path, content_type, first_line) = match header {
                Some(_) => ("/api/v1/readings".to_owned(), "text/csv", 2),
                None => (
                    format!("/api/v1/write?precision={}", self.precision),
                    "text/plain",
                    1,
                ),
            };
            let mut body = String::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
            if let Some(h) = header {
                body.push_str(h);
                body.push('\n');
            }
            for (_, l) in &lines {
                body.push_str(l);
                body.push('\n');
            }
            let (status, answer) = crate::http_client::request(
                self.settings.listen,
                "POST",
                &path,
                &self.key,
                content_type,
                &body,
                Duration::from_secs(300),
            )
            .with_context(|| {
                format!(
                    "no daemon answers at {}; start it first",
                    self.settings.listen
                )
            })?;
            match status {
                200..=299 => {
                    self.accepted += lines.len() as u64;
                    return Ok(());
                }
                400 => {
                    let bad = bad_lines(&answer, first_line, lines.len())
                        .with_context(|| format!("{name}: the daemon refused a batch: {answer}"))?;
                    // Highest index first, so the others keep theirs.
                    let mut removed: Vec<_> = bad
                        .into_iter()
                        .rev()
                        .map(|(index, reason)| (lines.remove(index), reason))
                        .collect();
                    removed.reverse();
                    for ((number, text), reason) in removed {
                        self.rejects.add(name, number, &reason, &text)?;
                        self.rejected += 1;
                    }
                }
                // Rate limited or busy (the write-ahead catching up): wait,
                // for up to ten minutes in a row.
                429 | 503 => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(600) {
                        bail!("the daemon stayed busy for ten minutes ({status}): {answer}");
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                _ => bail!("{name}: the daemon answered {status}: {answer}"),
            }
        }
        Ok(())
    }
}

/// Whether `line` is the header of a catalog CSV: buildings
/// (`building_id`, `name`, ...) or sensors (`sensor_id`, `building_id`,
/// ..., no `ts`).
fn is_catalog_header(line: &str) -> bool {
    let names: Vec<&str> = line
        .split(',')
        .map(|n| n.trim().trim_matches('"'))
        .collect();
    let has = |n: &str| names.contains(&n);
    (has("building_id") && has("name") && !has("sensor_id"))
        || (has("sensor_id") && has("building_id") && !has("ts"))
}

/// Whether `line` is a CSV header naming the three columns (in any order,
/// spaces allowed), as the daemon takes it.
fn is_csv_header(line: &str) -> bool {
    let mut names: Vec<&str> = line.split(',').map(str::trim).collect();
    names.sort_unstable();
    names == ["sensor_id", "ts", "value_kwh"]
}

/// Reads one line (through `\n`) into `buf`, keeping at most `cap` bytes
/// of it: (bytes consumed, whether all of it was kept). A longer line is
/// consumed to its end without growing memory.
fn read_capped_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<(usize, bool)> {
    buf.clear();
    let (mut consumed, mut whole) = (0, true);
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, whole));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(buf.len());
        if chunk.len() > room {
            whole = false;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok((consumed, whole));
        }
    }
}

/// Lines that hold no reading (line protocol's comments start with `#`;
/// no CSV row does).
fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('#')
}

/// The batch's bad lines as (index among `lines`, reason), ascending, from
/// an `invalid_readings` answer whose `line`s count from `first_line`.
fn bad_lines(answer: &str, first_line: usize, lines: usize) -> Result<Vec<(usize, String)>> {
    let v: Value = serde_json::from_str(answer)?;
    if v["error"]["code"] != "invalid_readings" {
        bail!("not a list of bad readings");
    }
    let mut bad: Vec<(usize, String)> = v["error"]["details"]
        .as_array()
        .context("no details")?
        .iter()
        .map(|d| {
            let line = d["line"].as_u64().context("a detail without a line")? as usize;
            let index = line
                .checked_sub(first_line)
                .filter(|i| *i < lines)
                .context("a line outside the batch")?;
            Ok((index, d["error"].as_str().unwrap_or("invalid").to_owned()))
        })
        .collect::<Result<_>>()?;
    bad.sort_by_key(|(i, _)| *i);
    bad.dedup_by_key(|(i, _)| *i);
    if bad.is_empty() {
        bail!("an empty list of bad readings");
    }
    Ok(bad)
}
