//! The one policy for poisoned locks: take the lock anyway.
//!
//! A lock is poisoned when a thread panicked while holding it. Every lock
//! in wattline guards state that is whole between statements (a map
//! insert, a swap of tiers, a counter), and durable state is never
//! changed under a lock in a way that a panic could leave half done, so
//! the data behind a poisoned lock is still good; refusing it would turn
//! one panic into a daemon that can no longer serve.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The lock of a [`Mutex`], recovering from poisoning.
pub trait Recover<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Recover<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Read and write locks of an [`RwLock`], recovering from poisoning.
pub trait RecoverRw<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RecoverRw<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|e| e.into_inner())
    }
}
