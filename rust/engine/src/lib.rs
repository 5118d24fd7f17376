//! sealcommit engine: commits Spark and Hadoop output to S3-compatible stores with multipart
//! uploads completed at job commit (no rename, no copy), with the requested server-side
//! encryption applied per request and verified on every object.
//!
//! This crate holds all logic and has no JNI dependency; `sealcommit-jni` exposes it to the JVM
//! and `sealcommit-cli` to operators. See `docs/ARCHITECTURE.md`.

pub mod attempt;
pub mod checkpoint;
pub mod config;
pub mod encryption;
pub mod error;
pub mod limiter;
pub mod magic;
pub mod model;
pub mod naming;
pub mod parquet;
pub mod progress;
pub mod protocol;
pub mod runtime;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod target;
pub mod tls;
pub mod uploads;
pub mod uri;
pub mod verify;

pub use attempt::{ClosedFile, TaskAttempt};
pub use checkpoint::{AtomicWriter, CheckpointFs, Entry, Reader};
pub use config::Conf;
pub use error::{Error, ErrorKind, Result};
pub use magic::MagicWriter;
pub use model::PendingSet;
pub use protocol::{CommitReport, Job};

/// The engine's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the engine was built from (`build.rs`; "unknown" outside a checkout).
pub const REVISION: &str = env!("SEALCOMMIT_REVISION");

/// The engine's loggers. The JVM binding gives each its own SLF4J logger
/// (`io.sealcommit.engine.<name>`) and reads their levels ahead of time; [`log_module`] says
/// which one a record goes to, so a module it maps to none would log under the parent logger
/// only; a unit test keeps the list complete.
pub const LOG_MODULES: &[&str] = &["checkpoint", "commit", "magic", "recover", "store"];

/// Modules whose records go to a logger of another name (most specific first): the protocol's
/// files keep the loggers they had as the modules `commit` and `recover`; a task attempt's
/// background uploads (`attempt`) log with task commit.
const LOG_RENAMED: &[(&str, &str)] = &[
    ("attempt", "commit"),
    ("protocol::lease", "recover"),
    ("protocol::recover", "recover"),
    ("protocol", "commit"),
];

/// The logger (one of [`LOG_MODULES`]) of a `log` record's target, e.g.
/// `sealcommit_engine::protocol::job_commit` → `commit`; `None` for anything else.
pub fn log_module(target: &str) -> Option<&'static str> {
    let path = target.strip_prefix("sealcommit_engine::")?;
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    };
    if let Some((_, name)) = LOG_RENAMED.iter().find(|(prefix, _)| under(prefix)) {
        return Some(name);
    }
    let first = path.split("::").next()?;
    LOG_MODULES.iter().find(|m| **m == first).copied()
}

#[cfg(test)]
mod tests {
    /// Every engine source file under `src`, with its module path (`store`, `protocol::task`).
    fn sources() -> Vec<(String, std::path::PathBuf)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("engine sources") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(&src)
                    .expect("under src")
                    .with_extension("");
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                if parts != ["lib"] {
                    out.push((parts.join("::"), path));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_logging_module_is_listed() {
        let mut logging = Vec::new();
        for (module, path) in sources() {
            let text = std::fs::read_to_string(&path).expect("source");
            if text.contains("log::") {
                logging.push(module);
            }
        }
        let missing: Vec<_> = logging
            .iter()
            .filter(|m| super::log_module(&format!("sealcommit_engine::{m}")).is_none())
            .collect();
        assert!(missing.is_empty(), "add {missing:?} to LOG_MODULES");
        assert!(logging.len() >= 5, "found only {logging:?}");
    }

    #[test]
    fn records_go_to_the_loggers_they_always_had() {
        for (target, logger) in [
            ("sealcommit_engine::store", Some("store")),
            ("sealcommit_engine::store::x", Some("store")),
            ("sealcommit_engine::protocol", Some("commit")),
            ("sealcommit_engine::protocol::job_commit", Some("commit")),
            ("sealcommit_engine::protocol::task", Some("commit")),
            ("sealcommit_engine::protocol::recover", Some("recover")),
            ("sealcommit_engine::protocol::lease", Some("recover")),
            ("sealcommit_engine::magic", Some("magic")),
            ("sealcommit_engine::attempt", Some("commit")),
            ("sealcommit_engine::checkpoint", Some("checkpoint")),
            ("sealcommit_engine::protocolx", None),
            ("sealcommit_engine::config", None),
            ("other::store", None),
        ] {
            assert_eq!(super::log_module(target), logger, "{target}");
        }
    }

    /// The engine's modules from the bottom up. A module may use modules of lower layers only
    /// (modules of one layer do not know each other), so there is no cycle, and a module's
    /// imports show where it stands. A new module must be placed here.
    const LAYERS: &[&[&str]] = &[
        &[
            "error", "secrets", "naming", "progress", "parquet", "limiter",
        ],
        &["uri", "runtime", "tls"],
        &["config"],
        &["encryption"],
        &["settings", "model", "store"],
        &["target", "attempt"],
        &["magic", "checkpoint"],
        &["protocol"],
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
        let mut wrong = Vec::new();
        let mut seen = 0;
        for (module, path) in sources() {
            // Files of one directory (`protocol::task`) are one module here.
            let top = module.split("::").next().unwrap_or_default().to_string();
            let Some(mine) = layer_of(&top) else {
                wrong.push(format!("{module} is in no layer"));
                continue;
            };
            seen += 1;
            let text = std::fs::read_to_string(&path).expect("source");
            for used in uses(&text) {
                match layer_of(&used) {
                    Some(l) if l < mine || used == top => {}
                    // An item of the crate root (`crate::VERSION`); every module has a layer.
                    None => {}
                    Some(_) => wrong.push(format!("{module} uses {used}")),
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken: {wrong:?}");
        assert!(seen >= 15, "found only {seen} modules");
    }
}
