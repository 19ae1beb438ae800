//! The runtimes queries run on: each query has one of its own, so an
//! operator that does not yield holds only its own threads (and its
//! concurrency slots) until it does.
//!
//! Starting a runtime's threads (and stopping them) costs more than a
//! small query's own work, so runtimes are kept: a background thread
//! keeps [`READY`] started ones ready, a query takes one (or starts one
//! itself when none is ready), and a query that answered hands its
//! runtime back. A recycler thread takes it back once every task on it
//! has ended (within [`SETTLE`]), and only then frees the query's slots;
//! a runtime still running something (a runaway operator, a task not yet
//! cancelled) and the runtime of a query that did not answer (timed out,
//! client gone) are stopped on a reaper thread instead, which waits for a
//! runaway to yield, the query's slots taken until then.
//!
//! What the recycler cannot see is a blocking file read still running
//! for a query that stopped early (a `LIMIT` met, an error): tokio counts
//! those only with its unstable metrics. Such a read ends on its own (it
//! is one range of one chunk file), and a runtime has at most
//! [`BLOCKING_THREADS`] of them, so a kept runtime carries at most that
//! many short reads into its next query.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::OwnedSemaphorePermit;
use wattline_storage::Recover;

use crate::error::{QueryError, Result};

/// Stack of a query thread: deep (bounded) expression trees recurse in
/// planning and when dropped. Reserved address space, touched only as used.
const QUERY_STACK_BYTES: usize = 32 * 1024 * 1024;

/// How many started runtimes are kept ready.
const READY: usize = 2;
/// The most runtimes kept, counting those handed back by queries.
const KEPT: usize = 2 * READY;
/// How long a handed-back runtime may take to end its last tasks (a
/// cancelled task ends when its worker next looks at it).
const SETTLE: Duration = Duration::from_millis(50);
/// How often a runtime still settling is looked at again.
const SETTLE_POLL: Duration = Duration::from_micros(200);
/// Threads for blocking file reads, per runtime: a query's scans read a
/// few column chunks at a time, and what a query that ended early leaves
/// reading is bounded by it.
const BLOCKING_THREADS: usize = 16;

/// A query's slots: its tenant's and the engine's.
pub(crate) type Permits = (OwnedSemaphorePermit, OwnedSemaphorePermit);

fn start_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("query")
        .thread_stack_size(QUERY_STACK_BYTES)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(Duration::from_secs(1))
        .enable_time()
        .build()
        .map_err(|e| QueryError::Internal(format!("starting a query runtime: {e}")))
}

/// Started runtimes, ready for the next queries, and whether the engine
/// that owns them is gone.
#[derive(Default)]
struct Ready {
    runtimes: Vec<Runtime>,
    closed: bool,
}

/// What the starter, the recycler and the queries share.
#[derive(Default)]
struct Shared {
    ready: Mutex<Ready>,
    wake: Condvar,
    /// Runtimes started so far.
    started: AtomicUsize,
}

impl Shared {
    fn start(&self) -> Result<Runtime> {
        let runtime = start_runtime()?;
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(runtime)
    }
}

/// A finished query's runtime, handed back with its slots.
struct Returned {
    runtime: Runtime,
    permits: Option<Permits>,
}

/// Runtimes for queries: started ahead, and taken back after a query.
pub(crate) struct QueryRuntimes {
    shared: Arc<Shared>,
    /// To the recycler; `None` if its thread could not start (each
    /// runtime is then stopped after its query).
    returns: Option<mpsc::Sender<Returned>>,
}

impl QueryRuntimes {
    /// Starts the thread that keeps runtimes ready and the one that takes
    /// them back (without them, each query starts and stops its own).
    pub(crate) fn new() -> Self {
        let shared: Arc<Shared> = Arc::default();
        let starter_shared = shared.clone();
        let starter = std::thread::Builder::new()
            .name("query-runtimes".into())
            .spawn(move || keep_ready(&starter_shared));
        if let Err(e) = starter {
            tracing::warn!(error = %e, "starting the query runtime starter; each query starts its own");
        }
        let (returns, returned) = mpsc::channel();
        let recycler_shared = shared.clone();
        let recycler = std::thread::Builder::new()
            .name("query-recycler".into())
            .spawn(move || recycle(&recycler_shared, &returned));
        let returns = match recycler {
            Ok(_) => Some(returns),
            Err(e) => {
                tracing::warn!(error = %e, "starting the query runtime recycler; each runtime serves one query");
                None
            }
        };
        Self { shared, returns }
    }

    /// A started runtime, for one query.
    pub(crate) fn take(&self) -> Result<Runtime> {
        let taken = self.shared.ready.locked().runtimes.pop();
        self.shared.wake.notify_one();
        match taken {
            Some(runtime) => Ok(runtime),
            None => self.shared.start(),
        }
    }

