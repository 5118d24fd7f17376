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

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Store {
                retryable: true,
                ..
            }
        )
    }

    /// The HTTP status of a failed store request, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Store { status, .. } => *status,
            _ => None,
        }
    }

    /// The S3 error code of a failed store request, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Store { code, .. } => code.as_deref(),
            _ => None,
        }
    }
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
