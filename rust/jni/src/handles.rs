//! Engine objects Java holds as a `long` (`Box::into_raw`), each owned by one
//! `io.sealcommit.NativeHandle` on the Java side.
//!
//! The contract (`NativeHandle`): a handle comes from the matching open/create export and is
//! freed only by the matching close (or finish) export, which the Java owner calls once, after
//! every call in flight on the handle has returned, and never calls on it after. Jobs are also
//! checked here (`Jobs`): a tripwire behind that contract.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use sealcommit_engine::{CheckpointFs, Job};

use crate::bridge::{BResult, BridgeError};

/// Hands `v` to Java as a handle.
pub fn into_handle<T>(v: T) -> i64 {
    Box::into_raw(Box::new(v)) as i64
}

/// Borrows the object behind a handle made by `into_handle`.
///
/// SAFETY (for callers): `handle` is 0 or came from `into_handle::<T>` and is not freed while
/// the borrow lives (the contract in the module doc).
pub unsafe fn borrow<'a, T>(handle: i64) -> BResult<&'a mut T> {
    if handle == 0 {
        return Err(BridgeError::Closed);
    }
    Ok(unsafe { &mut *(handle as *mut T) })
}

/// Takes back ownership of a handle (see `borrow`); `None` for 0.
pub unsafe fn take<T>(handle: i64) -> Option<Box<T>> {
    (handle != 0).then(|| unsafe { Box::from_raw(handle as *mut T) })
}

/// The jobs `jobOpen` made that `jobClose` has not freed, and counts for `jobCounts`. A
/// tripwire behind the Java owner's guarantee: a job export on a handle that is not live is
/// refused and counted instead of reading freed memory, and a second free is refused instead
/// of freeing twice.
#[derive(Default)]
struct Jobs {
    live: HashSet<i64>,
    opened: i64,
    freed: i64,
    refused: i64,
}

fn jobs() -> MutexGuard<'static, Jobs> {
    static JOBS: OnceLock<Mutex<Jobs>> = OnceLock::new();
    // Each update is one insert or remove plus a count: a panic elsewhere cannot leave the set
    // half-changed, so a poisoned lock is still right to use.
    JOBS.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Registers a new job; its handle.
pub fn open_job(job: Job) -> i64 {
    let handle = into_handle(job);
    let mut jobs = jobs();
    jobs.live.insert(handle);
    jobs.opened += 1;
    handle
}

/// The live job behind `handle`.
pub fn job<'a>(handle: i64) -> BResult<&'a Job> {
    let mut jobs = jobs();
    if !jobs.live.contains(&handle) {
        if handle != 0 {
            jobs.refused += 1;
        }
        return Err(BridgeError::Closed);
    }
    // SAFETY: made by `open_job` and not yet freed by `free_job`, which the Java owner
    // (`SealJob`) does not call while this call runs (the module doc).
    Ok(unsafe { &*(handle as *const Job) })
}

/// Frees a live job; refuses (and counts) a handle that is not live. 0 is a no-op.
pub fn free_job(handle: i64) -> BResult<()> {
    if handle == 0 {
        return Ok(());
    }
    let mut jobs = jobs();
    if !jobs.live.remove(&handle) {
        jobs.refused += 1;
        return Err(BridgeError::Closed);
    }
    jobs.freed += 1;
    drop(jobs);
    // SAFETY: live until now, and no longer reachable through `job`; the Java owner frees
    // once, with no call in flight (the module doc).
    drop(unsafe { Box::from_raw(handle as *mut Job) });
    Ok(())
}

/// `[opened, freed, refused]` so far in this process.
pub fn job_counts() -> Vec<i64> {
    let jobs = jobs();
    vec![jobs.opened, jobs.freed, jobs.refused]
}

/// The checkpoint manager behind `handle` (shared: writers and readers hold their own `Arc`).
pub fn checkpoint_fs<'a>(handle: i64) -> BResult<&'a Arc<CheckpointFs>> {
    // SAFETY: made by `cpOpen` as `into_handle(Arc<CheckpointFs>)`; only shared access is taken.
    unsafe { borrow::<Arc<CheckpointFs>>(handle) }.map(|fs| &*fs)
}
