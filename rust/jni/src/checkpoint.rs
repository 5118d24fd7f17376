//! Checkpoint exports (`io.sealcommit.SealCheckpointFs`): listings, existence, deletes, atomic
//! writers (one conditional PUT at commit) and readers.

use std::sync::Arc;

use jni::objects::{JByteArray, JClass, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, jobjectArray};
use jni::JNIEnv;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::{AtomicWriter, CheckpointFs, Entry, Reader};

use crate::bridge::{guard, BResult, BridgeError};
use crate::conv::{as_signed, as_unsigned, bytes, conf, string};
use crate::handles::{borrow, checkpoint_fs, into_handle, take};

/// `long cpOpen(String[] conf, String root)`: checkpoint file operations under `root`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpOpen(
    mut env: JNIEnv,
    _: JClass,
    conf: JObjectArray,
    root: JString,
) -> jlong {
    guard(&mut env, "cpOpen", |env| intern_cp_open(env, &conf, &root))
}

fn intern_cp_open(env: &mut JNIEnv, kv: &JObjectArray, root: &JString) -> BResult<i64> {
    let conf = conf(env, kv)?;
    let root = string(env, root)?;
    let fs = block_on(CheckpointFs::open(&conf, &root))??;
    Ok(into_handle(Arc::new(fs)))
}

/// `void cpClose(long fs)`: open writers and readers hold their own reference.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpClose(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "cpClose", |_| intern_cp_close(handle))
}

fn intern_cp_close(handle: i64) -> BResult<()> {
    // SAFETY: see `handles`; the Java owner's one freeing call.
    drop(unsafe { take::<Arc<CheckpointFs>>(handle) });
    Ok(())
}

/// `NativeEntry[] cpList(long fs, String dir)`: the files and directories directly under `dir`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpList(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    dir: JString,
) -> jobjectArray {
    guard(&mut env, "cpList", |env| intern_cp_list(env, handle, &dir))
}

fn intern_cp_list(env: &mut JNIEnv, handle: i64, dir: &JString) -> BResult<Vec<Entry>> {
    let fs = checkpoint_fs(handle)?;
    let dir = string(env, dir)?;
    Ok(block_on(fs.list(&dir))??)
}

/// `boolean cpExists(long fs, String path)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpExists(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    path: JString,
) -> jboolean {
    guard(&mut env, "cpExists", |env| {
        intern_cp_exists(env, handle, &path)
    })
}

fn intern_cp_exists(env: &mut JNIEnv, handle: i64, path: &JString) -> BResult<bool> {
    let fs = checkpoint_fs(handle)?;
    let path = string(env, path)?;
    Ok(block_on(fs.exists(&path))??)
}

/// `void cpDelete(long fs, String path)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpDelete(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    path: JString,
) {
    guard(&mut env, "cpDelete", |env| {
        intern_cp_delete(env, handle, &path)
    })
}

fn intern_cp_delete(env: &mut JNIEnv, handle: i64, path: &JString) -> BResult<()> {
    let fs = checkpoint_fs(handle)?;
    let path = string(env, path)?;
    Ok(block_on(fs.delete(&path))??)
}

/// `long cpCreate(long fs, String path, boolean overwrite)`: an atomic writer; nothing is sent
/// until `cpCommit`.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCreate(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    path: JString,
    overwrite: jboolean,
) -> jlong {
    guard(&mut env, "cpCreate", |env| {
        intern_cp_create(env, handle, &path, overwrite != 0)
    })
}

fn intern_cp_create(
    env: &mut JNIEnv,
    handle: i64,
    path: &JString,
    overwrite: bool,
) -> BResult<i64> {
    let fs = checkpoint_fs(handle)?;
    let path = string(env, path)?;
    Ok(into_handle(fs.create(&path, overwrite)?))
}

/// `void cpWrite(long writer, byte[] data, int off, int len)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpWrite(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    data: JByteArray,
    off: jint,
    len: jint,
) {
    guard(&mut env, "cpWrite", |env| {
        intern_cp_write(env, handle, &data, off, len)
    })
}

fn intern_cp_write(
    env: &mut JNIEnv,
    handle: i64,
    data: &JByteArray,
    off: i32,
    len: i32,
) -> BResult<()> {
    // SAFETY: see `handles`; made by `cpCreate`.
    let w = unsafe { borrow::<AtomicWriter>(handle) }?;
    let buf = bytes(env, data, off, len)?;
    Ok(w.write(as_unsigned(&buf))?)
}

/// `void cpCommit(long writer)`: publishes the file and frees the writer, whatever the outcome.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCommit(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "cpCommit", |_| intern_cp_commit(handle))
}

fn intern_cp_commit(handle: i64) -> BResult<()> {
    // SAFETY: see `handles`; the Java owner makes this its one freeing call, as `close`.
    let w = unsafe { take::<AtomicWriter>(handle) }.ok_or(BridgeError::Closed)?;
    Ok(block_on(w.commit())??)
}

/// `void cpCancel(long writer)`: discards the write and frees the writer.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCancel(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "cpCancel", |_| intern_cp_cancel(handle))
}

fn intern_cp_cancel(handle: i64) -> BResult<()> {
    // SAFETY: as in `intern_cp_commit`.
    if let Some(w) = unsafe { take::<AtomicWriter>(handle) } {
        w.cancel();
    }
    Ok(())
}

/// `long cpOpenRead(long fs, String path)`: a reader; `FileNotFoundException` if missing.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpOpenRead(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    path: JString,
) -> jlong {
    guard(&mut env, "cpOpenRead", |env| {
        intern_cp_open_read(env, handle, &path)
    })
}

fn intern_cp_open_read(env: &mut JNIEnv, handle: i64, path: &JString) -> BResult<i64> {
    let fs = checkpoint_fs(handle)?;
    let path = string(env, path)?;
    Ok(into_handle(block_on(fs.open_read(&path))??))
}

/// `long cpSize(long reader)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpSize(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jlong {
    guard(&mut env, "cpSize", |_| intern_cp_size(handle))
}

fn intern_cp_size(handle: i64) -> BResult<i64> {
    // SAFETY: see `handles`; made by `cpOpenRead`.
    let r = unsafe { borrow::<Reader>(handle) }?;
    Ok(i64::try_from(r.size()).unwrap_or(i64::MAX))
}

/// `int cpRead(long reader, long pos, byte[] buf, int off, int len)`: -1 at the end.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpRead(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    pos: jlong,
    buf: JByteArray,
    off: jint,
    len: jint,
) -> jint {
    guard(&mut env, "cpRead", |env| {
        intern_cp_read(env, handle, pos, &buf, off, len)
    })
}

fn intern_cp_read(
    env: &mut JNIEnv,
    handle: i64,
    pos: i64,
    buf: &JByteArray,
    off: i32,
    len: i32,
) -> BResult<i32> {
    // SAFETY: see `handles`; made by `cpOpenRead`.
    let r = unsafe { borrow::<Reader>(handle) }?;
    let mut tmp = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let n = block_on(r.read_at(u64::try_from(pos).unwrap_or(0), &mut tmp))??;
    if n == 0 {
        return Ok(-1);
    }
    env.set_byte_array_region(buf, off, as_signed(&tmp[..n]))?;
    Ok(n as i32)
}

/// `void cpCloseRead(long reader)`
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_cpCloseRead(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "cpCloseRead", |_| intern_cp_close_read(handle))
}

fn intern_cp_close_read(handle: i64) -> BResult<()> {
    // SAFETY: see `handles`; the Java owner makes this its one freeing call, as `close`.
    drop(unsafe { take::<Reader>(handle) });
    Ok(())
}
