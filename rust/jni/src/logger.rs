//! The engine's `log` records, sent to SLF4J (Spark's log4j2) under `io.sealcommit.engine.<module>`.
//!
//! Levels come from the logging configuration: at every open (job, checkpoint, magic writer)
//! `refresh` asks `io.sealcommit.EngineLog` which level each engine module's logger has and keeps
//! the answers in atomics, so a disabled record costs no JNI call. An enabled record is formatted
//! here and handed to SLF4J from whatever thread logged it (tokio workers attach for the call and
//! detach after it). Nothing goes to raw stderr. Secrets never reach log records: the engine
//! formats only names, keys and ids.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use jni::objects::{GlobalRef, JClass, JObject, JStaticMethodID, JValue};
use jni::signature::{Primitive, ReturnType};
use jni::{JNIEnv, JavaVM};
use log::{Level, LevelFilter, Log, Metadata, Record};
use sealcommit_engine::{log_module, LOG_MODULES};

/// The parent logger; a record from a module missing from `LOG_MODULES` goes here.
const PARENT: &str = "io.sealcommit.engine";
const SINK_CLASS: &str = "io/sealcommit/EngineLog";

/// What `EngineLog.level` answers: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
fn filter_of(level: i32) -> LevelFilter {
    match level {
        i32::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn code_of(level: Level) -> i32 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

/// Index 0: the parent logger; then one per engine module, in `LOG_MODULES` order.
const SLOTS: usize = LOG_MODULES.len() + 1;
static LEVELS: [AtomicU8; SLOTS] = [const { AtomicU8::new(0) }; SLOTS];

struct Sink {
    vm: JavaVM,
    class: GlobalRef,
    level: JStaticMethodID,
    log: JStaticMethodID,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// The engine logger a record goes to (`sealcommit_engine::store::x` → `store`,
/// `sealcommit_engine::protocol::task` → `commit`; `sealcommit_engine::log_module`).
fn slot_of(target: &str) -> usize {
    log_module(target)
        .and_then(|m| LOG_MODULES.iter().position(|known| *known == m))
        .map_or(0, |i| i + 1)
}

fn logger_name(slot: usize) -> String {
    match slot {
        0 => PARENT.to_string(),
        i => format!("{PARENT}.{}", LOG_MODULES[i - 1]),
    }
}

struct Slf4j;

impl Log for Slf4j {
    fn enabled(&self, m: &Metadata) -> bool {
        m.target().starts_with("sealcommit")
            && m.level()
                <= filter_of(i32::from(
                    LEVELS[slot_of(m.target())].load(Ordering::Relaxed),
                ))
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let Some(sink) = SINK.get() else { return };
        let name = logger_name(slot_of(r.target()));
        let message = r.args().to_string();
        // A thread the JVM already knows (a JNI call) keeps its attachment; a tokio worker is
        // attached for this one call only (a permanent attach would hold up JVM exit).
        let Ok(mut env) = sink.vm.attach_current_thread() else {
            return;
        };
        // No Java call may run while an exception is pending; the record is dropped then.
        if env.exception_check().unwrap_or(true) {
            return;
        }
        let _ = env.with_local_frame(4, |env| -> jni::errors::Result<()> {
            let name = env.new_string(&name)?;
            let message = env.new_string(&message)?;
            let class = <&JClass>::from(sink.class.as_obj());
            // SAFETY: `log` is `static void log(String, int, String)` on `class`, looked up in init.
            let result = unsafe {
                env.call_static_method_unchecked(
                    class,
                    sink.log,
                    ReturnType::Primitive(Primitive::Void),
                    &[
                        JValue::Object(&name).as_jni(),
                        JValue::Int(code_of(r.level())).as_jni(),
                        JValue::Object(&message).as_jni(),
                    ],
                )
            };
            if result.is_err() {
                let _ = env.exception_clear();
            }
            Ok(())
        });
    }

    fn flush(&self) {}
}

static LOGGER: Slf4j = Slf4j;

/// Installs the SLF4J sink once per process (from a JNI call, whose class loader sees
/// `io.sealcommit.EngineLog`), then reads the current levels.
pub fn refresh(env: &mut JNIEnv) {
    if SINK.get().is_none() {
        match sink(env) {
            Ok(s) => {
                let _ = SINK.set(s);
                let _ = log::set_logger(&LOGGER);
            }
            Err(_) => {
                // Without the sink the engine stays silent rather than writing to raw stderr.
                let _ = env.exception_clear();
                return;
            }
        }
    }
    let Some(sink) = SINK.get() else { return };
    let mut most = LevelFilter::Off;
    for (slot, stored) in LEVELS.iter().enumerate() {
        let level = level_of(env, sink, &logger_name(slot)).unwrap_or_else(|| {
            let _ = env.exception_clear();
            0
        });
        stored.store(level.clamp(0, 5) as u8, Ordering::Relaxed);
        most = most.max(filter_of(level));
    }
    log::set_max_level(most);
}

fn sink(env: &mut JNIEnv) -> jni::errors::Result<Sink> {
    let class = env.find_class(SINK_CLASS)?;
    let level = env.get_static_method_id(&class, "level", "(Ljava/lang/String;)I")?;
    let log =
        env.get_static_method_id(&class, "log", "(Ljava/lang/String;ILjava/lang/String;)V")?;
    Ok(Sink {
        vm: env.get_java_vm()?,
        class: env.new_global_ref(JObject::from(class))?,
        level,
        log,
    })
}

fn level_of(env: &mut JNIEnv, sink: &Sink, name: &str) -> Option<i32> {
    env.with_local_frame(2, |env| -> jni::errors::Result<i32> {
        let name = env.new_string(name)?;
        let class = <&JClass>::from(sink.class.as_obj());
        // SAFETY: `level` is `static int level(String)` on `class`, looked up in `sink`.
        let v = unsafe {
            env.call_static_method_unchecked(
                class,
                sink.level,
                ReturnType::Primitive(Primitive::Int),
                &[JValue::Object(&name).as_jni()],
            )
        }?;
        v.i()
    })
    .ok()
}
