//! One error type for the whole engine. Every variant says what failed, where (bucket, key,
//! operation) and — where the user can fix it — which configuration key to change. Messages never
//! contain secrets: values of secret keys are never formatted into them.

use std::fmt;

/// What kind of failure this is; the JNI layer maps it to a Java exception class that Hadoop and
/// Spark callers already catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `java.io.FileNotFoundException`
    NotFound,
    /// `org.apache.hadoop.fs.FileAlreadyExistsException`
    AlreadyExists,
    /// `io.sealcommit.SealCommitException` (an `IOException`)
    Other,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing, malformed or contradicts another one.
    #[error("invalid configuration: {key}: {message}")]
    Config { key: String, message: String },

    /// A request to the store failed. `hint` says what to do about it.
    #[error("{op} {uri} failed: {detail}{}", hint_suffix(.hint))]
    Store {
        op: &'static str,
        uri: String,
        status: Option<u16>,
        code: Option<String>,
        detail: String,
        hint: String,
        retryable: bool,
    },

    /// The store accepted a write but did not apply the encryption that was asked for.
    #[error(
        "the store did not apply the requested encryption to {uri} ({op}): requested \
         {requested}, the object has {actual}{}",
        hint_suffix(.hint)
    )]
    EncryptionNotApplied {
        uri: String,
        /// The write whose result was checked.
        op: &'static str,
        requested: String,
        actual: String,
        hint: String,
    },

    /// A conditional write lost: the object exists already.
    #[error("{uri} already exists (another writer created it first)")]
    AlreadyExists { uri: String },

    #[error("{uri} not found")]
    NotFound { uri: String },

    /// Local file-system I/O (the task's staging files).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A pendingset, journal or other document of ours could not be read.
    #[error("cannot read {what}: {message}")]
    Document { what: String, message: String },

    /// A document of ours could not be written as JSON.
    #[error("cannot write {what} as JSON: {message}")]
    Serialize { what: String, message: String },

    /// Job commit failed after the new output became visible: it cannot be rolled back without
    /// losing data, so the journal is kept with what is left to do.
    #[error(
        "job commit of {destination} failed after its new files were completed and verified: \
         {source}. The new files are visible; what is left (deleting the files the overwrite \
         replaces, writing _SUCCESS) is recorded in the journal {journal}"
    )]
    Published {
        destination: String,
        journal: String,
        #[source]
        source: Box<Error>,
    },

    /// A closed file's upload (magic or staging mode) did not finish because its task attempt
    /// ended first: aborted, committed, or failed on another of its files. Its upload is
    /// aborted.
    #[error("the upload of {uri} was stopped: {reason}")]
    TaskEnded { uri: String, reason: String },

    /// The job was failed on purpose by a `sealcommit.fault.*` setting (tests only).
    #[error("injected fault: {0}")]
    Injected(String),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(". {hint}")
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            _ => ErrorKind::Other,
        }
    }

    pub fn config(key: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Config {
            key: key.into(),
            message: message.to_string(),
        }
    }

    pub fn io(op: &'static str, path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub fn document(what: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Document {
            what: what.into(),
            message: message.to_string(),
        }
    }

    pub fn serialize(what: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Serialize {
            what: what.into(),
            message: message.to_string(),
        }
    }

    /// Whether the same request may succeed if tried again later: a store failure the store
    /// module marked so (5xx, 429, a timeout, a connection error), or one whose S3 code says
    /// throttling or timeout whatever its status; not one whose code says a retry cannot help
    /// (credentials, a missing bucket or key, a lost precondition), nor anything but a store
    /// failure (configuration, documents, local I/O, a failure after publishing).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store {
                retryable, code, ..
            } => match code.as_deref() {
                Some(c) if TRANSIENT_CODES.contains(&c) => true,
                Some(c) if PERMANENT_CODES.contains(&c) => false,
                _ => *retryable,
            },
            _ => false,
        }
    }

    /// The failure a `Published` error wraps (recursively), else this error: the one that names
    /// the request that failed.
    fn failed(&self) -> &Error {
        match self {
            Error::Published { source, .. } => source.failed(),
            e => e,
        }
    }

    /// The HTTP status of a failed store request, if any (also through `Published`).
    pub fn status(&self) -> Option<u16> {
        match self.failed() {
            Error::Store { status, .. } => *status,
            _ => None,
        }
    }

    /// The S3 error code of a failed store request, if any (also through `Published`).
    pub fn code(&self) -> Option<&str> {
        match self.failed() {
            Error::Store { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The operation that failed, if the error names one: the S3 request (`PutObject`,
    /// `HeadBucket`, …) or the local step (`read task output`).
    pub fn operation(&self) -> Option<&str> {
        match self.failed() {
            Error::Store { op, .. }
            | Error::EncryptionNotApplied { op, .. }
            | Error::Io { op, .. } => Some(op),
            _ => None,
        }
    }

    /// The object or bucket the error is about, as `s3a://bucket[/key]`, if any.
    pub fn uri(&self) -> Option<&str> {
        match self.failed() {
            Error::Store { uri, .. }
            | Error::EncryptionNotApplied { uri, .. }
            | Error::AlreadyExists { uri }
            | Error::TaskEnded { uri, .. }
            | Error::NotFound { uri } => Some(uri),
            _ => None,
        }
    }

    /// The bucket of `uri()`.
    pub fn bucket(&self) -> Option<&str> {
        let (bucket, _) = split_uri(self.uri()?)?;
        Some(bucket)
    }

    /// The object key of `uri()`, exactly as sent (none for a bucket-level failure).
    pub fn key(&self) -> Option<&str> {
        split_uri(self.uri()?)?.1
    }
}

/// S3 error codes of failures a later retry can get past, whatever the HTTP status (S3 sends
/// `RequestTimeout` as 400, some stores throttle with 400 or 403).
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
];

/// S3 error codes a retry of the same request cannot get past (also when reported without a
/// status, as in a DeleteObjects response's per-key errors).
const PERMANENT_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "PreconditionFailed",
    "InvalidArgument",
    "InvalidRequest",
];

/// `scheme://bucket[/key]` → (bucket, key); the key as written, `None` if empty.
fn split_uri(uri: &str) -> Option<(&str, Option<&str>)> {
    let (_, rest) = uri.split_once("://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket, (!key.is_empty()).then_some(key)))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_error_message_names_operation_uri_and_hint() {
        let e = Error::Store {
            op: "CreateMultipartUpload",
            uri: "s3a://b/k".into(),
            status: Some(403),
            code: Some("AccessDenied".into()),
            detail: "403 AccessDenied".into(),
            hint: "set fs.s3a.encryption.key".into(),
            retryable: false,
        };
        assert_eq!(
            e.to_string(),
            "CreateMultipartUpload s3a://b/k failed: 403 AccessDenied. set fs.s3a.encryption.key"
        );
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.status(), Some(403));
    }

    fn store(status: Option<u16>, code: Option<&str>, retryable: bool) -> Error {
        Error::Store {
            op: "PutObject",
            uri: "s3a://bucket/dir/a b%3D=é.txt".into(),
            status,
            code: code.map(str::to_string),
            detail: String::new(),
            hint: String::new(),
            retryable,
        }
    }

    #[test]
    fn store_error_names_operation_bucket_and_exact_key() {
        let e = store(Some(404), Some("NoSuchKey"), false);
        assert_eq!(e.operation(), Some("PutObject"));
        assert_eq!(e.bucket(), Some("bucket"));
        assert_eq!(e.key(), Some("dir/a b%3D=é.txt"));
        let bucket_only = Error::Store {
            op: "HeadBucket",
            uri: "s3a://bucket".into(),
            status: Some(404),
            code: None,
            detail: String::new(),
            hint: String::new(),
            retryable: false,
        };
        assert_eq!(
            (bucket_only.bucket(), bucket_only.key()),
            (Some("bucket"), None)
        );
        let c = Error::config("fs.s3a.endpoint", "bad");
        assert_eq!(
            (c.operation(), c.uri(), c.status(), c.code()),
            (None, None, None, None)
        );
    }

    #[test]
    fn retryable_follows_the_store_and_the_s3_code() {
        assert!(store(Some(503), Some("SlowDown"), true).is_retryable());
        assert!(store(Some(500), None, true).is_retryable());
        assert!(
            store(None, None, true).is_retryable(),
            "timeout / connection error"
        );
        assert!(store(Some(400), Some("RequestTimeout"), false).is_retryable());
        assert!(!store(Some(403), Some("AccessDenied"), false).is_retryable());
        assert!(!store(Some(412), None, false).is_retryable());
        // A DeleteObjects per-key error has no status; its code decides.
        assert!(!store(None, Some("AccessDenied"), true).is_retryable());
        assert!(!Error::config("k", "v").is_retryable());
    }

    #[test]
    fn published_reports_the_failure_it_wraps_but_is_not_retryable() {
        let e = Error::Published {
            destination: "s3a://bucket/out".into(),
            journal: "s3a://bucket/out/_sealcommit/j".into(),
            source: Box::new(store(Some(503), Some("SlowDown"), true)),
        };
        assert_eq!((e.status(), e.code()), (Some(503), Some("SlowDown")));
        assert_eq!(e.operation(), Some("PutObject"));
        assert_eq!(e.key(), Some("dir/a b%3D=é.txt"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn a_serialization_failure_is_an_error_that_names_the_document() {
        // JSON maps need string keys: serde_json refuses this one.
        let doc: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into_iter().collect();
        let e = serde_json::to_string(&doc)
            .map_err(|e| Error::serialize("commit report", e))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot write commit report as JSON: "),
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::Other);
    }
}
