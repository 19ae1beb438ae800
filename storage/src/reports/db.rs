//! [`ReportStore`]: report jobs in `<data-dir>/reports.redb`, mirrored in
//! memory, with a queue for the workers and result files in
//! `<data-dir>/reports/<job id>.<pdf|csv|json>`.
//!
//! A result file is written to a temporary name, synced and renamed before
//! its job is marked done, so a done job always has its whole file.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::model::{JobStatus, ReportJob, ReportRequest};
use crate::error::{Error, Result};
use crate::sync::Recover;

/// Job id -> job (JSON).
const JOBS: TableDefinition<&str, &str> = TableDefinition::new("jobs");

/// A job taken this many times without finishing (each time the daemon
/// stopped while it ran) is not tried again.
const MAX_RUNS: u32 = 3;
/// Jobs one tenant may have queued or running: one tenant cannot fill the
/// queue for everyone else.
const MAX_PENDING_PER_TENANT: usize = 64;
/// Finished jobs (and result files) kept per tenant before `reports.keep`
/// is up: beyond this, its oldest finished job goes first.
const MAX_KEPT_PER_TENANT: usize = 1_000;

#[derive(Default)]
struct Jobs {
    by_id: HashMap<String, ReportJob>,
    /// Request key -> the newest job of that request.
    by_request: HashMap<String, String>,
    /// Queued job ids, oldest first.
    queue: VecDeque<String>,
    /// Per tenant, when a worker last took one of its jobs (a count of
    /// takes): the next job is the oldest of the tenant served longest
    /// ago, so one tenant's many jobs do not hold up everyone else's.
    served: HashMap<String, u64>,
    takes: u64,
}

impl Jobs {
    /// Removes and returns the next job id to render (see `served`).
    fn next(&mut self) -> Option<String> {
        let at = (0..self.queue.len()).min_by_key(|&i| {
            let tenant = self
                .by_id
                .get(&self.queue[i])
                .map(|j| j.request.tenant_id.as_str())
                .unwrap_or_default();
            (self.served.get(tenant).copied().unwrap_or(0), i)
        })?;
        let id = self.queue.remove(at)?;
        self.takes += 1;
        if let Some(job) = self.by_id.get(&id) {
            self.served
                .insert(job.request.tenant_id.as_str().to_owned(), self.takes);
        }
        Some(id)
    }
}

pub struct ReportStore {
    db: Database,
    dir: PathBuf,
    jobs: Mutex<Jobs>,
    queued: Condvar,
    /// One writer of jobs at a time (the cache check and the insert of a
    /// request are one step); memory is updated after each commit.
    write: Mutex<()>,
    /// Jobs one tenant may have queued or running, and kept in all.
    limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    pending: usize,
    kept: usize,
}

impl ReportStore {
    /// Opens (or creates) the job store. Jobs queued or running when the
    /// daemon stopped are queued again, oldest first; leftovers of result
    /// files never finished are removed.
    pub fn open(data_dir: &Path, now_ms: i64) -> Result<Self> {
        let path = data_dir.join("reports.redb");
        let db = Database::create(&path).map_err(|e| Error::open(path.clone(), e))?;
        let dir = data_dir.join("reports");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let txn = db.begin_write()?;
        txn.open_table(JOBS)?;
        txn.commit()?;
        let mut loaded = Vec::new();
        {
            let txn = db.begin_read()?;
            for entry in txn.open_table(JOBS)?.iter()? {
                let (k, v) = entry?;
                // A report job is not worth a daemon that does not start:
                // an unreadable one is left out (and said so).
                match serde_json::from_str::<ReportJob>(v.value()) {
                    Ok(job) => loaded.push(job),
                    Err(e) => {
                        tracing::warn!(job = k.value(), error = %e, "skipping an unreadable report job")
                    }
                }
            }
        }
        let store = Self {
            db,
            dir,
            jobs: Mutex::new(Jobs::default()),
            queued: Condvar::new(),
            write: Mutex::new(()),
            limits: Limits {
                pending: MAX_PENDING_PER_TENANT,
                kept: MAX_KEPT_PER_TENANT,
            },
        };
        loaded.sort_by_key(|j| (j.created_ms, j.id.clone()));
        let mut interrupted = Vec::new();
        {
            let mut jobs = store.jobs.locked();
            for mut job in loaded {
                match job.status {
                    JobStatus::Running if job.runs >= MAX_RUNS => {
                        job.status = JobStatus::Failed;
                        job.finished_ms = Some(now_ms);
                        job.error = Some(format!(
                            "the daemon stopped {} times while this report was rendered; it is not tried again",
                            job.runs
                        ));
                        interrupted.push(job.clone());
                    }
                    JobStatus::Running => {
                        job.status = JobStatus::Queued;
                        interrupted.push(job.clone());
                        jobs.queue.push_back(job.id.clone());
                    }
                    JobStatus::Queued => jobs.queue.push_back(job.id.clone()),
                    JobStatus::Done | JobStatus::Failed => {}
                }
                jobs.by_request.insert(job.request.key(), job.id.clone());
                jobs.by_id.insert(job.id.clone(), job);
            }
        }
        // Not fatal: the jobs are queued in memory either way, and files
        // left over are removed on a later start.
        if let Err(e) = store.persist(&interrupted) {
            tracing::warn!(error = %e, "recording interrupted report jobs failed");
        }
        if let Err(e) = store.remove_strays() {
            tracing::warn!(error = %e, "removing unfinished report files failed");
        }
        Ok(store)
    }

