//! JNI exports for `io.sealcommit.Native`. No logic lives here: each export converts arguments,
//! calls the engine on the shared runtime, and converts the result. Every export runs inside
//! `guard`, which turns an engine error into a Java exception (`FileNotFoundException`,
//! `FileAlreadyExistsException`, or `io.sealcommit.SealCommitException`, all `IOException`s)
//! and a panic into a `RuntimeException`, so nothing unwinds into the JVM.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::{jlong, jstring};
use jni::JNIEnv;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::{Conf, Error, ErrorKind, Job, PendingSet};

mod logger;

enum BridgeError {
    Engine(Error),
    Jni(jni::errors::Error),
    Closed,
}

impl From<Error> for BridgeError {
    fn from(e: Error) -> Self {
        BridgeError::Engine(e)
    }
}

impl From<jni::errors::Error> for BridgeError {
    fn from(e: jni::errors::Error) -> Self {
        BridgeError::Jni(e)
    }
}

type BResult<T> = Result<T, BridgeError>;

fn throw(env: &mut JNIEnv, err: BridgeError) {
    // A pending Java exception (from a failed JNI call) is already the right thing to surface.
    if env.exception_check().unwrap_or(false) {
        return;
    }
    let (class, msg) = match err {
        BridgeError::Engine(e) => {
            let class = match e.kind() {
                ErrorKind::NotFound => "java/io/FileNotFoundException",
                ErrorKind::AlreadyExists => "org/apache/hadoop/fs/FileAlreadyExistsException",
                ErrorKind::Other => "io/sealcommit/SealCommitException",
            };
            (class, e.to_string())
        }
        BridgeError::Jni(e) => (
            "io/sealcommit/SealCommitException",
            format!("JNI call failed: {e}"),
        ),
        BridgeError::Closed => (
            "java/lang/IllegalStateException",
            "sealcommit job handle used after close".to_string(),
        ),
    };
    if env.throw_new(class, &msg).is_err() {
        // The class may be missing from the classpath (e.g. Hadoop's exception outside Hadoop).
        let _ = env.exception_clear();
        let _ = env.throw_new("java/io/IOException", &msg);
    }
}

/// Runs an export body; errors become Java exceptions, panics become `RuntimeException`s.
fn guard<T>(env: &mut JNIEnv, default: T, body: impl FnOnce(&mut JNIEnv) -> BResult<T>) -> T {
    match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            throw(env, e);
            default
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            if !env.exception_check().unwrap_or(false) {
                let _ = env.throw_new(
                    "java/lang/RuntimeException",
                    format!(
                        "sealcommit native code panicked (this is a bug, please report it): {what}"
                    ),
                );
            }
            default
        }
    }
}

fn string(env: &mut JNIEnv, s: &JString) -> BResult<String> {
    Ok(env.get_string(s)?.into())
}

fn strings(env: &mut JNIEnv, arr: &JObjectArray) -> BResult<Vec<String>> {
    if arr.is_null() {
        return Ok(Vec::new());
    }
    let n = env.get_array_length(arr)?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let o = env.get_object_array_element(arr, i)?;
        let s = JString::from(o);
        out.push(string(env, &s)?);
    }
    Ok(out)
}

fn jstr(env: &mut JNIEnv, s: &str) -> BResult<jstring> {
    Ok(env.new_string(s)?.into_raw())
}

fn job<'a>(handle: jlong) -> BResult<&'a Job> {
    if handle == 0 {
        return Err(BridgeError::Closed);
    }
    // SAFETY: handles are created by `jobOpen` from `Box::into_raw` and freed only by
    // `jobClose`; the Java owner (`SealJob`) zeroes its handle on close and never uses it after.
    Ok(unsafe { &*(handle as *const Job) })
}

fn pendingsets(env: &mut JNIEnv, arr: &JObjectArray) -> BResult<Vec<PendingSet>> {
    let mut out = Vec::new();
    for s in strings(env, arr)? {
        out.push(PendingSet::from_json(&s)?);
    }
    Ok(out)
}

/// `long jobOpen(String[] conf, String dest, String jobId)`: `conf` is key, value, key, value…
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobOpen(
    mut env: JNIEnv,
    _class: JClass,
    conf: JObjectArray,
    dest: JString,
    job_id: JString,
) -> jlong {
    guard(&mut env, 0, |env| {
        logger::init();
        let kv = strings(env, &conf)?;
        let conf: Conf = kv
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        let dest = string(env, &dest)?;
        let job_id = string(env, &job_id)?;
        let job = block_on(Job::open(&conf, &dest, &job_id))??;
        Ok(Box::into_raw(Box::new(job)) as jlong)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobClose(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        if handle != 0 {
            // SAFETY: see `job`; the Java owner calls close once and zeroes the handle first.
            drop(unsafe { Box::from_raw(handle as *mut Job) });
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobSetup(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| Ok(block_on(job(handle)?.setup())??))
}

/// `String taskCommit(long job, String attempt, int attemptNumber, String[] localFiles,
/// String[] destUris)`:
/// returns the pendingset JSON.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskCommit(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    attempt: JString,
    attempt_number: jni::sys::jint,
    locals: JObjectArray,
    dests: JObjectArray,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let job = job(handle)?;
        let attempt = string(env, &attempt)?;
        let locals = strings(env, &locals)?;
        let dests = strings(env, &dests)?;
        let files = locals.into_iter().map(PathBuf::from).zip(dests).collect();
        let set = block_on(job.commit_task(&attempt, attempt_number.max(0) as u32, files))??;
        jstr(env, &set.to_json())
    })
}

/// `void abortUploads(long job, String[] pendingsets)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_abortUploads(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    sets: JObjectArray,
) {
    guard(&mut env, (), |env| {
        let job = job(handle)?;
        let uploads: Vec<_> = pendingsets(env, &sets)?
            .into_iter()
            .flat_map(|p| p.uploads)
            .collect();
        Ok(block_on(job.abort_uploads(&uploads))??)
    })
}

/// `String jobCommit(long job, String[] pendingsets, String[] replacePaths,
/// boolean dynamicPartitions)`: returns the commit report JSON.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobCommit(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    sets: JObjectArray,
    replace: JObjectArray,
    dynamic_partitions: jni::sys::jboolean,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let job = job(handle)?;
        let sets = pendingsets(env, &sets)?;
        let replace = strings(env, &replace)?;
        let report = block_on(job.commit_job(sets, replace, dynamic_partitions != 0))??;
        let json = serde_json::to_string(&report).unwrap_or_default();
        jstr(env, &json)
    })
}

/// `void jobAbort(long job, String[] pendingsets)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobAbort(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    sets: JObjectArray,
) {
    guard(&mut env, (), |env| {
        let job = job(handle)?;
        let sets = pendingsets(env, &sets)?;
        Ok(block_on(job.abort_job(sets))??)
    })
}

/// `String version()`: lets the Java side check it loaded a matching library.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_version(
    mut env: JNIEnv,
    _class: JClass,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        jstr(env, env!("CARGO_PKG_VERSION"))
    })
}
