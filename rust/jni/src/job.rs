//! Job exports (`io.sealcommit.SealJob`): open and close, task commit, job commit and abort,
//! and the saved-pendingset variants for committers without a channel to the driver.

use std::path::PathBuf;

use jni::objects::{JClass, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, jlongArray, jstring};
use jni::JNIEnv;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::{CommitReport, Error, Job, PendingSet};

use crate::bridge::{guard, BResult};
use crate::conv::{conf, pendingsets, string, strings};
use crate::handles::{free_job, job, job_counts, open_job};

/// `long jobOpen(String[] conf, String dest, String jobId)`: `conf` is key, value, key, value…
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobOpen(
    mut env: JNIEnv,
    _: JClass,
    conf: JObjectArray,
    dest: JString,
    job_id: JString,
) -> jlong {
    guard(&mut env, "jobOpen", |env| {
        intern_job_open(env, &conf, &dest, &job_id)
    })
}

fn intern_job_open(
    env: &mut JNIEnv,
    kv: &JObjectArray,
    dest: &JString,
    job_id: &JString,
) -> BResult<i64> {
    let conf = conf(env, kv)?;
    let dest = string(env, dest)?;
    let job_id = string(env, job_id)?;
    let job = block_on(Job::open(&conf, &dest, &job_id))??;
    Ok(open_job(job))
}

/// `long[] jobCounts()`: jobs opened, jobs freed, and job calls refused because their handle
/// was not live, so far in this process (a test sees every job freed exactly once and no call
/// on a freed one; a leak shows as opened minus freed).
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobCounts(
    mut env: JNIEnv,
    _: JClass,
) -> jlongArray {
    guard(&mut env, "jobCounts", |_| Ok(job_counts()))
}

/// `void jobClose(long job)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobClose(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "jobClose", |_| free_job(handle))
}

/// `void jobSetup(long job)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobSetup(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "jobSetup", |_| intern_job_setup(handle))
}

fn intern_job_setup(handle: i64) -> BResult<()> {
    Ok(block_on(job(handle)?.setup())??)
}

/// `boolean jobMagic(long job)`: whether the job's tasks write in magic mode.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobMagic(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jboolean {
    guard(&mut env, "jobMagic", |_| intern_job_magic(handle))
}

fn intern_job_magic(handle: i64) -> BResult<bool> {
    Ok(job(handle)?.target.settings.commit.mode == sealcommit_engine::config::Mode::Magic)
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
/// String[] destUris)`: staging mode's task commit (waits for the files the attempt closed,
/// uploads the others); returns the pendingset JSON.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskCommit(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    attempt: JString,
    attempt_number: jint,
    locals: JObjectArray,
    dests: JObjectArray,
) -> jstring {
    guard(&mut env, "taskCommit", |env| {
        intern_task_commit(env, handle, &attempt, attempt_number, &locals, &dests)
    })
}

fn intern_task_commit(
    env: &mut JNIEnv,
    handle: i64,
    attempt: &JString,
    attempt_number: i32,
    locals: &JObjectArray,
    dests: &JObjectArray,
) -> BResult<String> {
    let job = job(handle)?;
    let attempt = string(env, attempt)?;
    let files = task_files(env, locals, dests)?;
    let number = attempt_number.max(0) as u32;
    let set = block_on(job.commit_task(&attempt, number, files))??;
    Ok(set.to_json()?)
}

/// `void stagedClose(long job, String localFile, String destUri)`: staging mode, the task
/// closed `localFile`: its upload to `destUri` starts in the background, owned by the task
/// attempt (task commit reports how it went). Returns at once unless
/// `sealcommit.upload.parallelism` files of the attempt are uploading.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_stagedClose(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    local: JString,
    dest: JString,
) {
    guard(&mut env, "stagedClose", |env| {
        intern_staged_close(env, handle, &local, &dest)
    })
}

fn intern_staged_close(
    env: &mut JNIEnv,
    handle: i64,
    local: &JString,
    dest: &JString,
) -> BResult<()> {
    let job = job(handle)?;
    let local = PathBuf::from(string(env, local)?);
    let dest = string(env, dest)?;
    Ok(block_on(job.close_staged(local, &dest))??)
}

/// `void taskWait(long job)`: waits until every file the task attempt closed (either mode) has
/// finished its upload; if one failed, aborts every upload of the attempt and throws the first
/// failure. Called before the attempt asks to commit.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskWait(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "taskWait", |_| intern_task_wait(handle))
}

fn intern_task_wait(handle: i64) -> BResult<()> {
    Ok(block_on(job(handle)?.task.wait())??)
}

/// `void taskAbort(long job)`: stops the uploads of the files the attempt closed (either mode)
/// and aborts every upload of the attempt.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskAbort(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "taskAbort", |_| intern_task_abort(handle))
}