    /// The run of a query spawned as `task` on `runtime` (taken from
    /// here), holding `permits` until the runtime is back or stopped.
    pub(crate) fn run(
        &self,
        runtime: Runtime,
        permits: Permits,
        task: tokio::task::AbortHandle,
    ) -> QueryRun {
        QueryRun {
            runtime: Some(runtime),
            permits: Some(permits),
            task,
            answered: false,
            returns: self.returns.clone(),
        }
    }
}

/// Keeps [`READY`] runtimes started until the engine is dropped.
fn keep_ready(shared: &Shared) {
    loop {
        {
            let mut state = shared.ready.locked();
            while !state.closed && state.runtimes.len() >= READY {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.closed {
                return;
            }
        }
        match shared.start() {
            Ok(runtime) => {
                let mut state = shared.ready.locked();
                if state.closed {
                    runtime.shutdown_background();
                    return;
                }
                state.runtimes.push(runtime);
            }
            Err(e) => {
                tracing::warn!(error = %e, "starting a query runtime ahead");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Takes back the runtimes of answered queries until every query and the
/// engine are gone: each is kept once every task on it ended, or stopped
/// if one still runs after [`SETTLE`]. Runtimes waiting to settle are
/// looked at in turn, so one slow to settle holds up no other.
fn recycle(shared: &Shared, returned: &mpsc::Receiver<Returned>) {
    let mut settling: Vec<(Returned, Instant)> = Vec::new();
    let mut open = true;
    while open || !settling.is_empty() {
        let next = if settling.is_empty() {
            returned
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            returned.recv_timeout(SETTLE_POLL)
        };
        match next {
            Ok(back) => settling.push((back, Instant::now() + SETTLE)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        let now = Instant::now();
        for (back, deadline) in std::mem::take(&mut settling) {
            if back.runtime.metrics().num_alive_tasks() == 0 {
                keep(shared, back);
            } else if now >= deadline {
                reap(back.runtime, back.permits);
            } else {
                settling.push((back, deadline));
            }
        }
        if !open && !settling.is_empty() {
            std::thread::sleep(SETTLE_POLL);
        }
    }
}

/// A settled runtime: its query's slots are freed, and it is kept for the
/// next query (or stopped when enough are kept).
fn keep(shared: &Shared, Returned { runtime, permits }: Returned) {
    drop(permits);
    let mut state = shared.ready.locked();
    if state.closed || state.runtimes.len() >= KEPT {
        drop(state);
        runtime.shutdown_background();
    } else {
        state.runtimes.push(runtime);
    }
}

/// Stops `runtime` on a reaper thread, which waits for a runaway to
/// yield; `permits` stay taken until it has.
fn reap(runtime: Runtime, permits: Option<Permits>) {
    // Shared with the reaper, so a reaper that cannot start has not taken
    // (and dropped, here in possibly async code) the runtime.
    let parts = Arc::new(Mutex::new(Some((runtime, permits))));
    let reaper_parts = parts.clone();
    let reaper = std::thread::Builder::new()
        .name("query-reaper".into())
        .spawn(move || {
            let taken = reaper_parts.locked().take();
            drop(taken);
        });
    if let Err(e) = reaper {
        // Let the runtime stop in the background, and keep its slots taken
        // rather than let a possible runaway run beside others.
        tracing::error!(error = %e, "starting a query reaper thread; the query's slots stay taken");
        if let Some((runtime, permits)) = parts.locked().take() {
            runtime.shutdown_background();
            std::mem::forget(permits);
        }
    }
}

impl Drop for QueryRuntimes {
    /// Stops the starter and the ready runtimes (without blocking: the
    /// engine may be dropped in async code).
    fn drop(&mut self) {
        let runtimes = {
            let mut state = self.shared.ready.locked();
            state.closed = true;
            std::mem::take(&mut state.runtimes)
        };
        self.shared.wake.notify_all();
        for runtime in runtimes {
            runtime.shutdown_background();
        }
    }
}

/// A running query's runtime and slots. Dropping it aborts the query's
/// task; the runtime of a query that answered goes back to the recycler,
/// any other (timeout, or the request dropped because the client left) is
/// stopped on a reaper thread: a runaway operator that does not yield
/// stops only when it next does, and keeps its slots until then, so at
/// most the configured number of queries burn CPU at once.
pub(crate) struct QueryRun {
    runtime: Option<Runtime>,
    permits: Option<Permits>,
    task: tokio::task::AbortHandle,
    answered: bool,
    returns: Option<mpsc::Sender<Returned>>,
}

impl QueryRun {
    /// The query's answer arrived: its runtime may serve another.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for QueryRun {
    fn drop(&mut self) {
        self.task.abort();
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let permits = self.permits.take();
        match (&self.returns, self.answered) {
            (Some(returns), true) => {
                if let Err(mpsc::SendError(back)) = returns.send(Returned { runtime, permits }) {
                    reap(back.runtime, back.permits);
                }
            }
            _ => reap(runtime, permits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn ready(runtimes: &QueryRuntimes) -> usize {
        runtimes.shared.ready.locked().runtimes.len()
    }

    /// A query's two slots, of a one-slot semaphore, taken when free.
    fn slots(slot: &Arc<Semaphore>) -> Permits {
        let mut taken = None;
        wait_for("the slot was never freed", || {
            taken = slot.clone().try_acquire_owned().ok();
            taken.is_some()
        });
        let other = Arc::new(Semaphore::new(1)).try_acquire_owned();
        (taken.unwrap(), other.unwrap())
    }

    fn recv(channel: &mpsc::Receiver<()>) -> Result<()> {
        channel
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| QueryError::Internal(e.to_string()))
    }

    /// A task on `runtime` that does not yield for `ms`, once started;
    /// the channel says when it ended.
    fn leave_running(runtime: &Runtime, ms: u64) -> Result<mpsc::Receiver<()>> {
        let (started, wait) = mpsc::channel();
        let (done, ended) = mpsc::channel();
        runtime.spawn(async move {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(ms));
            let _ = done.send(());
        });
        recv(&wait)?;
        Ok(ended)
    }

    /// A query on `runtime` that answered, its run dropped (the runtime
    /// handed back).
    fn answer(runtimes: &QueryRuntimes, runtime: Runtime, permits: Permits) {
        let task = runtime.spawn(async {});
        wait_for("the query's task never ended", || task.is_finished());
        let mut run = runtimes.run(runtime, permits, task.abort_handle());
        run.answered();
    }

    #[test]
    fn runtimes_are_started_ahead_and_a_runaway_is_not_seen_again() -> Result<()> {
        let runtimes = QueryRuntimes::new();
        wait_for("no runtime started ahead", || ready(&runtimes) == READY);
        // A query takes one; the starter replaces it.
        let runtime = runtimes.take()?;
        wait_for("the runtime taken was not replaced", || {
            ready(&runtimes) == READY
        });
        // A task that does not yield, of a query that did not answer: the
        // reaper waits for it, and the runtime is not seen again.
        let (started, wait) = mpsc::channel();
        let (done, ended) = mpsc::channel();
        let task = runtime.spawn(async move {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(300));
            let _ = done.send(());
        });
        recv(&wait)?;
        let slot = Arc::new(Semaphore::new(1));
        drop(runtimes.run(runtime, slots(&slot), task.abort_handle()));
        recv(&ended)?;
        wait_for("the runaway's slot was not freed", || {
            slot.available_permits() == 1
        });
        assert_eq!(ready(&runtimes), READY);
        // Dropped in async code, the engine's ready runtimes stop without
        // blocking.
        let outer = start_runtime()?;
        outer.block_on(async move { drop(runtimes) });
        outer.shutdown_background();
        Ok(())
    }

    #[test]
    fn answered_queries_hand_their_runtime_back_then_free_their_slots() -> Result<()> {
        let runtimes = QueryRuntimes::new();
        let slot = Arc::new(Semaphore::new(1));
        for _ in 0..20 {
            let permits = slots(&slot);
            answer(&runtimes, runtimes.take()?, permits);
        }
        let started = runtimes.shared.started.load(Ordering::Relaxed);
        assert!(started <= KEPT, "{started} runtimes started for 20 queries");
        wait_for("the last query's slot was not freed", || {
            slot.available_permits() == 1
        });
        Ok(())
    }

    #[test]
    fn a_runtime_slow_to_settle_holds_up_no_other() -> Result<()> {
        let runtimes = QueryRuntimes::new();
        let (slow_slot, quick_slot) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)));
        let slow = runtimes.take()?;
        let _ended = leave_running(&slow, 400)?;
        answer(&runtimes, slow, slots(&slow_slot));
        answer(&runtimes, runtimes.take()?, slots(&quick_slot));
        wait_for("the quick query's slot was not freed", || {
            quick_slot.available_permits() == 1
        });
        assert_eq!(
            slow_slot.available_permits(),
            0,
            "freed while a task still ran"
        );
        Ok(())
    }

    #[test]
    fn an_answered_query_that_left_a_task_running_keeps_its_slots_until_it_ends() -> Result<()> {
        let runtimes = QueryRuntimes::new();
        let slot = Arc::new(Semaphore::new(1));
        let runtime = runtimes.take()?;
        let ended = leave_running(&runtime, 400)?;
        answer(&runtimes, runtime, slots(&slot));
        std::thread::sleep(SETTLE * 2);
        assert_eq!(slot.available_permits(), 0, "freed while a task still ran");
        recv(&ended)?;
        wait_for("the slot was not freed once the task ended", || {
            slot.available_permits() == 1
        });
        Ok(())
    }
}
