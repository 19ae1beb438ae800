//! Fail points for the file steps of flush, compaction, rollup and report writes,
//! so tests can make each step fail as a disk would.
//!
//! Production builds compile [`inject`] to nothing. In this crate's tests a
//! thread arms a point with [`arm`]; the step calling [`inject`] with that
//! name on the same thread then fails with the armed error, once. (Flush,
//! compaction and rollup steps run on their caller's thread.)

/// Where a file step can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum FailPoint {
    /// Writing a chunk file's bytes (a short write or a full disk).
    ChunkWrite,
    /// The fsync of a chunk file.
    ChunkSync,
    /// The fsync of a chunk's folder after the rename.
    ChunkDirSync,
    /// Writing a rollup partition file.
    RollupWrite,
    /// The fsync of a rollup partition's folder after the rename.
    RollupDirSync,
    /// The fsync of the folder of a partition a step leaves as it is.
    RollupKeepSync,
    /// Writing a report's result file.
    ReportWrite,
}

/// Fails with the error armed for `point` on this thread, if any.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn inject(_point: FailPoint) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) use armed::{arm, inject};

#[cfg(test)]
mod armed {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::FailPoint;

    thread_local! {
        static ARMED: RefCell<HashMap<FailPoint, std::io::ErrorKind>> = RefCell::new(HashMap::new());
    }

    /// Makes the next `point` on this thread fail with `kind`.
    pub(crate) fn arm(point: FailPoint, kind: std::io::ErrorKind) {
        ARMED.with(|a| a.borrow_mut().insert(point, kind));
    }

    pub(crate) fn inject(point: FailPoint) -> std::io::Result<()> {
        match ARMED.with(|a| a.borrow_mut().remove(&point)) {
            Some(std::io::ErrorKind::StorageFull) => Err(std::io::Error::from_raw_os_error(28)),
            Some(kind) => Err(std::io::Error::new(kind, format!("injected at {point:?}"))),
            None => Ok(()),
        }
    }
}
