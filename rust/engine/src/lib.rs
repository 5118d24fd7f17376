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
pub mod secrets;
pub mod settings;
pub mod store;
pub mod target;
pub mod tls;
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

    /// The engine's modules from the bottom up. A module may use modules of lower layers and
    /// of its own group only; so there is no cycle between groups, and a module's imports show
    /// where it stands. A new module must be placed here.
    const LAYERS: &[&[&str]] = &[
        &["error", "secrets", "naming", "progress", "parquet"],
        &["uri", "runtime", "tls"],
        &["config"],
        &["encryption"],
        &["settings", "model", "store"],
        &["target"],
        &["magic", "checkpoint"],
        &["commit", "recover"],
        &["uploads", "verify"],
    ];

    /// The engine modules (`crate::<name>`) that `text` refers to, outside its unit tests.
    fn uses(text: &str) -> std::collections::BTreeSet<String> {
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
        code.match_indices("crate::")
            .map(|(at, m)| {
                code[at + m.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|name| name.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            .collect()
    }

    #[test]
    fn modules_use_only_lower_layers() {
        let layer_of = |m: &str| LAYERS.iter().position(|group| group.contains(&m));
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        let mut seen = 0;
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("engine sources") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                // The top-level module a file belongs to: `store.rs` or `protocol/task.rs`.
                let rel = path.strip_prefix(&src).expect("under src");
                let Some(module) = rel.iter().next().and_then(|c| c.to_str()) else {
                    continue;
                };
                let module = module.trim_end_matches(".rs");
                if module == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source");
                let Some(mine) = layer_of(module) else {
                    wrong.push(format!("{module} is in no layer"));
                    continue;
                };
                seen += 1;
                for used in uses(&text) {
                    match layer_of(&used) {
                        Some(l) if l < mine || used == module => {}
                        Some(l) if l == mine => {}
                        _ => wrong.push(format!("{} uses {used}", rel.display())),
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken: {wrong:?}");
        assert!(seen >= 15, "found only {seen} modules");
    }
}
