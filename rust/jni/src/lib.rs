//! JNI exports for `io.sealcommit.Native`. No logic lives here: each export converts arguments,
//! calls the engine on the shared runtime, and converts the result. Every export runs inside
//! `guard`, which turns an engine error into a Java exception (`FileNotFoundException`,
//! `FileAlreadyExistsException`, or `io.sealcommit.SealCommitException`, all `IOException`s)
//! and a panic into a `RuntimeException`, so nothing unwinds into the JVM.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use jni::objects::{JByteArray, JClass, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, jlongArray, jobjectArray, jstring};
use jni::JNIEnv;
use sealcommit_engine::config::Mode;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::{
    AtomicWriter, CheckpointFs, Conf, Entry, Error, ErrorKind, Job, MagicFile, MagicWriter,
    PendingSet, Reader,
};

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
            "sealcommit handle used after close".to_string(),
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

/// `conf` is key, value, key, value… (the `fs.s3a.*` and `sealcommit.*` entries).
fn conf_of(env: &mut JNIEnv, conf: &JObjectArray) -> BResult<Conf> {
    logger::refresh(env);
    let kv = strings(env, conf)?;
    Ok(kv
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect())
}

fn string_array(env: &mut JNIEnv, items: &[String]) -> BResult<jobjectArray> {
    let arr = env.new_object_array(items.len() as i32, "java/lang/String", JString::default())?;
    for (i, item) in items.iter().enumerate() {
        let s = env.new_string(item)?;
        env.set_object_array_element(&arr, i as i32, s)?;
    }
    Ok(arr.into_raw())
}

/// `kind:size:modified-millis:uri`, kind `f` (file) or `d` (directory).
fn entry_line(e: &Entry) -> String {
    let kind = if e.is_dir { 'd' } else { 'f' };
    format!("{kind}:{}:{}:{}", e.size, e.modified_ms, e.uri)
}

/// Borrows the object behind a handle made by `Box::into_raw`.
///
/// SAFETY (for callers): the handle comes from the matching open/create export and is freed
/// only by the matching close export, which the Java owner (`io.sealcommit.NativeHandle`) calls
/// once, after every call in flight on the handle has returned, and never calls on it after.
unsafe fn borrow<'a, T>(handle: jlong) -> BResult<&'a mut T> {
    if handle == 0 {
        return Err(BridgeError::Closed);
    }
    Ok(unsafe { &mut *(handle as *mut T) })
}

/// Takes back ownership of a handle (see `borrow`).
unsafe fn take<T>(handle: jlong) -> Option<Box<T>> {
    (handle != 0).then(|| unsafe { Box::from_raw(handle as *mut T) })
}

/// The JVM's bytes are `i8`; the engine's are `u8`. Same size and alignment, every bit pattern
/// valid in both, so a slice can be viewed as the other without copying.
fn as_unsigned(b: &[i8]) -> &[u8] {
    // SAFETY: see above; the length and lifetime are the input's.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), b.len()) }
}

fn as_signed(b: &[u8]) -> &[i8] {
    // SAFETY: as in `as_unsigned`.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

fn as_signed_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: as in `as_unsigned`; the borrow is exclusive for the returned lifetime.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<i8>(), b.len()) }
}

fn jstr(env: &mut JNIEnv, s: &str) -> BResult<jstring> {
    Ok(env.new_string(s)?.into_raw())
}

