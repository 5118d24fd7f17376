//! sealcommit engine: commits Spark and Hadoop output to S3-compatible stores with multipart
//! uploads completed at job commit (no rename, no copy), with the requested server-side
//! encryption applied per request and verified on every object.
//!
//! This crate holds all logic and has no JNI dependency; `sealcommit-jni` exposes it to the JVM
//! and `sealcommit-cli` to operators. See `docs/ARCHITECTURE.md`.

pub mod checkpoint;
pub mod commit;
pub mod config;
pub mod encryption;
pub mod error;
pub mod magic;
pub mod model;
pub mod naming;
pub mod parquet;
pub mod progress;
pub mod recover;
pub mod runtime;
pub mod store;
pub mod uploads;
pub mod uri;
pub mod verify;

pub use checkpoint::{AtomicWriter, CheckpointFs, Entry, Reader};
pub use commit::{CommitReport, Job};
pub use config::Conf;
pub use error::{Error, ErrorKind, Result};
pub use magic::{MagicFile, MagicWriter};
pub use model::PendingSet;

/// The engine's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the engine was built from (`build.rs`; "unknown" outside a checkout).
pub const REVISION: &str = env!("SEALCOMMIT_REVISION");
