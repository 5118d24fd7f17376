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

/// Every module that writes `log` records. The JVM binding gives each its own SLF4J logger
/// (`io.sealcommit.engine.<module>`) and reads their levels ahead of time, so a module missing
/// here would log under the parent logger only; a unit test keeps the list complete.
pub const LOG_MODULES: &[&str] = &["checkpoint", "commit", "magic", "recover", "store"];

#[cfg(test)]
mod tests {
    #[test]
    fn every_logging_module_is_listed() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut logging = Vec::new();
        for entry in std::fs::read_dir(&src).expect("engine sources") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            if text.contains("log::") && path.file_stem().is_some_and(|s| s != "lib") {
                logging.push(
                    path.file_stem()
                        .expect("stem")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        logging.sort();
        let missing: Vec<_> = logging
            .iter()
            .filter(|m| !super::LOG_MODULES.contains(&m.as_str()))
            .collect();
        assert!(missing.is_empty(), "add {missing:?} to LOG_MODULES");
        assert!(logging.len() >= 5, "found only {logging:?}");
    }
}
