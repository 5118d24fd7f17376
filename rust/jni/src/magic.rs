//! Magic-mode exports: a task's bytes streamed straight into the destination's multipart
//! upload (`SealJob.openMagic`), and the magic task commit. A closed file finishes in the
//! background, owned by the task attempt's engine job (`Job::task`), not by its writer handle;
//! the attempt's wait and abort are `taskWait` and `taskAbort` (`job`), shared with staging.

use jni::objects::{JByteArray, JClass, JString};
use jni::sys::{jint, jlong, jstring};
use jni::JNIEnv;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::MagicWriter;

use crate::bridge::{guard, BResult, BridgeError};
use crate::conv::{as_signed_mut, string};
use crate::handles::{borrow, into_handle, job, take};

/// `long magicOpen(long job, String uri)`: a writer streaming into `uri`'s multipart upload.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicOpen(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    uri: JString,
) -> jlong {
    guard(&mut env, "magicOpen", |env| {
        intern_magic_open(env, handle, &uri)
    })
}

fn intern_magic_open(env: &mut JNIEnv, handle: i64, uri: &JString) -> BResult<i64> {
    let uri = string(env, uri)?;
    let writer = job(handle)?.magic_writer(&uri)?;
    Ok(into_handle(writer))
}

/// `void magicWrite(long writer, byte[] data, int off, int len)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicWrite(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    data: JByteArray,
    off: jint,
    len: jint,
) {
    guard(&mut env, "magicWrite", |env| {
        intern_magic_write(env, handle, &data, off, len)
    })
}

fn intern_magic_write(
    env: &mut JNIEnv,
    handle: i64,
    data: &JByteArray,
    off: i32,
    len: i32,
) -> BResult<()> {
    // SAFETY: see `handles`; made by `magicOpen`.
    let w = unsafe { borrow::<MagicWriter>(handle) }?;
    let start = usize::try_from(off).unwrap_or(0);
    let (mut at, end) = (start, start + usize::try_from(len).unwrap_or(0));
    // One copy: from the Java array straight into the part being filled.
    while at < end {
        let room = w.room(end - at);
        let n = room.len();
        env.get_byte_array_region(data, at as i32, as_signed_mut(room))?;
        block_on(w.advance())??;
        at += n;
    }
    Ok(())
}

/// `void magicFinish(long writer)`: closes the file; the rest of its upload finishes in the
/// background, owned by the writer's task attempt (task commit reports how it went). Returns
/// at once unless `sealcommit.magic.files-in-flight` files are finishing. Frees the writer,
/// whatever the outcome.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicFinish(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "magicFinish", |_| intern_magic_finish(handle))
}

fn intern_magic_finish(handle: i64) -> BResult<()> {
    // SAFETY: see `handles`; the Java owner makes this its one freeing call, as `close`. The
    // writer is moved out of its box: what finishes in the background owns it.
    let w = unsafe { take::<MagicWriter>(handle) }.ok_or(BridgeError::Closed)?;
    Ok(block_on(w.close())??)
}

/// `void magicAbort(long writer)`: aborts the upload; frees the writer.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicAbort(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "magicAbort", |_| intern_magic_abort(handle))
}

fn intern_magic_abort(handle: i64) -> BResult<()> {
    // SAFETY: as in `intern_magic_finish`.
    if let Some(w) = unsafe { take::<MagicWriter>(handle) } {
        block_on(w.abort())?;
    }
    Ok(())
}

/// `String magicTaskCommit(long job, String attempt, int attemptNumber)`: the pendingset of a
/// magic-mode task: every file its writers closed, once finished.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_magicTaskCommit(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    attempt: JString,
    attempt_number: jint,
) -> jstring {
    guard(&mut env, "magicTaskCommit", |env| {
        intern_magic_task_commit(env, handle, &attempt, attempt_number)
    })
}

fn intern_magic_task_commit(
    env: &mut JNIEnv,
    handle: i64,
    attempt: &JString,
    attempt_number: i32,
) -> BResult<String> {
    let job = job(handle)?;
    let attempt = string(env, attempt)?;
    let number = attempt_number.max(0) as u32;
    let set = block_on(job.commit_magic_task(&attempt, number))??;
    Ok(set.to_json()?)
}