/// The jobs `jobOpen` made that `jobClose` has not freed, and counts for `jobCounts`. A
/// tripwire behind the Java owner's guarantee (`NativeHandle`: no call during or after the
/// free): a job export on a handle that is not live is refused and counted instead of reading
/// freed memory, and a second free is refused instead of freeing twice.
#[derive(Default)]
struct Jobs {
    live: HashSet<jlong>,
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

fn job<'a>(handle: jlong) -> BResult<&'a Job> {
    let mut jobs = jobs();
    if !jobs.live.contains(&handle) {
        if handle != 0 {
            jobs.refused += 1;
        }
        return Err(BridgeError::Closed);
    }
    // SAFETY: made by `jobOpen` from `Box::into_raw` and not yet freed by `jobClose`, which the
    // Java owner (`SealJob`) does not call while this call runs (see `borrow`).
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
        let conf = conf_of(env, &conf)?;
        let dest = string(env, &dest)?;
        let job_id = string(env, &job_id)?;
        let job = block_on(Job::open(&conf, &dest, &job_id))??;
        let handle = Box::into_raw(Box::new(job)) as jlong;
        let mut jobs = jobs();
        jobs.live.insert(handle);
        jobs.opened += 1;
        Ok(handle)
    })
}

/// `long[] jobCounts()`: jobs opened, jobs freed, and job calls refused because their handle
/// was not live, so far in this process (a test sees every job freed exactly once and no call
/// on a freed one; a leak shows as opened minus freed).
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobCounts(
    mut env: JNIEnv,
    _class: JClass,
) -> jlongArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let counts = {
            let jobs = jobs();
            [jobs.opened, jobs.freed, jobs.refused]
        };
        let arr = env.new_long_array(counts.len() as i32)?;
        env.set_long_array_region(&arr, 0, &counts)?;
        Ok(arr.into_raw())
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
            let mut jobs = jobs();
            if !jobs.live.remove(&handle) {
                jobs.refused += 1;
                return Err(BridgeError::Closed);
            }
            jobs.freed += 1;
            drop(jobs);
            // SAFETY: live until now, and no longer reachable through `job`; the Java owner
            // frees once, with no call in flight (see `borrow`).
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

/// A task's `(local file, destination uri)` pairs from the two parallel arrays Java passes.
fn task_files(
    env: &mut JNIEnv,
    locals: &JObjectArray,
    dests: &JObjectArray,
) -> BResult<Vec<(PathBuf, String)>> {
    let locals = strings(env, locals)?;
    let dests = strings(env, dests)?;
    if locals.len() != dests.len() {
        return Err(Error::config(
            "task files",
            format!(
                "{} local files but {} destinations",
                locals.len(),
                dests.len()
            ),
        )
        .into());
    }
    Ok(locals.into_iter().map(PathBuf::from).zip(dests).collect())
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
        let files = task_files(env, &locals, &dests)?;
        let set = block_on(job.commit_task(&attempt, attempt_number.max(0) as u32, files))??;
        jstr(env, &set.to_json()?)
    })
}

/// `String taskCommitSaved(long job, String taskId, String attempt, int attemptNumber,
/// String[] localFiles, String[] destUris)`: task commit for committers without a channel to the
/// driver (MapReduce): intent, uploads and pendingset saved on the store; returns the pendingset.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskCommitSaved(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    task: JString,
    attempt: JString,
    attempt_number: jni::sys::jint,
    locals: JObjectArray,
    dests: JObjectArray,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let job = job(handle)?;
        let task = string(env, &task)?;
        let attempt = string(env, &attempt)?;
        let files = task_files(env, &locals, &dests)?;
        let set =
            block_on(job.commit_task_saved(&task, &attempt, attempt_number.max(0) as u32, files))??;
        jstr(env, &set.to_json()?)
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
        let json =
            serde_json::to_string(&report).map_err(|e| Error::serialize("commit report", e))?;
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

/// `String revision()`: the git revision the engine was built from.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_revision(
    mut env: JNIEnv,
    _class: JClass,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        jstr(env, sealcommit_engine::REVISION)
    })
}

/// `String streamJobId(String run, long batch)`: the engine job id of a file sink micro-batch.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamJobId(
    mut env: JNIEnv,
    _class: JClass,
    run: JString,
    batch: jlong,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let run = string(env, &run)?;
        let batch = u64::try_from(batch)
            .map_err(|_| Error::config("batch", format!("batch id {batch} is negative")))?;
        jstr(env, &sealcommit_engine::naming::stream_job_id(&run, batch))
    })
}

