//! Arguments from Java, records to Java. What crosses the boundary, and in which form:
//!
//! * settings: `String[]` of key, value, key, value… (`SealJob.settings`); an odd length is an
//!   error, not a silently dropped key;
//! * a task's files: two parallel `String[]`s (local path, destination URI) of equal length;
//! * pendingsets, magic files, commit reports: JSON strings. A pendingset is the task's
//!   `TaskCommitMessage` payload, which Spark serialises and ships to the driver; a magic file
//!   goes back unchanged into the task commit; a report is only logged. Java never looks inside;
//! * listed and committed files: `io.sealcommit.NativeEntry[]` (`dir`, `size`, `modified`,
//!   `uri`), constructed here, so no line format is parsed again in Java.

use jni::objects::{JByteArray, JObject, JObjectArray, JString, JValue};
use jni::sys::{jboolean, jobject};
use jni::JNIEnv;
use sealcommit_engine::{Conf, Entry, Error, PendingSet};

use crate::bridge::{too_many, BResult, ToJava};
use crate::logger;

pub fn string(env: &mut JNIEnv, s: &JString) -> BResult<String> {
    Ok(env.get_string(s)?.into())
}

/// A `String[]`; null is empty.
pub fn strings(env: &mut JNIEnv, arr: &JObjectArray) -> BResult<Vec<String>> {
    if arr.is_null() {
        return Ok(Vec::new());
    }
    let n = env.get_array_length(arr)?;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..n {
        let s = JString::from(env.get_object_array_element(arr, i)?);
        out.push(string(env, &s)?);
        env.delete_local_ref(s)?;
    }
    Ok(out)
}

/// The settings of a job or checkpoint manager (`fs.s3a.*`, `sealcommit.*`): key, value, ….
/// Reads the engine's log levels first (every open does, see `logger`).
pub fn conf(env: &mut JNIEnv, kv: &JObjectArray) -> BResult<Conf> {
    logger::refresh(env);
    let kv = strings(env, kv)?;
    if kv.len() % 2 != 0 {
        return Err(Error::config(
            "settings",
            format!("{} strings are not key, value pairs", kv.len()),
        )
        .into());
    }
    Ok(kv
        .chunks_exact(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect())
}

pub fn pendingsets(env: &mut JNIEnv, arr: &JObjectArray) -> BResult<Vec<PendingSet>> {
    let mut out = Vec::new();
    for s in strings(env, arr)? {
        out.push(PendingSet::from_json(&s)?);
    }
    Ok(out)
}

/// A number Java passes that must not be negative; the error names the setting `key` and says
/// "`what` <v> is negative".
pub fn not_negative(key: &str, what: &str, v: i64) -> BResult<u64> {
    u64::try_from(v).map_err(|_| Error::config(key, format!("{what} {v} is negative")).into())
}

/// The bytes `data[off..off + len]` of a Java `byte[]`, copied.
pub fn bytes(env: &mut JNIEnv, data: &JByteArray, off: i32, len: i32) -> BResult<Vec<i8>> {
    let mut buf = vec![0i8; usize::try_from(len).unwrap_or(0)];
    env.get_byte_array_region(data, off, &mut buf)?;
    Ok(buf)
}

/// The JVM's bytes are `i8`; the engine's are `u8`. Same size and alignment, every bit pattern
/// valid in both, so a slice can be viewed as the other without copying.
pub fn as_unsigned(b: &[i8]) -> &[u8] {
    // SAFETY: see above; the length and lifetime are the input's.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), b.len()) }
}

pub fn as_signed(b: &[u8]) -> &[i8] {
    // SAFETY: as in `as_unsigned`.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

pub fn as_signed_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: as in `as_unsigned`; the borrow is exclusive for the returned lifetime.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<i8>(), b.len()) }
}

const ENTRY_CLASS: &str = "io/sealcommit/NativeEntry";
/// `NativeEntry(boolean dir, long size, long modified, String uri)`.
const ENTRY_CTOR: &str = "(ZJJLjava/lang/String;)V";

/// `NativeEntry[]`.
impl ToJava for Vec<Entry> {
    type Jni = jobject;
    fn to_java(self, env: &mut JNIEnv) -> BResult<jobject> {
        let len = i32::try_from(self.len()).map_err(|_| too_many("entries"))?;
        let class = env.find_class(ENTRY_CLASS)?;
        let arr = env.new_object_array(len, &class, JObject::null())?;
        for (i, e) in (0..len).zip(&self) {
            // Two local references per entry, freed at once: a listing may be long.
            let uri = JObject::from(env.new_string(&e.uri)?);
            let entry = env.new_object(
                &class,
                ENTRY_CTOR,
                &[
                    JValue::Bool(jboolean::from(e.is_dir)),
                    JValue::Long(i64::try_from(e.size).unwrap_or(i64::MAX)),
                    JValue::Long(i64::try_from(e.modified_ms).unwrap_or(i64::MAX)),
                    JValue::Object(&uri),
                ],
            )?;
            env.set_object_array_element(&arr, i, &entry)?;
            env.delete_local_ref(entry)?;
            env.delete_local_ref(uri)?;
        }
        Ok(arr.into_raw())
    }
}
