//! `wattline serve`: start-up, recovery, serving and shutdown.
//!
//! Start-up order: settings, data directory, catalog, admin key, HTTP
//! listener (so `/healthz` answers at once), then write-ahead recovery on a
//! blocking thread; `/readyz` turns 200 when it is done. On SIGTERM or
//! SIGINT the listener stops accepting, in-flight requests finish (bounded
//! by 10 s), the write-ahead writer drains, and the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;
use wattline_query::{QueryEngine, QueryLimits};
use wattline_storage::{AlertStore, Catalog, ReadingStore, ReportStore};
use wattline_web::{AppState, WebConfig};

use crate::ServeArgs;
use crate::config::{Overrides, Settings};

/// Longest time in-flight requests get after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(9);

/// Latency buckets, in seconds, for every histogram.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Settings from the file, environment and flags, as `serve` uses them.
pub(crate) fn settings(args: &ServeArgs) -> Result<Settings> {
    Settings::load(
        args.config.as_deref(),
        &Overrides {
            data_dir: args.data_dir.clone(),
            listen: args.listen.clone(),
        },
    )
}

/// Runs the daemon; with `demo`, also the demo tenant and its meters.
pub(crate) fn run(args: ServeArgs, demo: bool) -> Result<()> {
    let settings = settings(&args)?;
    crate::open_files::raise_limit();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wattline")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(settings, demo))
}

async fn serve(settings: Settings, demo: bool) -> Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    // Absolute from here on: chunk files are handed to DataFusion by path.
    let data_dir = std::fs::canonicalize(&settings.data_dir)
        .with_context(|| format!("resolving {}", settings.data_dir.display()))?;
    remove_check_copies(&data_dir);
    let catalog = Arc::new(Catalog::open(&data_dir)?);
    let alerts = Arc::new(AlertStore::open(&data_dir)?);
    let reports = Arc::new(ReportStore::open(&data_dir, wattline_storage::now_ms())?);
    if let Some(path) = crate::admin_key::ensure(&catalog, &data_dir)? {
        println!("admin key written to {}", path.display());
    }
    if settings.smtp.is_none() {
        tracing::info!("smtp.host is not set: alert mail is disabled");
    }

    let metrics = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .context("metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let state = Arc::new(AppState::new(
        catalog,
        alerts.clone(),
        reports.clone(),
        web_config(&settings),
        metrics,
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(wattline_web::serve(listener, state.clone(), async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));

    let systemd = Arc::new(crate::systemd::Notifier::from_env());
    let dir = data_dir.clone();
    let cat = state.catalog.clone();
    let recovery = tokio::task::spawn_blocking(move || ReadingStore::open(&dir, cat));
    let (store, report) = extending_start(&systemd, recovery, &mut term)
        .await
        .context("recovery task")??;
    let store = Arc::new(store);
    let engine = Arc::new(
        QueryEngine::new(
            store.clone(),
            QueryLimits {
                timeout: settings.query_timeout,
                memory_limit: usize::try_from(settings.query_memory_limit).unwrap_or(usize::MAX),
                max_rows: settings.query_max_rows,
                max_concurrent: settings.query_max_concurrent,
                max_concurrent_per_tenant: settings.query_max_concurrent_per_tenant,
                max_join_rows: settings.query_max_join_rows,
            },
        )
        .with_alerts(alerts.clone()),
    );
    let pgwire = match &settings.pgwire {
        Some(config) => Some(
            crate::pgwire::start(
                config,
                engine.clone(),
                state.catalog.clone(),
                stop_tx.subscribe(),
            )
            .await?,
        ),
        None => None,
    };
    let mqtt = settings.mqtt.clone().map(|m| {
        let window = crate::mqtt::Window {
            retention_raw: settings.retention_raw,
            max_future: settings.max_future,
        };
        crate::mqtt::spawn(
            m,
            store.clone(),
            state.catalog.clone(),
            window,
            stop_tx.subscribe(),
        )
    });
    state.set_ready(store.clone(), engine);
    let maintenance = tokio::spawn(crate::maintenance::run(
        store.clone(),
        crate::maintenance::Schedule {
            flush_interval: settings.flush_interval,
            retention_raw: settings.retention_raw,
            retention_rollups: settings.retention_rollups,
        },
        stop_tx.subscribe(),
    ));
    let alert_tasks = spawn_alerts(&settings, &alerts, &store, &stop_tx)?;
    #[cfg(feature = "fleet")]
    let fleet = settings.fleet.clone().map(|c| {
        let retention = wattline_fleet::datasets::Retention {
            raw: settings.retention_raw,
            rollups: settings.retention_rollups,
        };
        crate::fleet::spawn(c, store.clone(), retention, stop_tx.subscribe())
    });
    let report_workers = crate::report_workers::Workers::start(
        reports,
        store.clone(),
        settings.reports_workers,
        settings.reports_keep,
    )
    .context("starting the report workers")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        listen = %addr,
        chunk_files = report.chunks,
        recovered_readings = report.readings,
        recovered_batches = report.batches,
        recovery_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "wattline ready on http://{addr}"
    );
    systemd.notify(&format!(
        "READY=1\nSTATUS=serving on {addr}; recovered {} readings",
        report.readings
    ));
    let watchdog = systemd.watchdog_every().map(|every| {
        let (systemd, store, mut stop) = (systemd.clone(), store.clone(), stop_tx.subscribe());
        tokio::spawn(async move {
            // A ping proves the async runtime still runs tasks; a daemon
            // whose write-ahead failed stops pinging (and is stopping).
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                if store.fatal().is_none() {
                    systemd.notify("WATCHDOG=1");
                }
            }
        })
    });

    let demo = demo.then(|| {
        let (dir, stop) = (data_dir.clone(), stop_tx.subscribe());
        tokio::spawn(async move {
            if let Err(e) = crate::demo::run(addr, &dir, stop).await {
                tracing::error!(error = %format!("{e:#}"), "the demo could not start");
            }
        })
    });

    let fatal = tokio::select! {
        () = shutdown_signal(term) => false,
        () = stopped(&store) => true,
    };
    if fatal {
        tracing::error!(
            reason = store.fatal().unwrap_or_default(),
            "stopping: the write-ahead cannot go on; a restart recovers from what is durable"
        );
    }
    tracing::info!("shutting down: finishing in-flight requests");
    systemd.notify("STOPPING=1");
    let _ = stop_tx.send(true);
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("in-flight requests did not finish in time; closing them"),
    }
    // Background steps stop at their next tick. One already running on a
    // blocking thread (a flush, a rollup step) is crash-safe: it is not
    // waited for beyond a moment, so the exit stays within 10 s.
    let _ = tokio::time::timeout(Duration::from_millis(500), maintenance).await;
    if let Some(mqtt) = mqtt {
        // Messages not yet acknowledged are sent again at the next start.
        let _ = tokio::time::timeout(Duration::from_millis(500), mqtt).await;
    }
    if let Some(pgwire) = pgwire {
        let _ = tokio::time::timeout(Duration::from_millis(500), pgwire).await;
    }
    #[cfg(feature = "fleet")]
    if let Some(fleet) = fleet {
        // A publish cut short is repeated at the next start.
        let _ = tokio::time::timeout(Duration::from_millis(500), fleet).await;
    }
    for task in alert_tasks {
        let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
    }
    if let Some(demo) = demo {
        let _ = tokio::time::timeout(Duration::from_millis(200), demo).await;
    }
    report_workers.stop();
    tokio::task::spawn_blocking(move || store.close()).await?;
    tracing::info!("stopped");
    // Do not wait for blocking threads still finishing a background step.
    // Non-zero after a fatal write-ahead error: systemd restarts the unit.
    std::process::exit(if fatal { 1 } else { 0 })
}