/// `String outputName(String prefix, int split, String jobId, String suffix)`: the name of a
/// task's output file; the engine names files so it can recognise its own (`naming`).
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_outputName(
    mut env: JNIEnv,
    _class: JClass,
    prefix: JString,
    split: jint,
    job_id: JString,
    suffix: JString,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let (prefix, job_id, suffix) = (
            string(env, &prefix)?,
            string(env, &job_id)?,
            string(env, &suffix)?,
        );
        let split = u32::try_from(split)
            .map_err(|_| Error::config("split", format!("task split {split} is negative")))?;
        let name = sealcommit_engine::naming::output_name(&prefix, split, &job_id, &suffix);
        jstr(env, &name)
    })
}

/// `String[] streamCommit(long job, String[] pendingsets)`: completes a streaming batch's
/// uploads; returns the files as `f:size:modified-millis:uri`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamCommit(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    sets: JObjectArray,
) -> jobjectArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let job = job(handle)?;
        let sets = pendingsets(env, &sets)?;
        let files = block_on(job.commit_stream(sets))??;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let lines: Vec<String> = files
            .iter()
            .map(|f| {
                entry_line(&Entry {
                    uri: format!("s3a://{}/{}", job.dest.bucket, f.key),
                    size: f.size,
                    modified_ms: now,
                    is_dir: false,
                })
            })
            .collect();
        string_array(env, &lines)
    })
}

/// `void streamDiscard(long job, String[] uris)`: deletes files a lost batch completed.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamDiscard(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    uris: JObjectArray,
) {
    guard(&mut env, (), |env| {
        let job = job(handle)?;
        let mut keys = Vec::new();
        for u in strings(env, &uris)? {
            keys.push(sealcommit_engine::uri::S3Path::parse(&u)?.key);
        }
        Ok(block_on(job.discard(&keys))??)
    })
}

/// `int streamAbortStrays(long job, long batch)`: aborts leftover uploads of batches <= batch.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamAbortStrays(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    batch: jlong,
) -> jint {
    guard(&mut env, 0, |_| {
        let job = job(handle)?;
        Ok(block_on(job.abort_stream_strays(batch.max(0) as u64))?? as jint)
    })
}

