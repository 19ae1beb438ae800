//! The runtimes queries run on: each query has one of its own, used once,
//! so an operator that does not yield holds only its own threads (and its
//! concurrency slots) until it does, and whatever a query leaves on its
//! runtime (a blocking file read, a task not yet cancelled) ends with it.
//!
//! Starting a runtime's threads takes about a quarter of a millisecond,
//! a large part of a small query's time, so a background thread keeps a
//! few started ones ready; a query takes one (or starts one itself when
//! none is ready), and when it ends its runtime is stopped on a reaper
//! thread, which waits for a runaway to yield; the query's slots stay
//! taken until then.

use std::sync::{Arc, Condvar, Mutex};

use tokio::runtime::Runtime;
use tokio::sync::OwnedSemaphorePermit;
use wattline_storage::Recover;

use crate::error::{QueryError, Result};

/// Stack of a query thread: deep (bounded) expression trees recurse in
/// planning and when dropped. Reserved address space, touched only as used.
const QUERY_STACK_BYTES: usize = 32 * 1024 * 1024;

/// How many started runtimes are kept ready.
const READY: usize = 2;

fn start_runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("query")
        .thread_stack_size(QUERY_STACK_BYTES)
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

/// Runtimes for queries, started ahead by a background thread.
pub(crate) struct QueryRuntimes {
    ready: Arc<(Mutex<Ready>, Condvar)>,
}

impl QueryRuntimes {
    /// Starts the thread that keeps runtimes ready (without it, each
    /// query starts its own).
    pub(crate) fn new() -> Self {
        let ready: Arc<(Mutex<Ready>, Condvar)> = Arc::default();
        let shared = ready.clone();
        let starter = std::thread::Builder::new()
            .name("query-runtimes".into())
            .spawn(move || keep_ready(&shared));
        if let Err(e) = starter {
            tracing::warn!(error = %e, "starting the query runtime starter; each query starts its own");
        }
        Self { ready }
    }

    /// A started runtime, for one query.
    pub(crate) fn take(&self) -> Result<Runtime> {
        let (lock, wake) = &*self.ready;
        let taken = lock.locked().runtimes.pop();
        wake.notify_one();
        match taken {
            Some(runtime) => Ok(runtime),
            None => start_runtime(),
        }
    }
}

/// Keeps [`READY`] runtimes started until the engine is dropped.
fn keep_ready(ready: &(Mutex<Ready>, Condvar)) {
    let (lock, wake) = ready;
    loop {
        {
            let mut state = lock.locked();
            while !state.closed && state.runtimes.len() >= READY {
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.closed {
                return;
            }
        }
        match start_runtime() {
            Ok(runtime) => {
                let mut state = lock.locked();
                if state.closed {
                    runtime.shutdown_background();
                    return;
                }
                state.runtimes.push(runtime);
            }
            Err(e) => {
                tracing::warn!(error = %e, "starting a query runtime ahead");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

impl Drop for QueryRuntimes {
    /// Stops the starter and the ready runtimes (without blocking: the
    /// engine may be dropped in async code).
    fn drop(&mut self) {
        let (lock, wake) = &*self.ready;
        let runtimes = {
            let mut state = lock.locked();
            state.closed = true;
            std::mem::take(&mut state.runtimes)
        };
        wake.notify_all();
        for runtime in runtimes {
            runtime.shutdown_background();
        }
    }
}

/// A running query's runtime and slots. Dropping it (answer sent, timeout,
/// or the request dropped because the client left) aborts the query's
/// task and stops the runtime on a reaper thread: a runaway operator that
/// does not yield stops only when it next does, and keeps its slots until
/// then, so at most the configured number of queries burn CPU at once.
pub(crate) struct QueryRun {
    pub(crate) runtime: Option<Runtime>,
    pub(crate) permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    pub(crate) task: tokio::task::AbortHandle,
}

impl Drop for QueryRun {
    fn drop(&mut self) {
        self.task.abort();
        let Some(runtime) = self.runtime.take() else {
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
    use std::time::{Duration, Instant};

    #[test]
    fn runtimes_are_started_ahead_and_each_serves_one_query() -> Result<()> {
        let runtimes = QueryRuntimes::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while runtimes.ready.0.locked().runtimes.len() < READY {
            assert!(Instant::now() < deadline, "no runtime started ahead");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A query takes one; the starter replaces it.
        let runtime = runtimes.take()?;
        while runtimes.ready.0.locked().runtimes.len() < READY {
            assert!(
                Instant::now() < deadline,
                "the runtime taken was not replaced"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // A task that does not yield: the reaper waits for it, and the
        // runtime is not seen again.
        let (started, wait) = std::sync::mpsc::channel();
        let (done, ended) = std::sync::mpsc::channel();
        let task = runtime.spawn(async move {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(300));
            let _ = done.send(());
        });
        wait.recv_timeout(Duration::from_secs(10))
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        drop(QueryRun {
            task: task.abort_handle(),
            runtime: Some(runtime),
            permits: None,
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        assert_eq!(runtimes.ready.0.locked().runtimes.len(), READY);
        // Dropped in async code, the engine's ready runtimes stop without
        // blocking.
        let outer = start_runtime()?;
        outer.block_on(async move { drop(runtimes) });
        outer.shutdown_background();
        Ok(())
    }
}
