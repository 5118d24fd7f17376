//! Exports that need no handle: the library's identity and the engine's file naming.

use jni::objects::{JClass, JString};
use jni::sys::{jint, jlong, jstring};
use jni::JNIEnv;
use sealcommit_engine::naming;

use crate::bridge::{guard, BResult};
use crate::conv::{not_negative, string};

/// `String version()`: lets the Java side check it loaded a matching library.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_version(mut env: JNIEnv, _: JClass) -> jstring {
    guard(&mut env, "version", |_| Ok(intern_version()))
}

/// `String revision()`: the git revision the engine was built from.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_revision(mut env: JNIEnv, _: JClass) -> jstring {
    guard(&mut env, "revision", |_| Ok(intern_revision()))
}

fn intern_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn intern_revision() -> String {
    sealcommit_engine::REVISION.to_string()
}

/// `String streamJobId(String run, long batch)`: the engine job id of a file sink micro-batch.
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_streamJobId(
    mut env: JNIEnv,
    _: JClass,
    run: JString,
    batch: jlong,
) -> jstring {
    guard(&mut env, "streamJobId", |env| {
        intern_stream_job_id(env, &run, batch)
    })
}

fn intern_stream_job_id(env: &mut JNIEnv, run: &JString, batch: i64) -> BResult<String> {
    let run = string(env, run)?;
    let batch = not_negative("batch", "batch id", batch)?;
    Ok(naming::stream_job_id(&run, batch))
}

/// `String outputName(String prefix, int split, String jobId, String suffix)`: the name of a
/// task's output file; the engine names files so it can recognise its own (`naming`).
#[no_mangle]
pub extern "system" fn Java_io_sealcommit_Native_outputName(
    mut env: JNIEnv,
    _: JClass,
    prefix: JString,
    split: jint,
    job_id: JString,
    suffix: JString,
) -> jstring {
    guard(&mut env, "outputName", |env| {
        intern_output_name(env, &prefix, split, &job_id, &suffix)
    })
}

fn intern_output_name(
    env: &mut JNIEnv,
    prefix: &JString,
    split: i32,
    job_id: &JString,
    suffix: &JString,
) -> BResult<String> {
    let prefix = string(env, prefix)?;
    let job_id = string(env, job_id)?;
    let suffix = string(env, suffix)?;
    let split =
        u32::try_from(not_negative("split", "task split", i64::from(split))?).unwrap_or(u32::MAX);
    Ok(naming::output_name(&prefix, split, &job_id, &suffix))
}