/// `long cpOpen(String[] conf, String root)`: checkpoint file operations under `root`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpOpen(
    mut env: JNIEnv,
    _class: JClass,
    conf: JObjectArray,
    root: JString,
) -> jlong {
    guard(&mut env, 0, |env| {
        let conf = conf_of(env, &conf)?;
        let root = string(env, &root)?;
        let fs = block_on(CheckpointFs::open(&conf, &root))??;
        Ok(Box::into_raw(Box::new(Arc::new(fs))) as jlong)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpClose(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    // SAFETY: see `borrow`; open writers and readers hold their own reference.
    guard(&mut env, (), |_| {
        drop(unsafe { take::<Arc<CheckpointFs>>(handle) });
        Ok(())
    })
}

fn checkpoint_fs<'a>(handle: jlong) -> BResult<&'a Arc<CheckpointFs>> {
    // SAFETY: see `borrow`; only shared access is taken.
    unsafe { borrow::<Arc<CheckpointFs>>(handle) }.map(|fs| &*fs)
}

/// `String[] cpList(long fs, String dir)`: entries as `kind:size:modified-millis:uri`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpList(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    dir: JString,
) -> jobjectArray {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let fs = checkpoint_fs(handle)?;
        let dir = string(env, &dir)?;
        let entries = block_on(fs.list(&dir))??;
        let lines: Vec<String> = entries.iter().map(entry_line).collect();
        string_array(env, &lines)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpExists(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    path: JString,
) -> jboolean {
    guard(&mut env, 0, |env| {
        let fs = checkpoint_fs(handle)?;
        let path = string(env, &path)?;
        Ok(block_on(fs.exists(&path))?? as jboolean)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpDelete(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    path: JString,
) {
    guard(&mut env, (), |env| {
        let fs = checkpoint_fs(handle)?;
        let path = string(env, &path)?;
        Ok(block_on(fs.delete(&path))??)
    })
}

/// `long cpCreate(long fs, String path, boolean overwrite)`: an atomic writer; nothing is sent
/// until `cpCommit`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCreate(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    path: JString,
    overwrite: jboolean,
) -> jlong {
    guard(&mut env, 0, |env| {
        let fs = checkpoint_fs(handle)?;
        let path = string(env, &path)?;
        let w = fs.create(&path, overwrite != 0)?;
        Ok(Box::into_raw(Box::new(w)) as jlong)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpWrite(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    data: JByteArray,
    off: jint,
    len: jint,
) {
    guard(&mut env, (), |env| {
        // SAFETY: see `borrow`.
        let w = unsafe { borrow::<AtomicWriter>(handle) }?;
        let mut buf = vec![0i8; len.max(0) as usize];
        env.get_byte_array_region(&data, off, &mut buf)?;
        Ok(w.write(as_unsigned(&buf))?)
    })
}

/// `void cpCommit(long writer)`: publishes the file and frees the writer, whatever the outcome.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCommit(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        // SAFETY: see `borrow`; the Java owner makes this its one freeing call, as `close`.
        let w = unsafe { take::<AtomicWriter>(handle) }.ok_or(BridgeError::Closed)?;
        Ok(block_on(w.commit())??)
    })
}

/// `void cpCancel(long writer)`: discards the write and frees the writer.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCancel(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        // SAFETY: see `cpCommit`.
        if let Some(w) = unsafe { take::<AtomicWriter>(handle) } {
            w.cancel();
        }
        Ok(())
    })
}

/// `long cpOpenRead(long fs, String path)`: a reader; `FileNotFoundException` if missing.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpOpenRead(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    path: JString,
) -> jlong {
    guard(&mut env, 0, |env| {
        let fs = checkpoint_fs(handle)?;
        let path = string(env, &path)?;
        let r = block_on(fs.open_read(&path))??;
        Ok(Box::into_raw(Box::new(r)) as jlong)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpSize(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) -> jlong {
    guard(&mut env, 0, |_| {
        // SAFETY: see `borrow`.
        Ok(unsafe { borrow::<Reader>(handle) }?.size() as jlong)
    })
}

/// `int cpRead(long reader, long pos, byte[] buf, int off, int len)`: -1 at the end.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpRead(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    pos: jlong,
    buf: JByteArray,
    off: jint,
    len: jint,
) -> jint {
    guard(&mut env, -1, |env| {
        // SAFETY: see `borrow`.
        let r = unsafe { borrow::<Reader>(handle) }?;
        let mut tmp = vec![0u8; len.max(0) as usize];
        let n = block_on(r.read_at(pos.max(0) as u64, &mut tmp))??;
        if n == 0 {
            return Ok(-1);
        }
        env.set_byte_array_region(&buf, off, as_signed(&tmp[..n]))?;
        Ok(n as jint)
    })
}

#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCloseRead(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        // SAFETY: see `borrow`; the Java owner makes this its one freeing call, as `close`.
        drop(unsafe { take::<Reader>(handle) });
        Ok(())
    })
}

/// `boolean jobMagic(long job)`: whether the job's tasks write in magic mode.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobMagic(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) -> jboolean {
    guard(&mut env, 0, |_| {
        Ok((job(handle)?.settings.commit.mode == Mode::Magic) as jboolean)
    })
}

/// `long magicOpen(long job, String uri)`: a writer streaming into `uri`'s multipart upload.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicOpen(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    uri: JString,
) -> jlong {
    guard(&mut env, 0, |env| {
        let uri = string(env, &uri)?;
        let writer = job(handle)?.magic_writer(&uri)?;
        Ok(Box::into_raw(Box::new(writer)) as jlong)
    })
}

