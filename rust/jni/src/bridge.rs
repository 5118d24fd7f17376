//! The one guard every export runs in, and what crosses back to Java: a value, or an exception.
//!
//! An export is `guard(env, "<native method>", |env| intern_…(env, …))`. The `intern_*` body
//! returns a Rust value (`BResult<R>`); the guard converts it to its JNI type (`ToJava`), or,
//! on an error, throws and returns that type's `JniDefault` (the JVM ignores a native method's
//! return value while an exception is pending). A panic is caught here and thrown as a
//! `RuntimeException`: nothing unwinds into the JVM, and the JVM is never aborted.
//!
//! Engine errors map to the classes Hadoop and Spark callers already catch:
//! not-found → `java.io.FileNotFoundException`, already-exists →
//! `org.apache.hadoop.fs.FileAlreadyExistsException` (both with the engine's message), anything
//! else → `io.sealcommit.SealCommitException`, built by one constructor call that carries the
//! message and the failure's fields (`Failure`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use jni::objects::{JObject, JThrowable, JValue};
use jni::sys::{jboolean, jint, jlong, jobject};
use jni::JNIEnv;
use sealcommit_engine::{Error, ErrorKind};

pub enum BridgeError {
    Engine(Error),
    Jni(jni::errors::Error),
    /// A handle that is 0 or no longer live (see `handles`).
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

pub type BResult<T> = Result<T, BridgeError>;

/// What an export returns when it has thrown.
pub trait JniDefault {
    fn jni_default() -> Self;
}

impl JniDefault for () {
    fn jni_default() -> Self {}
}

impl JniDefault for jlong {
    fn jni_default() -> Self {
        0
    }
}

impl JniDefault for jint {
    fn jni_default() -> Self {
        0
    }
}

impl JniDefault for jboolean {
    fn jni_default() -> Self {
        0
    }
}

/// `jstring`, `jobjectArray` and `jlongArray` are all `jobject`: null.
impl JniDefault for jobject {
    fn jni_default() -> Self {
        std::ptr::null_mut()
    }
}

/// A Rust result as the JNI value the native method declares.
pub trait ToJava {
    type Jni: JniDefault;
    fn to_java(self, env: &mut JNIEnv) -> BResult<Self::Jni>;
}

impl ToJava for () {
    type Jni = ();
    fn to_java(self, _: &mut JNIEnv) -> BResult<()> {
        Ok(())
    }
}

/// A handle or a count.
impl ToJava for i64 {
    type Jni = jlong;
    fn to_java(self, _: &mut JNIEnv) -> BResult<jlong> {
        Ok(self)
    }
}

impl ToJava for i32 {
    type Jni = jint;
    fn to_java(self, _: &mut JNIEnv) -> BResult<jint> {
        Ok(self)
    }
}

impl ToJava for bool {
    type Jni = jboolean;
    fn to_java(self, _: &mut JNIEnv) -> BResult<jboolean> {
        Ok(jboolean::from(self))
    }
}

impl ToJava for String {
    type Jni = jobject;
    fn to_java(self, env: &mut JNIEnv) -> BResult<jobject> {
        Ok(env.new_string(self)?.into_raw())
    }
}

/// `long[]`.
impl ToJava for Vec<i64> {
    type Jni = jobject;
    fn to_java(self, env: &mut JNIEnv) -> BResult<jobject> {
        let len = i32::try_from(self.len()).map_err(|_| too_many("longs"))?;
        let arr = env.new_long_array(len)?;
        env.set_long_array_region(&arr, 0, &self)?;
        Ok(arr.into_raw())
    }
}

pub fn too_many(what: &str) -> BridgeError {
    Error::config("JNI", format!("too many {what} for one Java array")).into()
}

/// Runs an export's body (see the module doc). `method` is the native method's name: the
/// `operation` of a `SealCommitException` whose engine error names none.
pub fn guard<'local, R: ToJava>(
    env: &mut JNIEnv<'local>,
    method: &'static str,
    body: impl FnOnce(&mut JNIEnv<'local>) -> BResult<R>,
) -> R::Jni {
    let outcome = catch_unwind(AssertUnwindSafe(|| body(env).and_then(|r| r.to_java(env))));
    match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            throw(env, method, e);
            R::Jni::jni_default()
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
                        "sealcommit native code panicked in {method} (this is a bug, please \
                         report it): {what}"
                    ),
                );
            }
            R::Jni::jni_default()
        }
    }
}

