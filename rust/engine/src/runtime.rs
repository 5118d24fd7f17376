//! One tokio runtime per process, built on first use. JNI calls block on it; it is never dropped
//! while the process runs (its worker threads are daemon-like and do not keep a JVM alive).

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{Error, Result};

static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// Worker threads: `SEALCOMMIT_RUNTIME_THREADS`, else the number of CPUs (at least 2).
fn threads() -> usize {
    std::env::var("SEALCOMMIT_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2)
        })
}

pub fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads())
                .thread_name("sealcommit-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            Error::io(
                "start the I/O runtime",
                "tokio",
                std::io::Error::other(e.clone()),
            )
        })
}

/// Runs a future to completion on the shared runtime, from a thread that is not a runtime worker.
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(f))
}