fn intern_task_abort(handle: i64) -> BResult<()> {
    Ok(block_on(job(handle)?.task.abort())?)
}

/// `String taskCommitSaved(long job, String taskId, String attempt, int attemptNumber,
/// String[] localFiles, String[] destUris)`: task commit for committers without a channel to the
/// driver (MapReduce): intent, uploads and pendingset saved on the store; returns the pendingset.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskCommitSaved(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    task: JString,
    attempt: JString,
    attempt_number: jint,
    locals: JObjectArray,
    dests: JObjectArray,
) -> jstring {
    guard(&mut env, "taskCommitSaved", |env| {
        intern_task_commit_saved(
            env,
            handle,
            &task,
            &attempt,
            attempt_number,
            &locals,
            &dests,
        )
    })
}

fn intern_task_commit_saved(
    env: &mut JNIEnv,
    handle: i64,
    task: &JString,
    attempt: &JString,
    attempt_number: i32,
    locals: &JObjectArray,
    dests: &JObjectArray,
) -> BResult<String> {
    let job = job(handle)?;
    let task = string(env, task)?;
    let attempt = string(env, attempt)?;
    let files = task_files(env, locals, dests)?;
    let number = attempt_number.max(0) as u32;
    let set = block_on(job.commit_task_saved(&task, &attempt, number, files))??;
    Ok(set.to_json()?)
}

/// `void abortUploads(long job, String[] pendingsets)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_abortUploads(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    sets: JObjectArray,
) {
    guard(&mut env, "abortUploads", |env| {
        intern_abort_uploads(env, handle, &sets)
    })
}

fn intern_abort_uploads(env: &mut JNIEnv, handle: i64, sets: &JObjectArray) -> BResult<()> {
    let job = job(handle)?;
    let uploads: Vec<_> = pendingsets(env, sets)?
        .into_iter()
        .flat_map(|p| p.uploads)
        .collect();
    Ok(block_on(job.target.abort_uploads(&uploads))??)
}

/// `String jobCommit(long job, String[] pendingsets, String[] replacePaths,
/// boolean dynamicPartitions)`: returns the commit report JSON.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobCommit(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    sets: JObjectArray,
    replace: JObjectArray,
    dynamic_partitions: jboolean,
) -> jstring {
    guard(&mut env, "jobCommit", |env| {
        intern_job_commit(env, handle, &sets, &replace, dynamic_partitions != 0)
    })
}

fn intern_job_commit(
    env: &mut JNIEnv,
    handle: i64,
    sets: &JObjectArray,
    replace: &JObjectArray,
    dynamic_partitions: bool,
) -> BResult<String> {
    let job = job(handle)?;
    let sets = pendingsets(env, sets)?;
    let replace = strings(env, replace)?;
    let report = block_on(job.commit_job(sets, replace, dynamic_partitions))??;
    report_json(&report)
}

fn report_json(report: &CommitReport) -> BResult<String> {
    Ok(serde_json::to_string(report).map_err(|e| Error::serialize("commit report", e))?)
}

/// `void jobAbort(long job, String[] pendingsets)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobAbort(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    sets: JObjectArray,
) {
    guard(&mut env, "jobAbort", |env| {
        intern_job_abort(env, handle, &sets)
    })
}

fn intern_job_abort(env: &mut JNIEnv, handle: i64, sets: &JObjectArray) -> BResult<()> {
    let job = job(handle)?;
    let sets = pendingsets(env, sets)?;
    Ok(block_on(job.abort_job(sets))??)
}

/// `void taskSave(long job, String taskId, String pendingSet)`: saves the pendingset on the store.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_taskSave(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    task: JString,
    set: JString,
) {
    guard(&mut env, "taskSave", |env| {
        intern_task_save(env, handle, &task, &set)
    })
}

fn intern_task_save(env: &mut JNIEnv, handle: i64, task: &JString, set: &JString) -> BResult<()> {
    let job = job(handle)?;
    let task = string(env, task)?;
    let set = PendingSet::from_json(&string(env, set)?)?;
    Ok(block_on(job.save_pendingset(&task, &set))??)
}

/// `String jobCommitSaved(long job)`: commits the saved pendingsets; returns the report JSON.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobCommitSaved(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "jobCommitSaved", |_| {
        intern_job_commit_saved(handle)
    })
}

fn intern_job_commit_saved(handle: i64) -> BResult<String> {
    let report = block_on(job(handle)?.commit_saved())??;
    report_json(&report)
}

/// `void jobAbortSaved(long job)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_jobAbortSaved(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "jobAbortSaved", |_| {
        intern_job_abort_saved(handle)
    })
}

fn intern_job_abort_saved(handle: i64) -> BResult<()> {
    Ok(block_on(job(handle)?.abort_saved())??)
}
