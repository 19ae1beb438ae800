//! Log lines on stderr, in the form their reader wants.
//!
//! - Under systemd (stderr is the journal, `JOURNAL_STREAM` names it):
//!   no timestamp and no colour (the journal adds both), and each line
//!   starts with its syslog priority (`<3>` error ... `<7>` debug), so
//!   `journalctl -p warning` filters by level.
//! - On a terminal or in a file: a timestamp, colour on a terminal only.
//! - `--log-format json`: one JSON object per line, for log shippers.
//!
//! `RUST_LOG` picks the level (default `info`). Secrets (keys, the SMTP
//! password) are never passed to a log call.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Plain lines (journald-friendly when run by systemd).
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber.
pub(crate) fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fleet publishing's Delta library logs every table snapshot at info
    // and an expected "no table yet" as an error; what matters reaches
    // wattline as an error value and is logged by it. Unless named.
    let named = std::env::var("RUST_LOG").unwrap_or_default();
    for quiet in ["buoyant_kernel=off", "deltalake_core=error"] {
        let target = quiet.split('=').next().unwrap_or_default();
        if !named.contains(target)
            && let Ok(directive) = quiet.parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text if stderr_is_journal() => builder
            .with_ansi(false)
            .event_format(JournalPriority(Format::default().without_time()))
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Whether stderr is the stream systemd connected to the journal:
/// `JOURNAL_STREAM` is `device:inode` of that stream, and stays set in
/// children whose stderr was redirected elsewhere, hence the comparison.
fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| v.split_once(':').map(|(d, i)| (d.to_owned(), i.to_owned())))
    else {
        return false;
    };
    // The link in /proc leads to stderr itself, socket or file.
    let Ok(st) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    dev == st.dev().to_string() && ino == st.ino().to_string()
}

/// Prefixes each line with its syslog priority, for the journal.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
