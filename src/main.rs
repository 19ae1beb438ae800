//! `wattline`: the energy-metering appliance daemon.
//!
//! This binary parses the command line and configuration, then wires the
//! crates together: storage (catalog, write-ahead), then the HTTP API, and
//! waits for a shutdown signal. See `README.md` for the architecture.

mod admin_key;
mod alerting;
mod backup;
mod check;
mod config;
mod delivery;
mod demo;
mod fleet;
mod http_client;
mod import;
mod logging;
mod maintenance;
mod mqtt;
mod open_files;
mod pgwire;
mod report_workers;
mod serve;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use logging::LogFormat;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wattline",
    version,
    about = "On-premises energy-metering appliance"
)]
struct Cli {
    /// Log lines as `text` (journald-friendly when run by systemd) or `json`.
    #[arg(long, global = true, env = "WATTLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Run the daemon with a demo tenant: backfilled readings and live
    /// simulated meters. Prints a key and commands to try.
    Demo(ServeArgs),
    /// Write a consistent copy of the data to DIR (through the running
    /// daemon, or by copying the data directory when none runs).
    Backup {
        /// Where the copy goes; must not exist or be empty.
        dir: PathBuf,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Verify the data directory without changing it: every database page,
    /// the write-ahead, the manifest against the chunk files (size,
    /// checksum, rows), every rollup file, the catalog's references. On a
    /// running appliance it checks a consistent copy the daemon makes.
    /// Exits 1 naming each broken file and what to do, 2 when the check
    /// could not be done in full.
    Check(ServeArgs),
    /// Load historical readings from CSV or line-protocol files (or `-`
    /// for stdin) into the running daemon, through its API's validation
    /// and deduplication; rejected lines go to a side file with their
    /// reason (exit 1 when there are any). Running it again adds nothing
    /// twice.
    Import(import::ImportArgs),
    /// Fleet publishing (Delta Lake tables on S3-compatible storage).
    #[cfg(feature = "fleet")]
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Check or print the configuration file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate FILE as `serve` would; errors name the key and the line.
    Check {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Print the configuration file with every key, commented, at its
    /// default (data_dir as the Debian package sets it).
    Defaults,
}

#[cfg(feature = "fleet")]
#[derive(Subcommand)]
enum FleetAction {
    /// Compact closed months, checkpoint every fleet table and delete
    /// files no commit refers to (older than --retention). Run by one
    /// operator for the whole fleet,
    /// with the `[fleet]` section of a config file; never needed on each
    /// appliance.
    Maintain {
        /// TOML configuration file with a `[fleet]` section.
        #[arg(long, env = "WATTLINE_CONFIG")]
        config: PathBuf,
        /// Keep unreferenced files this long (readers may still read them;
        /// at least 1h).
        #[arg(long, default_value = "7d")]
        retention: String,
        /// Allow a retention under 1h (tests; no appliance may publish meanwhile).
        #[arg(long)]
        allow_short_retention: bool,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Data directory (default ./wattline-data).
    #[arg(long, env = "WATTLINE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:8080).
    #[arg(long, env = "WATTLINE_LISTEN")]
    listen: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "WATTLINE_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS for alert mail and webhooks: ring, the one provider built in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    logging::init(cli.log_format);
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Serve(args) => done(serve::run(args, false)),
        Command::Demo(args) => done(serve::run(args, true)),
        Command::Backup { dir, args } => {
            done(serve::settings(&args).and_then(|settings| backup::run(&settings, &dir)))
        }
        // These two say in their exit code what they found.
        Command::Check(args) => serve::settings(&args).and_then(|s| check::run(&s)),
        Command::Import(args) => import::run(args),
        #[cfg(feature = "fleet")]
        Command::Fleet {
            action:
                FleetAction::Maintain {
                    config,
                    retention,
                    allow_short_retention,
                },
        } => done(fleet_maintain(config, &retention, allow_short_retention)),
        Command::Config {
            action: ConfigAction::Check { file },
        } => done(config::check(&file)),
        Command::Config {
            action: ConfigAction::Defaults,
        } => {
            print!("{}", config::DEFAULTS);
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("wattline: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "fleet")]
fn fleet_maintain(config: PathBuf, retention: &str, allow_short: bool) -> anyhow::Result<()> {
    let args = ServeArgs {
        data_dir: None,
        listen: None,
        config: Some(config),
    };
    let settings = serve::settings(&args)?;
    let Some(fleet) = settings.fleet else {
        anyhow::bail!("the config file has no [fleet] section");
    };
    fleet::maintain(&fleet, config::parse_duration(retention)?, allow_short)
}