/// `void magicWrite(long writer, byte[] data, int off, int len)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicWrite(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    data: JByteArray,
    off: jint,
    len: jint,
) {
    guard(&mut env, (), |env| {
        // SAFETY: see `borrow`.
        let w = unsafe { borrow::<MagicWriter>(handle) }?;
        let (mut at, end) = (
            off.max(0) as usize,
            off.max(0) as usize + len.max(0) as usize,
        );
        // One copy: from the Java array straight into the part being filled.
        while at < end {
            let room = w.room(end - at);
            let n = room.len();
            env.get_byte_array_region(&data, at as i32, as_signed_mut(room))?;
            block_on(w.advance())??;
            at += n;
        }
        Ok(())
    })
}

/// `String magicFinish(long writer)`: uploads the rest, leaves the upload pending and returns
/// the file (JSON) for the task commit. Frees the writer, whatever the outcome.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicFinish(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: see `borrow`; the Java owner makes this its one freeing call, as `close`.
        let w = unsafe { take::<MagicWriter>(handle) }.ok_or(BridgeError::Closed)?;
        let file = block_on(w.finish())??;
        jstr(env, &file.to_json()?)
    })
}

/// `void magicAbort(long writer)`: aborts the upload; frees the writer.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicAbort(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| {
        // SAFETY: as in `magicFinish`.
        if let Some(w) = unsafe { take::<MagicWriter>(handle) } {
            block_on(w.abort())?;
        }
        Ok(())
    })
}

fn magic_files(env: &mut JNIEnv, arr: &JObjectArray) -> BResult<Vec<MagicFile>> {
    let mut out = Vec::new();
    for s in strings(env, arr)? {
        out.push(MagicFile::from_json(&s)?);
    }
    Ok(out)
}

/// `String magicTaskCommit(long job, String attempt, int attemptNumber, String[] files)`:
/// the pendingset of a magic-mode task.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicTaskCommit(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    attempt: JString,
    attempt_number: jint,
    files: JObjectArray,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let job = job(handle)?;
        let attempt = string(env, &attempt)?;
        let files = magic_files(env, &files)?;
        let set = block_on(job.commit_magic_task(&attempt, attempt_number.max(0) as u32, files))??;
        jstr(env, &set.to_json()?)
    })
}

/// `void magicAbortFiles(long job, String[] files)`: aborts the uploads of finished files.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicAbortFiles(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    files: JObjectArray,
) {
    guard(&mut env, (), |env| {
        let job = job(handle)?;
        let uploads: Vec<_> = magic_files(env, &files)?
            .into_iter()
            .map(|f| f.upload)
            .collect();
        Ok(block_on(job.abort_uploads(&uploads))??)
    })
}

/// `void taskSave(long job, String taskId, String pendingSet)`: saves the pendingset on the store.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskSave(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
    task: JString,
    set: JString,
) {
    guard(&mut env, (), |env| {
        let job = job(handle)?;
        let task = string(env, &task)?;
        let set = PendingSet::from_json(&string(env, &set)?)?;
        Ok(block_on(job.save_pendingset(&task, &set))??)
    })
}

/// `String jobCommitSaved(long job)`: commits the saved pendingsets; returns the report JSON.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobCommitSaved(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, std::ptr::null_mut(), |env| {
        let report = block_on(job(handle)?.commit_saved())??;
        let json =
            serde_json::to_string(&report).map_err(|e| Error::serialize("commit report", e))?;
        jstr(env, &json)
    })
}

/// `void jobAbortSaved(long job)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobAbortSaved(
    mut env: JNIEnv,
    _class: JClass,
    handle: jlong,
) {
    guard(&mut env, (), |_| Ok(block_on(job(handle)?.abort_saved())??))
}
