//! The runtimes queries run on: each running query has one of its own, so
//! an operator that does not yield holds only its own threads (and its
//! concurrency slots) until it does.
//!
//! Starting a runtime's threads takes about a quarter of a millisecond,
//! a large part of a small query's time, so a runtime whose query has
//! finished with nothing left running on it is kept for the next query
//! (at most as many as queries may run at once). A runtime whose query was
//! abandoned (timeout, client gone) is stopped on a reaper thread, which
//! waits for a runaway to yield, and the query's slots stay taken until
//! then.

use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;
use tokio::sync::OwnedSemaphorePermit;
use wattline_storage::Recover;

use crate::error::{QueryError, Result};

/// Stack of a query thread: deep (bounded) expression trees recurse in
/// planning and when dropped. Reserved address space, touched only as used.
const QUERY_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Idle query runtimes, ready for the next query.
pub(crate) struct QueryRuntimes {
    idle: Mutex<Vec<Runtime>>,
    keep: usize,
}

impl QueryRuntimes {
    /// Keeps up to `keep` idle runtimes.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An idle runtime, or a new one.
    pub(crate) fn take(&self) -> Result<Runtime> {
        if let Some(runtime) = self.idle.locked().pop() {
            return Ok(runtime);
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_time()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting a query runtime: {e}")))
    }

    /// Takes `runtime` back when nothing runs on it any more and there is
    /// room; otherwise it is stopped on a reaper thread.
    fn give_back(&self, runtime: Runtime) -> Option<Runtime> {
        if runtime.metrics().num_alive_tasks() > 0 {
            return Some(runtime);
        }
        let mut idle = self.idle.locked();
        if idle.len() >= self.keep {
            return Some(runtime);
        }
        idle.push(runtime);
        None
    }
}

/// A running query's runtime and slots. Dropping it (answer sent, timeout,
/// or the request dropped because the client left) aborts the query's
/// task; a runtime with nothing left on it goes back to the idle ones,
/// any other is stopped on a reaper thread: a runaway operator that does
/// not yield stops only when it next does, and keeps its slots until then,
/// so at most the configured number of queries burn CPU at once.
pub(crate) struct QueryRun<'a> {
    pub(crate) runtimes: &'a QueryRuntimes,
    pub(crate) runtime: Option<Runtime>,
    pub(crate) permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    pub(crate) task: tokio::task::AbortHandle,
}

impl Drop for QueryRun<'_> {
    fn drop(&mut self) {
        self.task.abort();
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let Some(runtime) = (if self.task.is_finished() {
            self.runtimes.give_back(runtime)
        } else {
            Some(runtime)
        }) else {
            return;
        };
        // Shared with the reaper, so a reaper that cannot start has not
        // taken (and dropped, here in possibly async code) the runtime.
        let parts = Arc::new(Mutex::new(Some((runtime, self.permits.take()))));
        let reaper_parts = parts.clone();
        let reaper = std::thread::Builder::new()
            .name("query-reaper".into())
            .spawn(move || {
                let taken = reaper_parts.locked().take();
                drop(taken);
            });
        if let Err(e) = reaper {
            // Let the runtime stop in the background, and keep its slots
            // taken rather than let a possible runaway run beside others.
            tracing::error!(error = %e, "starting a query reaper thread; the query's slots stay taken");
            if let Some((runtime, permits)) = parts.locked().take() {
                runtime.shutdown_background();
                std::mem::forget(permits);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn finish(run: QueryRun<'_>) {
        drop(run);
    }

    #[test]
    fn a_finished_query_leaves_its_runtime_to_the_next_and_a_runaway_is_reaped() -> Result<()> {
        let runtimes = QueryRuntimes::new(1);
        let runtime = runtimes.take()?;
        let task = runtime.spawn(async {});
        while !task.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        finish(QueryRun {
            runtimes: &runtimes,
            task: task.abort_handle(),
            runtime: Some(runtime),
            permits: None,
        });
        assert_eq!(runtimes.idle.locked().len(), 1);

        // A task that does not yield: its runtime is not kept, and the
        // reaper waits for it.
        let runtime = runtimes.take()?;
        assert!(runtimes.idle.locked().is_empty());
        let (started, wait) = std::sync::mpsc::channel();
        let (done, ended) = std::sync::mpsc::channel();
        let task = runtime.spawn(async move {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(300));
            let _ = done.send(());
        });
        wait.recv_timeout(Duration::from_secs(10))
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        finish(QueryRun {
            runtimes: &runtimes,
            task: task.abort_handle(),
            runtime: Some(runtime),
            permits: None,
        });
        assert!(runtimes.idle.locked().is_empty());
        ended
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok(())
    }
}
