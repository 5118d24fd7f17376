//! Streaming exports (`io.sealcommit.spark.SealStreamingCommitProtocol` through `SealJob`): a
//! file sink micro-batch's uploads completed without journal or `_SUCCESS`.

use jni::objects::{JClass, JObjectArray};
use jni::sys::{jint, jlong, jobjectArray};
use jni::JNIEnv;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::uri::S3Path;
use sealcommit_engine::Entry;

use crate::bridge::{guard, BResult};
use crate::conv::{pendingsets, strings};
use crate::handles::job;

/// `NativeEntry[] streamCommit(long job, String[] pendingsets)`: completes a streaming batch's
/// uploads; returns the files (`dir` false, `modified` the commit time).
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamCommit(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    sets: JObjectArray,
) -> jobjectArray {
    guard(&mut env, "streamCommit", |env| {
        intern_stream_commit(env, handle, &sets)
    })
}

fn intern_stream_commit(env: &mut JNIEnv, handle: i64, sets: &JObjectArray) -> BResult<Vec<Entry>> {
    let job = job(handle)?;
    let sets = pendingsets(env, sets)?;
    let files = block_on(job.commit_stream(sets))??;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(files
        .iter()
        .map(|f| Entry {
            uri: format!("s3a://{}/{}", job.target.dest.bucket, f.key),
            size: f.size,
            modified_ms: now,
            is_dir: false,
        })
        .collect())
}

/// `void streamDiscard(long job, String[] uris)`: deletes files a lost batch completed.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamDiscard(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    uris: JObjectArray,
) {
    guard(&mut env, "streamDiscard", |env| {
        intern_stream_discard(env, handle, &uris)
    })
}

fn intern_stream_discard(env: &mut JNIEnv, handle: i64, uris: &JObjectArray) -> BResult<()> {
    let job = job(handle)?;
    let mut keys = Vec::new();
    for u in strings(env, uris)? {
        keys.push(S3Path::parse(&u)?.key);
    }
    Ok(block_on(job.discard(&keys))??)
}

/// `int streamAbortStrays(long job, long batch)`: aborts leftover uploads of batches <= batch.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamAbortStrays(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    batch: jlong,
) -> jint {
    guard(&mut env, "streamAbortStrays", |_| {
        intern_stream_abort_strays(handle, batch)
    })
}

fn intern_stream_abort_strays(handle: i64, batch: i64) -> BResult<i32> {
    let job = job(handle)?;
    let aborted = block_on(job.abort_stream_strays(batch.max(0) as u64))??;
    Ok(i32::try_from(aborted).unwrap_or(i32::MAX))
}