    /// Removes files of the result folder that belong to no done job
    /// (temporary files of a render cut short, results of swept jobs).
    fn remove_strays(&self) -> Result<()> {
        let keep: std::collections::HashSet<String> = self
            .jobs
            .locked()
            .by_id
            .values()
            .filter(|j| j.status == JobStatus::Done)
            .map(file_name)
            .collect();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn persist(&self, jobs: &[ReportJob]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(JOBS)?;
            for job in jobs {
                let json = serde_json::to_string(job).expect("report jobs serialise");
                table.insert(job.id.as_str(), json.as_str())?;
            }
        }
        txn.commit()?;
        let mut memory = self.jobs.locked();
        for job in jobs {
            memory.by_id.insert(job.id.clone(), job.clone());
        }
        Ok(())
    }

    /// The job for `request`: the one of an identical request made less
    /// than `cache_ttl_ms` ago (unless it failed), or a new queued one
    /// (`true`).
    pub fn submit(
        &self,
        request: ReportRequest,
        now_ms: i64,
        cache_ttl_ms: i64,
    ) -> Result<(ReportJob, bool)> {
        let _w = self.write.locked();
        let key = request.key();
        {
            let jobs = self.jobs.locked();
            if let Some(job) = jobs.by_request.get(&key).and_then(|id| jobs.by_id.get(id))
                && job.status != JobStatus::Failed
                && now_ms - job.created_ms < cache_ttl_ms
            {
                return Ok((job.clone(), false));
            }
        }
        let tenant = request.tenant_id.as_str().to_owned();
        let (pending, oldest_finished) = {
            let jobs = self.jobs.locked();
            let mine: Vec<&ReportJob> = jobs
                .by_id
                .values()
                .filter(|j| j.request.tenant_id.as_str() == tenant)
                .collect();
            let pending = mine
                .iter()
                .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running))
                .count();
            let oldest = (mine.len() >= self.limits.kept)
                .then(|| {
                    mine.iter()
                        .filter(|j| j.finished_ms.is_some())
                        .min_by_key(|j| (j.finished_ms, j.id.clone()))
                        .map(|j| (*j).clone())
                })
                .flatten();
            (pending, oldest)
        };
        if pending >= self.limits.pending {
            return Err(Error::TooMuchPending(format!(
                "tenant {tenant} already has {pending} reports queued or running, the most it may have; ask again once some are done"
            )));
        }
        if let Some(old) = oldest_finished {
            self.delete(&[old])?;
        }
        let job = ReportJob {
            id: new_job_id()?,
            request,
            status: JobStatus::Queued,
            error: None,
            created_ms: now_ms,
            started_ms: None,
            finished_ms: None,
            runs: 0,
        };
        self.persist(std::slice::from_ref(&job))?;
        let mut jobs = self.jobs.locked();
        jobs.by_request.insert(key, job.id.clone());
        jobs.queue.push_back(job.id.clone());
        drop(jobs);
        self.queued.notify_one();
        Ok((job, true))
    }

    /// Smaller limits, for tests.
    #[cfg(test)]
    pub(crate) fn with_limits(mut self, pending: usize, kept: usize) -> Self {
        self.limits = Limits { pending, kept };
        self
    }

    pub fn job(&self, id: &str) -> Option<ReportJob> {
        self.jobs.locked().by_id.get(id).cloned()
    }

    /// Jobs waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.jobs.locked().queue.len()
    }

    /// The oldest queued job, marked running; waits up to `wait` for one.
    pub fn take(&self, now_ms: impl Fn() -> i64, wait: Duration) -> Result<Option<ReportJob>> {
        let id = {
            let mut jobs = self.jobs.locked();
            if jobs.queue.is_empty() {
                jobs = self
                    .queued
                    .wait_timeout(jobs, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            match jobs.next() {
                Some(id) => id,
                None => return Ok(None),
            }
        };
        let _w = self.write.locked();
        let Some(mut job) = self.job(&id) else {
            return Ok(None);
        };
        job.status = JobStatus::Running;
        job.started_ms = Some(now_ms());
        job.runs += 1;
        if let Err(e) = self.persist(std::slice::from_ref(&job)) {
            // Not taken after all: it stays first in line.
            self.jobs.locked().queue.push_front(id);
            return Err(e);
        }
        Ok(Some(job))
    }

    /// Stores the result of a running job and marks it done. The file is
    /// written before the job table is locked (a slow disk holds up no
    /// request); a failed write leaves no partial file behind.
    pub fn finish(&self, id: &str, bytes: &[u8], now_ms: i64) -> Result<ReportJob> {
        let mut job = self.job(id).ok_or_else(|| Error::NotFound {
            kind: "report",
            id: id.to_owned(),
        })?;
        let path = self.dir.join(file_name(&job));
        let tmp = self.dir.join(format!("{}.tmp", job.id));
        let written = write_synced(&tmp, bytes)
            .and_then(|()| {
                std::fs::rename(&tmp, &path)
                    .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
            })
            .and_then(|()| crate::tree::sync_dir(&self.dir));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let _w = self.write.locked();
        job.status = JobStatus::Done;
        job.finished_ms = Some(now_ms);
        job.error = None;
        self.persist(std::slice::from_ref(&job))?;
        Ok(job)
    }

    /// Marks a running job failed with `message`.
    pub fn fail(&self, id: &str, message: &str, now_ms: i64) -> Result<()> {
        let _w = self.write.locked();
        let Some(mut job) = self.job(id) else {
            return Ok(());
        };
        job.status = JobStatus::Failed;
        job.finished_ms = Some(now_ms);
        job.error = Some(message.to_owned());
        let persisted = self.persist(std::slice::from_ref(&job));
        if persisted.is_err() {
            // Shown as failed now; queued again after a restart.
            self.jobs.locked().by_id.insert(job.id.clone(), job);
        }
        persisted
    }

    /// The result of a done job. A result file that is gone (deleted by
    /// hand, lost with a disk) fails its job, so the next identical
    /// request renders it again.
    pub fn result(&self, job: &ReportJob) -> Result<Vec<u8>> {
        let path = self.dir.join(file_name(job));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.fail(
                    &job.id,
                    "the result file is gone; ask for the report again",
                    crate::now_ms(),
                )?;
                Err(Error::NotFound {
                    kind: "report result",
                    id: job.id.clone(),
                })
            }
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Deletes jobs finished more than `keep_ms` ago and their files;
    /// returns how many.
    pub fn sweep(&self, now_ms: i64, keep_ms: i64) -> Result<usize> {
        let _w = self.write.locked();
        let old: Vec<ReportJob> = self
            .jobs
            .locked()
            .by_id
            .values()
            .filter(|j| j.finished_ms.is_some_and(|f| now_ms - f > keep_ms))
            .cloned()
            .collect();
        self.delete(&old)?;
        Ok(old.len())
    }

    /// Deletes finished jobs and then their files (a crash between the
    /// two leaves files that the next open removes).
    fn delete(&self, old: &[ReportJob]) -> Result<()> {
        if old.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(JOBS)?;
            for job in old {
                table.remove(job.id.as_str())?;
            }
        }
        txn.commit()?;
        let mut jobs = self.jobs.locked();
        for job in old {
            jobs.by_id.remove(&job.id);
            let key = job.request.key();
            if jobs.by_request.get(&key) == Some(&job.id) {
                jobs.by_request.remove(&key);
            }
        }
        drop(jobs);
        for job in old {
            let _ = std::fs::remove_file(self.dir.join(file_name(job)));
        }
        Ok(())
    }
}

fn file_name(job: &ReportJob) -> String {
    format!("{}.{}", job.id, job.request.format.extension())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let mut f = std::fs::File::create(path).map_err(io)?;
    crate::faults::inject(crate::faults::FailPoint::ReportWrite).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A random job id, `p` and 16 hex digits.
fn new_job_id() -> Result<String> {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).map_err(|e| Error::io("reading random bytes", e.into()))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("p{hex}"))
}
