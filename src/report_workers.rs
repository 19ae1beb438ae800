//! Report workers: `reports.workers` threads of their own, apart from the
//! async runtime that serves requests, take queued jobs, build the report
//! from the rollups in memory, render it and store the result. A sweeper
//! deletes results older than `reports.keep`.
//!
//! Workers run at a lower CPU priority than the threads that answer
//! requests. A render that panics fails its job with a message instead of taking
//! the worker down; a daemon stopped mid-render queues the job again on
//! start (see the job store).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wattline_query::report::{CatalogFacts, ReportError, build, render};
use wattline_storage::{ReadingStore, ReportJob, ReportStore, now_ms};

/// How long an idle worker waits before looking at the stop flag again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How often old results are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

pub(crate) struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers and the sweeper.
    pub(crate) fn start(
        reports: Arc<ReportStore>,
        store: Arc<ReadingStore>,
        count: usize,
        keep: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(count + 1);
        for i in 0..count.max(1) {
            let (reports, store, stop) = (reports.clone(), store.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("report-{i}"))
                    .spawn(move || work(&reports, &store, &stop))?,
            );
        }
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let sweeper_stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("report-sweep".into())
                .spawn(move || sweep(&reports, keep_ms, &sweeper_stop))?,
        );
        Ok(Self { stop, threads })
    }

    /// Asks the workers to stop after their current job; does not wait for
    /// a render in progress (its job is queued again on the next start).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.threads);
    }
}

/// Renders at a lower CPU priority than the request threads (nice 10):
/// with every core busy rendering, requests still run first.
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: setpriority reads only its three integers; on Linux `who`
    // 0 with PRIO_PROCESS names the calling thread.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    if r != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "report worker runs at normal priority"
        );
    }
}

fn work(reports: &ReportStore, store: &ReadingStore, stop: &AtomicBool) {
    lower_priority();
    while !stop.load(Ordering::Relaxed) {
        metrics::gauge!("wattline_report_queue_depth").set(reports.queue_depth() as f64);
        let job = match reports.take(now_ms, IDLE_WAIT) {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "taking a report job failed; trying again shortly");
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
        };
        let started = Instant::now();
        let rendered =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(&job, store)))
                .unwrap_or_else(|_| {
                    Err("rendering the report failed unexpectedly (a bug; see the log)".to_owned())
                });
        let format = job.request.format.extension();
        let outcome = match rendered {
            Ok(bytes) => match reports.finish(&job.id, &bytes, now_ms()) {
                Ok(_) => "done",
                Err(e) => {
                    // The detail names files: the log has it, the tenant
                    // gets what to do.
                    tracing::error!(job = %job.id, error = %e, "storing a report failed");
                    let message = match e {
                        wattline_storage::Error::StorageFull => {
                            "storing the result failed: the appliance's disk is full; ask again once there is room"
                        }
                        _ => "storing the result failed; the appliance's log has the cause",
                    };
                    let _ = reports.fail(&job.id, message, now_ms());
                    "failed"
                }
            },
            Err(message) => {
                tracing::warn!(job = %job.id, error = %message, "report failed");
                if let Err(e) = reports.fail(&job.id, &message, now_ms()) {
                    tracing::error!(job = %job.id, error = %e, "recording a failed report failed");
                }
                "failed"
            }
        };
        metrics::counter!("wattline_reports_total", "format" => format, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("wattline_report_duration_seconds", "format" => format)
            .record(started.elapsed().as_secs_f64());
    }
}

/// The job's file, or a message a person can act on.
fn produce(job: &ReportJob, store: &ReadingStore) -> Result<Vec<u8>, String> {
    let r = &job.request;
    let building = store
        .catalog()
        .view()
        .building(r.building_id.as_str())
        .filter(|b| b.tenant_id == r.tenant_id)
        .cloned()
        .ok_or_else(|| ReportError::BuildingGone(r.building_id.to_string()).to_string())?;
    let facts = {
        let view = store.catalog().view();
        CatalogFacts {
            currency: view
                .tariffs_of(building.tenant_id.as_str())
                .next()
                .map(|t| t.currency.clone()),
            expected_per_hour: view.expected_per_hour(building.id.as_str()),
        }
    };
    let report = build(
        &building,
        store.rollups(),
        r.start_ms,
        r.end_ms,
        r.forecast_days as usize,
        &facts,
        now_ms(),
    );
    render(r.format, &report).map_err(|e| e.to_string())
}

fn sweep(reports: &ReportStore, keep_ms: i64, stop: &AtomicBool) {
    let mut last: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if last.is_none_or(|l| l.elapsed() >= SWEEP_EVERY) {
            match reports.sweep(now_ms(), keep_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "old report results deleted"),
                Err(e) => tracing::warn!(error = %e, "deleting old report results failed"),
            }
            last = Some(Instant::now());
        }
        std::thread::sleep(IDLE_WAIT);
    }
}
