//! A minimal stderr logger for the engine's `log` records (Spark captures executor stderr).
//! Level from `SEALCOMMIT_LOG` (error, warn, info, debug; default warn). Secrets never reach
//! log records: the engine formats only names, keys and ids.

use log::{Level, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("sealcommit")
    }
    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {} {}", humantime_now(), r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn humantime_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("[sealcommit {}.{:03}]", d.as_secs(), d.subsec_millis())
}

static LOGGER: Stderr = Stderr;

pub fn init() {
    let level = match std::env::var("SEALCOMMIT_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => Level::Error,
        "info" => Level::Info,
        "debug" | "trace" => Level::Debug,
        _ => Level::Warn,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level.to_level_filter());
    }
}