/// The fields of a `SealCommitException`.
struct Failure {
    message: String,
    /// The S3 request or local step that failed, else the native method.
    operation: String,
    bucket: Option<String>,
    key: Option<String>,
    /// -1 if none.
    status: i32,
    code: Option<String>,
    retryable: bool,
}

impl Failure {
    fn of(method: &str, e: &Error) -> Failure {
        Failure {
            message: e.to_string(),
            operation: e.operation().unwrap_or(method).to_string(),
            bucket: e.bucket().map(str::to_string),
            key: e.key().map(str::to_string),
            status: e.status().map_or(-1, i32::from),
            code: e.code().map(str::to_string),
            retryable: e.is_retryable(),
        }
    }

    fn local(method: &str, message: String) -> Failure {
        Failure {
            message,
            operation: method.to_string(),
            bucket: None,
            key: None,
            status: -1,
            code: None,
            retryable: false,
        }
    }
}

const EXCEPTION_CLASS: &str = "io/sealcommit/SealCommitException";
/// `SealCommitException(String message, String operation, String bucket, String key,
/// int status, String errorCode, boolean retryable)`.
const EXCEPTION_CTOR: &str = "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;\
                              Ljava/lang/String;ILjava/lang/String;Z)V";

fn throw(env: &mut JNIEnv, method: &str, err: BridgeError) {
    // A pending Java exception (from a failed JNI call) is already the right thing to surface.
    if env.exception_check().unwrap_or(false) {
        return;
    }
    match err {
        BridgeError::Engine(e) => match e.kind() {
            ErrorKind::NotFound => {
                throw_plain(env, "java/io/FileNotFoundException", &e.to_string())
            }
            ErrorKind::AlreadyExists => throw_plain(
                env,
                "org/apache/hadoop/fs/FileAlreadyExistsException",
                &e.to_string(),
            ),
            ErrorKind::Other => throw_failure(env, &Failure::of(method, &e)),
        },
        BridgeError::Jni(e) => throw_failure(
            env,
            &Failure::local(method, format!("JNI call failed: {e}")),
        ),
        BridgeError::Closed => throw_plain(
            env,
            "java/lang/IllegalStateException",
            "sealcommit handle used after close",
        ),
    }
}

fn throw_plain(env: &mut JNIEnv, class: &str, msg: &str) {
    if env.throw_new(class, msg).is_err() {
        // The class may be missing from the classpath (Hadoop's exception outside Hadoop).
        let _ = env.exception_clear();
        let _ = env.throw_new("java/io/IOException", msg);
    }
}

fn throw_failure(env: &mut JNIEnv, f: &Failure) {
    let thrown = env.with_local_frame(8, |env| -> jni::errors::Result<()> {
        let message = JObject::from(env.new_string(&f.message)?);
        let operation = JObject::from(env.new_string(&f.operation)?);
        let bucket = nullable(env, f.bucket.as_deref())?;
        let key = nullable(env, f.key.as_deref())?;
        let code = nullable(env, f.code.as_deref())?;
        let exception = env.new_object(
            EXCEPTION_CLASS,
            EXCEPTION_CTOR,
            &[
                JValue::Object(&message),
                JValue::Object(&operation),
                JValue::Object(&bucket),
                JValue::Object(&key),
                JValue::Int(f.status),
                JValue::Object(&code),
                JValue::Bool(jboolean::from(f.retryable)),
            ],
        )?;
        env.throw(JThrowable::from(exception))
    });
    if thrown.is_err() {
        // Only if the JVM could not build the exception (out of memory, a stale jar): the
        // message, at least, as an IOException.
        let _ = env.exception_clear();
        let _ = env.throw_new("java/io/IOException", &f.message);
    }
}

fn nullable<'local>(
    env: &mut JNIEnv<'local>,
    s: Option<&str>,
) -> jni::errors::Result<JObject<'local>> {
    match s {
        Some(s) => Ok(env.new_string(s)?.into()),
        None => Ok(JObject::null()),
    }
}