/// Removes the copies `wattline check` asks a running daemon for
/// (`.check-<pid>`): one still here at start belongs to a check that was
/// cut short, and its hard links would keep replaced chunk files on disk.
fn remove_check_copies(data_dir: &std::path::Path) {
    for entry in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".check-") {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a check's leftover copy")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a check's leftover copy")
                }
            }
        }
    }
}

/// Waits for `recovery`, asking systemd for 30 s more start time every
/// 10 s meanwhile: replaying a large write-ahead may take longer than the
/// unit's start timeout, and is progress, not a hang. SIGTERM meanwhile
/// exits at once: recovery is crash-safe, the next start redoes it.
async fn extending_start<T>(
    systemd: &crate::systemd::Notifier,
    recovery: tokio::task::JoinHandle<T>,
    term: &mut tokio::signal::unix::Signal,
) -> Result<T, tokio::task::JoinError> {
    tokio::pin!(recovery);
    loop {
        tokio::select! {
            done = &mut recovery => return done,
            _ = term.recv() => {
                tracing::info!("stopped during recovery; the next start recovers again");
                systemd.notify("STOPPING=1");
                std::process::exit(0);
            }
            () = tokio::time::sleep(Duration::from_secs(10)) => {
                systemd.notify("EXTEND_TIMEOUT_USEC=30000000\nSTATUS=recovering the write-ahead");
            }
        }
    }
}

/// The alert scheduler, the mail loop and the webhook loop.
fn spawn_alerts(
    settings: &Settings,
    alerts: &Arc<AlertStore>,
    store: &Arc<ReadingStore>,
    stop: &watch::Sender<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    use crate::delivery::{MailSettings, Mailer, Webhooks};
    let mail_wake = Arc::new(tokio::sync::Notify::new());
    let hook_wake = Arc::new(tokio::sync::Notify::new());
    let mailer = Mailer::new(MailSettings {
        smtp: settings.smtp.clone(),
        dashboard_url: settings.alerts_dashboard_url.clone(),
    })?;
    Ok(vec![
        tokio::spawn(crate::alerting::run(
            alerts.clone(),
            store.clone(),
            crate::alerting::AlertSchedule {
                interval: settings.alerts_interval,
                lookback: settings.alerts_lookback,
                renotify: settings.alerts_renotify,
            },
            vec![mail_wake.clone(), hook_wake.clone()],
            stop.subscribe(),
        )),
        tokio::spawn(crate::delivery::run_mail(
            alerts.clone(),
            store.catalog().clone(),
            mailer,
            mail_wake,
            stop.subscribe(),
        )),
        tokio::spawn(crate::delivery::run_webhooks(
            alerts.clone(),
            Webhooks::new(settings.alerts_webhook_private)?,
            hook_wake,
            stop.subscribe(),
        )),
    ])
}

fn web_config(s: &Settings) -> WebConfig {
    WebConfig {
        request_timeout: s.request_timeout,
        max_connections: s.max_connections,
        query_timeout: s.query_timeout,
        max_body_bytes: s.max_body_bytes,
        max_batch_readings: s.max_batch_readings,
        max_future: s.max_future,
        rate_limit_per_key: s.rate_limit_per_key,
        rate_limit_per_ip: s.rate_limit_per_ip,
        retention_raw: s.retention_raw,
        query_max_rows: s.query_max_rows,
        metrics_require_auth: s.metrics_require_auth,
        reports_cache_ttl: s.reports_cache_ttl,
    }
}

/// Resolves once the store has stopped for good (see
/// [`ReadingStore::fatal`]).
async fn stopped(store: &ReadingStore) {
    while store.fatal().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
