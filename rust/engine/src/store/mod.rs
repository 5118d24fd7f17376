//! Store access. [`Store`] is what every caller names: the request counters of one job (or
//! one CLI command) over an [`ObjectStore`], the raw per-request operations. Everything that
//! decides what an answer means sits here, above the trait, and runs for every implementation:
//! which status is "not found", a `412` on a create-only PUT, a gone upload on abort, a partial
//! DeleteObjects, paging, the MinIO listing quirk, and every failure turned into an `Error` that
//! says what to do. Below the trait: [`s3`] (`aws-sdk-s3`, the only implementation a release
//! build has) and, in tests and with the `fake-store` feature, [`memory`], an in-memory store
//! that scripts failures. Requests are counted per operation for the `_SUCCESS` report.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_s3::primitives::ByteStream;

use crate::config::StoreConfig;
use crate::encryption::{EncryptionSpec, Observed};
use crate::error::{Error, Result};

mod s3;
pub use s3::{
    client_for, map_sdk_err, server_is_minio, HasStatus, OnResponse, ServerHeader, StoreClock,
    Throttles,
};

#[cfg(any(test, feature = "fake-store"))]
pub mod memory;

/// Requests sent, by S3 operation name.
#[derive(Debug, Default)]
pub struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    // A lock poisoned by a panic elsewhere still counts: each update is one addition, so the
    // counts are whole, and dropping them would under-report the requests sent.
    pub fn add(&self, op: &str, n: u64) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *m.entry(op.to_string()).or_default() += n;
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a failing request was about, for the error message.
pub struct Ctx<'a> {
    pub op: &'static str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub enc: Option<&'a EncryptionSpec>,
}

impl Ctx<'_> {
    fn uri(&self) -> String {
        if self.key.is_empty() {
            format!("s3a://{}", self.bucket)
        } else {
            format!("s3a://{}/{}", self.bucket, self.key)
        }
    }
}

/// Turns a raw failure into an `Error` with a hint naming the setting to change.
pub fn map_raw(ctx: &Ctx<'_>, err: RawError) -> Error {
    let RawError {
        status,
        code,
        message,
        text,
        construction,
    } = err;
    let detail = match (&status, &code, &message) {
        (Some(s), c, m) if code.is_some() || message.is_some() => format!(
            "HTTP {s} {}{}",
            c.as_deref().unwrap_or(""),
            m.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        (Some(s), _, _) => format!("HTTP {s}"),
        _ => text,
    };
    let retryable = match status {
        Some(s) => s >= 500 || s == 429,
        None => !construction,
    };
    let hint = hint(ctx, status, code.as_deref(), &detail);
    Error::Store {
        op: ctx.op,
        uri: ctx.uri(),
        status,
        code,
        detail,
        hint,
        retryable,
    }
}

fn hint(ctx: &Ctx<'_>, status: Option<u16>, code: Option<&str>, detail: &str) -> String {
    let lower = detail.to_ascii_lowercase();
    let enc = ctx.enc;
    let kms_key = enc.and_then(|e| e.kms_key_id()).unwrap_or("(none given)");
    let key_setting = enc
        .map(|e| e.key_setting())
        .unwrap_or_else(|| "fs.s3a.encryption.key".into());
    let bucket = ctx.bucket;
    // MinIO answers an unknown key with 404 `kms:KeyNotFound`.
    if lower.contains("failed to retrieve the actual key")
        || (lower.contains("kms") && lower.contains("not found"))
        || code == Some("kms:KeyNotFound")
    {
        return format!(
            "The store could not use KMS key '{kms_key}': check that the key id exists in the \
             store's KMS and is spelled right; it comes from {key_setting}"
        );
    }
    if lower.contains("kms.notfoundexception")
        || lower.contains("invalid arn")
        || code == Some("KMS.NotFoundException")
    {
        return format!("KMS key '{kms_key}' does not exist (invalid ARN): fix {key_setting}");
    }
    if lower.contains("kms:generatedatakey")
        || lower.contains("kms:decrypt")
        || (status == Some(403) && lower.contains("kms"))
    {
        return format!(
            "The credentials may not use KMS key '{kms_key}' (writes need kms:GenerateDataKey, \
             reads kms:Decrypt): grant it to these credentials (for vended credentials, tell the \
             catalog the bucket's key), or change {key_setting}"
        );
    }
    if lower.contains("unknownissuer")
        || lower.contains("invalid peer certificate")
        || lower.contains("certificate")
    {
        return "The server's TLS certificate is not trusted: set sealcommit.tls.ca-file to the \
                PEM file of the CA that signed it"
            .to_string();
    }
    match (status, code) {
        (Some(403), Some("ExpiredToken")) | (Some(400), Some("ExpiredToken")) => {
            "The session token has expired: refresh fs.s3a.session.token (and the access and \
             secret keys issued with it)"
                .to_string()
        }
        (Some(403), Some("InvalidAccessKeyId")) | (Some(403), Some("SignatureDoesNotMatch")) => format!(
            "The store rejected the credentials: check fs.s3a.access.key and fs.s3a.secret.key \
             (or fs.s3a.bucket.{bucket}.access.key / .secret.key)"
        ),
        (Some(403), _) => format!("Access denied: check that these credentials may write to bucket '{bucket}'"),
        (Some(404), Some("NoSuchBucket")) => format!(
            "Bucket '{bucket}' does not exist on this endpoint: check the path and fs.s3a.endpoint \
             (or fs.s3a.bucket.{bucket}.endpoint)"
        ),
        (Some(501), _) => format!("The store does not implement {} for this request", ctx.op),
        (Some(400), _) if enc.is_some_and(|e| e.algorithm == crate::encryption::Algorithm::SseC) => {
            "The store rejected the SSE-C request: if the object exists, check that \
             fs.s3a.encryption.key is the key it was written with"
                .to_string()
        }
        (Some(400), _) if enc.is_some_and(|e| e.kms_key_id().is_none() && e.algorithm.header().is_some_and(|h| h.starts_with("aws:kms"))) => {
            "This store needs a KMS key id for SSE-KMS: set fs.s3a.encryption.key (or \
             sealcommit.encryption.key)"
                .to_string()
        }
        (None, _) if lower.contains("connection refused") || lower.contains("dns") || lower.contains("timed out") || lower.contains("timeout") => format!(
            "The endpoint cannot be reached: check fs.s3a.endpoint (or fs.s3a.bucket.{bucket}.endpoint)"
        ),
        _ => String::new(),
    }
}

/// Result of a HEAD.
#[derive(Debug, Clone)]
pub struct HeadInfo {
    pub size: u64,
    pub etag: Option<String>,
    pub observed: Observed,
    /// The writer id a create-only PUT stamped on the object (`x-amz-meta-sealcommit-writer`).
    pub writer: Option<String>,
}

/// The user metadata a create-only PUT carries: who wrote the object.
pub const WRITER_META: &str = "sealcommit-writer";

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// Last-modified time, milliseconds since the epoch (0 if the store did not say).
    pub modified_ms: u64,
}

/// One level of a listing: the objects directly under a prefix and its sub-"directories".
#[derive(Debug, Clone, Default)]
pub struct DirListing {
    pub objects: Vec<Listed>,
    /// Common prefixes, each ending in `/`.
    pub dirs: Vec<String>,
}

/// An object opened for reading: its body streams as it is read.
pub struct Download {
    pub body: ByteStream,
    /// The object's whole size (not only what this response carries).
    pub total: u64,
    pub etag: Option<String>,
}

/// One pending multipart upload found by listing.
#[derive(Debug, Clone)]
pub struct ListedUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<std::time::SystemTime>,
}

/// Outcome of a conditional PUT.
#[derive(Debug)]
pub enum PutOutcome {
    Written {
        etag: Option<String>,
        observed: Observed,
    },
    /// `If-None-Match: *` failed: the object exists.
    Exists,
}

/// Whether a ListMultipartUploads answer for `prefix` may be MinIO's partial one: MinIO lists
/// only an upload whose key equals the prefix, so an answer with nothing else in it says
/// nothing about the uploads under the prefix.
pub fn minio_listing_may_hide(prefix: &str, listed: &[ListedUpload]) -> bool {
    !prefix.is_empty() && listed.iter().all(|u| u.key == prefix)
}

/// A failed request as the store (or the connection) answered it, before it is interpreted:
/// what [`ObjectStore`] implementations return, and what [`map_raw`] turns into an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawError {
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The S3 error code (`NoSuchUpload`, `SlowDown`, …), if the answer had one.
    pub code: Option<String>,
    /// The S3 error message, if the answer had one.
    pub message: Option<String>,
    /// The whole failure as text (used when no status came: connection, timeout).
    pub text: String,
    /// The request could not even be built: a retry cannot help.
    pub construction: bool,
}

impl RawError {
    /// An HTTP error answer.
    pub fn http(status: u16, code: &str, message: &str) -> RawError {
        RawError {
            status: Some(status),
            code: (!code.is_empty()).then(|| code.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
            text: format!("HTTP {status} {code}: {message}"),
            construction: false,
        }
    }

    /// No answer: the connection failed or timed out.
    pub fn transport(text: impl Into<String>) -> RawError {
        RawError {
            status: None,
            code: None,
            message: None,
            text: text.into(),
            construction: false,
        }
    }

    /// The request could not be built.
    pub fn construction(text: impl Into<String>) -> RawError {
        RawError {
            construction: true,
            ..RawError::transport(text)
        }
    }
}

/// The result of one raw request.
pub type Raw<T> = std::result::Result<T, RawError>;
/// A raw request in flight (boxed: the trait is used as `dyn ObjectStore`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Raw<T>> + Send + 'a>>;

/// What a write (PutObject, CompleteMultipartUpload) answered.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// As sent (possibly quoted, possibly empty).
    pub etag: Option<String>,
    pub observed: Observed,
}

/// A GetObject answer; its body streams as it is read.
pub struct GetOutput {
    pub body: ByteStream,
    /// The bytes this answer carries.
    pub content_length: u64,
    /// `bytes <first>-<last>/<total>` for a ranged answer.
    pub content_range: Option<String>,
    pub etag: Option<String>,
}

/// A key DeleteObjects reported as not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDeleted {
    pub key: String,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default)]
pub struct ObjectsPage {
    pub objects: Vec<Listed>,
    pub dirs: Vec<String>,
    /// The continuation token, when the listing is truncated.
    pub next_token: Option<String>,
    /// The store's clock: the answer's `Date` header.
    pub date: Option<std::time::SystemTime>,
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, Default)]
pub struct UploadsPage {
    pub uploads: Vec<ListedUpload>,
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    /// The answer came from MinIO (its `Server` header).
    pub minio: bool,
}

/// The raw per-request operations of an S3 store: one method per S3 request, returning what
/// the store answered (after the transport's own retries, if it has any) without judging it.
/// Encryption headers go on each request from `enc`.
pub trait ObjectStore: Send + Sync {
    /// Attempts of CompleteMultipartUpload and AbortMultipartUpload that the store answered
    /// with throttling (503, 429) since this client was connected, the SDK's retries included:
    /// what commit parallelism backs off on (`crate::limiter`).
    fn throttled(&self) -> u64 {
        0
    }

    /// PutObject; with `create_only` (a writer id), `If-None-Match: *` and the id stamped in
    /// `x-amz-meta-sealcommit-writer` ([`WRITER_META`]).
    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: ByteStream,
        enc: &'a EncryptionSpec,
        create_only: Option<&'a str>,
    ) -> StoreFuture<'a, Written>;

    /// CreateMultipartUpload: the upload id, and the encryption the answer reports.
    fn create_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, (Option<String>, Observed)>;

    /// UploadPart: the part's ETag.
    fn upload_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        number: i32,
        body: ByteStream,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, Option<String>>;

    /// CompleteMultipartUpload of `parts` (number, ETag); `If-None-Match: *` when asked.
    #[allow(clippy::too_many_arguments)]
    fn complete_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        parts: &'a [(i32, String)],
        enc: &'a EncryptionSpec,
        if_none_match: bool,
    ) -> StoreFuture<'a, Written>;

    fn abort_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> StoreFuture<'a, ()>;

    fn head_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, HeadInfo>;

    /// GetObject from `offset` (`Range: bytes=<offset>-` when not 0), `If-Match` when given.
    fn get_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
        offset: u64,
        if_match: Option<&'a str>,
    ) -> StoreFuture<'a, GetOutput>;

    fn delete_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, ()>;

    /// DeleteObjects (quiet) of at most 1000 keys: the keys the store did not delete.
    fn delete_objects<'a>(
        &'a self,
        bucket: &'a str,
        keys: &'a [String],
    ) -> StoreFuture<'a, Vec<NotDeleted>>;

    /// One page of ListObjectsV2.
    fn list_objects<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        max_keys: Option<i32>,
        token: Option<String>,
    ) -> StoreFuture<'a, ObjectsPage>;

    /// ListParts asking for at most one part (is the upload still there?).
    fn list_parts<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// One page of ListMultipartUploads.
    fn list_multipart_uploads<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        key_marker: Option<String>,
        upload_id_marker: Option<String>,
    ) -> StoreFuture<'a, UploadsPage>;
}

/// The store plus the request counters of one job (or one CLI command).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn ObjectStore>,
    pub counters: Arc<Counters>,
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
}

impl Store {
    pub async fn connect(cfg: &StoreConfig) -> Result<Store> {
        #[cfg(any(test, feature = "fake-store"))]
        if let Some(fake) = memory::for_endpoint(cfg)? {
            return Ok(Store::over(fake));
        }
        Ok(Store::over(Arc::new(s3::S3::connect(cfg).await?)))
    }

    /// A store over `backend`, with counters of its own.
    pub fn over(backend: Arc<dyn ObjectStore>) -> Store {
        Store {
            backend,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The same client with counters of its own.
    pub fn with_new_counters(&self) -> Store {
        Store {
            backend: self.backend.clone(),
            counters: Arc::default(),
        }
    }

    /// Throttled attempts of Completes and aborts so far (see [`ObjectStore::throttled`]).
    pub fn throttled(&self) -> u64 {
        self.backend.throttled()
    }

    /// Counts a request and logs it (debug level): operation and object only.
    fn note(&self, op: &str, bucket: &str, key: &str) {
        self.counters.add(op, 1);
        log::debug!("{op} s3a://{bucket}/{key}");
    }

    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        enc: &EncryptionSpec,
        create_only: Option<&str>,
    ) -> Result<PutOutcome> {
        self.put_stream(bucket, key, ByteStream::from(body), enc, create_only)
            .await
    }

    /// One PUT of `body` (in memory or a local file); with `create_only` (a writer id), only if
    /// the key does not exist yet (`If-None-Match: *`), the object stamped with the writer id so
    /// that a retry can tell its own earlier write from another writer's.
    pub async fn put_stream(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        enc: &EncryptionSpec,
        create_only: Option<&str>,
    ) -> Result<PutOutcome> {
        self.note("PutObject", bucket, key);
        match self
            .backend
            .put_object(bucket, key, body, enc, create_only)
            .await
        {
            Ok(out) => Ok(PutOutcome::Written {
                etag: nonempty(out.etag.as_deref()),
                observed: out.observed,
            }),
            Err(e) if create_only.is_some() && e.status == Some(412) => Ok(PutOutcome::Exists),
            Err(e) => Err(map_raw(
                &Ctx {
                    op: "PutObject",
                    bucket,
                    key,
                    enc: Some(enc),
                },
                e,
            )),
        }
    }

    /// Starts a multipart upload: its id, and the encryption the store says it applies to it
    /// (empty if the response does not say; Ceph RGW and AWS do).
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        enc: &EncryptionSpec,
    ) -> Result<(String, Observed)> {
        self.note("CreateMultipartUpload", bucket, key);
        let (id, observed) = self
            .backend
            .create_multipart_upload(bucket, key, enc)
            .await
            .map_err(|e| {
                map_raw(
                    &Ctx {
                        op: "CreateMultipartUpload",
                        bucket,
                        key,
                        enc: Some(enc),
                    },
                    e,
                )
            })?;
        let id = id.ok_or_else(|| Error::Store {
            op: "CreateMultipartUpload",
            uri: format!("s3a://{bucket}/{key}"),
            status: None,
            code: None,
            detail: "the response has no upload id".into(),
            hint: String::new(),
            retryable: false,
        })?;
        Ok((id, observed))
    }

    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: ByteStream,
        enc: &EncryptionSpec,
    ) -> Result<String> {
        self.note("UploadPart", bucket, key);
        let etag = self
            .backend
            .upload_part(bucket, key, upload_id, number, body, enc)
            .await
            .map_err(|e| {
                map_raw(
                    &Ctx {
                        op: "UploadPart",
                        bucket,
                        key,
                        enc: Some(enc),
                    },
                    e,
                )
            })?;
        nonempty(etag.as_deref()).ok_or_else(|| Error::Store {
            op: "UploadPart",
            uri: format!("s3a://{bucket}/{key}"),
            status: None,
            code: None,
            detail: format!("part {number} came back without an ETag"),
            hint: String::new(),
            retryable: false,
        })
    }

    /// Completes an upload. Returns the ETag and encryption if the response carries them (RGW's
    /// does not). A `NoSuchUpload` answer is the normal outcome of a retried Complete whose
    /// first response was lost: the caller then checks the object with HEAD.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        enc: &EncryptionSpec,
        if_none_match: bool,
    ) -> Result<(Option<String>, Observed)> {
        self.note("CompleteMultipartUpload", bucket, key);
        match self
            .backend
            .complete_multipart_upload(bucket, key, upload_id, parts, enc, if_none_match)
            .await
        {
            Ok(out) => Ok((nonempty(out.etag.as_deref()), out.observed)),
            Err(e) if if_none_match && e.status == Some(412) => Err(Error::AlreadyExists {
                uri: format!("s3a://{bucket}/{key}"),
            }),
            Err(e) => Err(map_raw(
                &Ctx {
                    op: "CompleteMultipartUpload",
                    bucket,
                    key,
                    enc: Some(enc),
                },
                e,
            )),
        }
    }

    /// Aborts an upload; one that is already gone counts as aborted.
    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.note("AbortMultipartUpload", bucket, key);
        match self
            .backend
            .abort_multipart_upload(bucket, key, upload_id)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.code.as_deref() == Some("NoSuchUpload") || e.status == Some(404) => Ok(()),
            Err(e) => Err(map_raw(
                &Ctx {
                    op: "AbortMultipartUpload",
                    bucket,
                    key,
                    enc: None,
                },
                e,
            )),
        }
    }

    /// HEAD; `None` if the object does not exist.
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        enc: &EncryptionSpec,
    ) -> Result<Option<HeadInfo>> {
        self.note("HeadObject", bucket, key);
        match self.backend.head_object(bucket, key, enc).await {
            Ok(h) => Ok(Some(HeadInfo {
                etag: nonempty(h.etag.as_deref()),
                ..h
            })),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(map_raw(
                &Ctx {
                    op: "HeadObject",
                    bucket,
                    key,
                    enc: Some(enc),
                },
                e,
            )),
        }
    }

    pub async fn get(&self, bucket: &str, key: &str, enc: &EncryptionSpec) -> Result<Vec<u8>> {
        self.note("GetObject", bucket, key);
        let out = match self.backend.get_object(bucket, key, enc, 0, None).await {
            Ok(o) => o,
            Err(e) if e.status == Some(404) => {
                return Err(Error::NotFound {
                    uri: format!("s3a://{bucket}/{key}"),
                })
            }
            Err(e) => {
                return Err(map_raw(
                    &Ctx {
                        op: "GetObject",
                        bucket,
                        key,
                        enc: Some(enc),
                    },
                    e,
                ))
            }
        };
        let bytes = out.body.collect().await.map_err(|e| Error::Store {
            op: "GetObject",
            uri: format!("s3a://{bucket}/{key}"),
            status: None,
            code: None,
            detail: format!("reading the body failed: {e}"),
            hint: String::new(),
            retryable: true,
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.note("DeleteObject", bucket, key);
        self.backend.delete_object(bucket, key).await.map_err(|e| {
            map_raw(
                &Ctx {
                    op: "DeleteObject",
                    bucket,
                    key,
                    enc: None,
                },
                e,
            )
        })
    }

    /// Deletes keys in batches of 1000; any key the store could not delete is an error, which
    /// names the keys (the first [`NAMED_NOT_DELETED`]) and what the store said of each.
    pub async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(1000) {
            self.note("DeleteObjects", bucket, &format!("({} keys)", chunk.len()));
            let failed = self
                .backend
                .delete_objects(bucket, chunk)
                .await
                .map_err(|e| {
                    map_raw(
                        &Ctx {
                            op: "DeleteObjects",
                            bucket,
                            key: &chunk[0],
                            enc: None,
                        },
                        e,
                    )
                })?;
            if let Some(first) = failed.first() {
                return Err(not_deleted(bucket, chunk.len(), first, &failed));
            }
        }
        Ok(())
    }

    /// Lists every object under `prefix` (recursively).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>> {
        Ok(self.list_pages(bucket, prefix, None, None).await?.0.objects)
    }

    /// Lists one level under `prefix` (which ends in `/` or is empty): objects and
    /// sub-prefixes, as a file system lists a directory. `max_keys` stops after that many entries.
    pub async fn list_dir(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: Option<i32>,
    ) -> Result<DirListing> {
        Ok(self
            .list_pages(bucket, prefix, Some("/"), max_keys)
            .await?
            .0)
    }

    /// [`list_dir`](Self::list_dir) of a whole level, with the store's clock at the time of
    /// the listing (the `Date` header of its last page; `None` if the store sent none).
    pub async fn list_dir_dated(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<(DirListing, Option<std::time::SystemTime>)> {
        self.list_pages(bucket, prefix, Some("/"), None).await
    }

    /// ListObjectsV2 page by page (only the first page when `max_keys` is given), with the
    /// last `Date` the store sent.
    async fn list_pages(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        max_keys: Option<i32>,
    ) -> Result<(DirListing, Option<std::time::SystemTime>)> {
        let mut out = DirListing::default();
        let mut date = None;
        let mut token: Option<String> = None;
        loop {
            self.note("ListObjectsV2", bucket, prefix);
            let mut page = self
                .backend
                .list_objects(bucket, prefix, delimiter, max_keys, token.take())
                .await
                .map_err(|e| {
                    map_raw(
                        &Ctx {
                            op: "ListObjectsV2",
                            bucket,
                            key: prefix,
                            enc: None,
                        },
                        e,
                    )
                })?;
            date = page.date.or(date);
            out.objects.append(&mut page.objects);
            out.dirs.append(&mut page.dirs);
            match page.next_token {
                Some(t) if max_keys.is_none() => token = Some(t),
                _ => break,
            }
        }
        Ok((out, date))
    }

    /// Opens an object for reading from `offset`; with `if_match`, fails if the object is no
    /// longer that version (a reader that seeks must not mix two versions).
    pub async fn open_read(
        &self,
        bucket: &str,
        key: &str,
        enc: &EncryptionSpec,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<Download> {
        self.note("GetObject", bucket, key);
        let uri = || format!("s3a://{bucket}/{key}");
        match self
            .backend
            .get_object(bucket, key, enc, offset, if_match)
            .await
        {
            Ok(out) => {
                // "bytes 10-99/100": the whole size follows the slash.
                let total = out
                    .content_range
                    .as_deref()
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(offset + out.content_length);
                Ok(Download {
                    etag: nonempty(out.etag.as_deref()),
                    total,
                    body: out.body,
                })
            }
            Err(e) => match e.status {
                Some(404) => Err(Error::NotFound { uri: uri() }),
                // Reading from the end (or past it) of an object: nothing left.
                Some(416) => Ok(Download {
                    body: ByteStream::from(Vec::new()),
                    total: offset,
                    etag: if_match.map(str::to_string),
                }),
                Some(412) => Err(Error::Store {
                    op: "GetObject",
                    uri: uri(),
                    status: e.status,
                    code: Some("PreconditionFailed".into()),
                    detail: "the object was replaced while it was being read".into(),
                    hint: "open it again to read the new version".into(),
                    retryable: false,
                }),
                _ => Err(map_raw(
                    &Ctx {
                        op: "GetObject",
                        bucket,
                        key,
                        enc: Some(enc),
                    },
                    e,
                )),
            },
        }
    }

    /// Whether an upload is still pending (one ListParts asking for at most one part).
    pub async fn is_pending(&self, bucket: &str, key: &str, upload_id: &str) -> Result<bool> {
        self.note("ListParts", bucket, key);
        match self.backend.list_parts(bucket, key, upload_id).await {
            Ok(()) => Ok(true),
            Err(e) if e.status == Some(404) => Ok(false),
            Err(e) => Err(map_raw(
                &Ctx {
                    op: "ListParts",
                    bucket,
                    key,
                    enc: None,
                },
                e,
            )),
        }
    }

    /// Lists pending multipart uploads under `prefix`.
    pub async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedUpload>> {
        Ok(self.list_uploads_seen(bucket, prefix).await?.0)
    }

    /// The pending uploads under `prefix`, also on MinIO, whose ListMultipartUploads with a
    /// prefix lists only an upload whose key equals the prefix: when the answer came from MinIO
    /// (its `Server` header) and could be that, the bucket is listed without a prefix and
    /// filtered here. Other stores are asked once, as before.
    pub async fn list_uploads_under(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ListedUpload>> {
        let (listed, minio) = self.list_uploads_seen(bucket, prefix).await?;
        if !(minio && minio_listing_may_hide(prefix, &listed)) {
            return Ok(listed);
        }
        log::debug!(
            "MinIO listed no upload under s3a://{bucket}/{prefix}; listing the bucket's uploads"
        );
        let all = self.list_uploads(bucket, "").await?;
        Ok(all
            .into_iter()
            .filter(|u| u.key.starts_with(prefix))
            .collect())
    }

    /// ListMultipartUploads page by page; whether any answer came from MinIO.
    async fn list_uploads_seen(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<(Vec<ListedUpload>, bool)> {
        let mut out = Vec::new();
        let mut minio = false;
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            self.note("ListMultipartUploads", bucket, prefix);
            let mut page = self
                .backend
                .list_multipart_uploads(bucket, prefix, key_marker.take(), id_marker.take())
                .await
                .map_err(|e| {
                    map_raw(
                        &Ctx {
                            op: "ListMultipartUploads",
                            bucket,
                            key: prefix,
                            enc: None,
                        },
                        e,
                    )
                })?;
            minio |= page.minio;
            out.append(&mut page.uploads);
            if !page.truncated || page.next_key_marker.is_none() {
                break;
            }
            key_marker = page.next_key_marker;
            id_marker = page.next_upload_id_marker;
        }
        Ok((out, minio))
    }
}

/// Keys a partial DeleteObjects error names at most (the count says how many more).
pub const NAMED_NOT_DELETED: usize = 10;

/// The error of a DeleteObjects that left `failed` keys of `sent`: the object is the first key,
/// the detail names up to [`NAMED_NOT_DELETED`] keys with what the store said of each.
fn not_deleted(bucket: &str, sent: usize, first: &NotDeleted, failed: &[NotDeleted]) -> Error {
    let named: Vec<String> = failed
        .iter()
        .take(NAMED_NOT_DELETED)
        .map(|f| {
            let why = match (&f.code, &f.message) {
                (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
                (Some(c), _) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "no reason given".into(),
            };
            format!("s3a://{bucket}/{} ({why})", f.key)
        })
        .collect();
    let more = failed.len().saturating_sub(NAMED_NOT_DELETED);
    Error::Store {
        op: "DeleteObjects",
        uri: format!("s3a://{bucket}/{}", first.key),
        status: None,
        code: first.code.clone(),
        detail: format!(
            "{} of {sent} keys were not deleted: {}{}",
            failed.len(),
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
        hint: String::new(),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str) -> ListedUpload {
        ListedUpload {
            key: key.into(),
            upload_id: "u".into(),
            initiated: None,
        }
    }

    #[test]
    fn minio_is_told_by_its_server_header() {
        assert!(server_is_minio(Some("MinIO")));
        assert!(server_is_minio(Some("minio ")));
        for other in [
            None,
            Some(""),
            Some("AmazonS3"),
            Some("Ceph Object Gateway (pacific)"),
        ] {
            assert!(!server_is_minio(other), "{other:?}");
        }
    }

    #[test]
    fn a_minio_prefix_listing_may_hide_uploads_only_when_it_holds_no_other_key() {
        assert!(minio_listing_may_hide("d/t/", &[]));
        assert!(minio_listing_may_hide("d/t/", &[listed("d/t/")]));
        assert!(!minio_listing_may_hide("d/t/", &[listed("d/t/part-0")]));
        assert!(!minio_listing_may_hide("", &[]));
    }
    use crate::config::Conf;
    /// The hint for an error a store answers with, for a write with SSE-KMS key `k1`.
    fn hint_for(status: Option<u16>, code: Option<&str>, detail: &str) -> String {
        let enc = Conf::from_iter([
            ("fs.s3a.encryption.algorithm", "SSE-KMS"),
            ("fs.s3a.encryption.key", "k1"),
        ])
        .encryption("b")
        .unwrap();
        let ctx = Ctx {
            op: "CreateMultipartUpload",
            bucket: "b",
            key: "t/part-0",
            enc: Some(&enc),
        };
        hint(&ctx, status, code, detail)
    }

    // Errors AWS gives that the test stores cannot produce; the messages are AWS's.
    #[test]
    fn kms_access_denied_names_the_permission_and_the_key() {
        let h = hint_for(
            Some(403),
            Some("AccessDenied"),
            "HTTP 403 AccessDenied: User: arn:aws:sts::1:assumed-role/vended is not authorized to \
             perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:1:key/k1",
        );
        assert!(
            h.contains("kms:GenerateDataKey") && h.contains("'k1'"),
            "{h}"
        );
        assert!(h.contains("fs.s3a.encryption.key"), "{h}");
        let h = hint_for(
            Some(403),
            Some("AccessDenied"),
            "HTTP 403 AccessDenied: kms:Decrypt",
        );
        assert!(h.contains("kms:Decrypt"), "{h}");
    }

    #[test]
    fn invalid_kms_arn_and_expired_token_and_not_implemented() {
        let h = hint_for(
            Some(400),
            Some("KMS.NotFoundException"),
            "HTTP 400 KMS.NotFoundException: Invalid arn us-east-1",
        );
        assert!(
            h.contains("does not exist") && h.contains("fs.s3a.encryption.key"),
            "{h}"
        );
        let h = hint_for(Some(400), Some("ExpiredToken"), "HTTP 400 ExpiredToken");
        assert!(h.contains("fs.s3a.session.token"), "{h}");
        let h = hint_for(Some(501), Some("NotImplemented"), "HTTP 501 NotImplemented");
        assert!(
            h.contains("does not implement CreateMultipartUpload"),
            "{h}"
        );
        let h = hint_for(
            Some(403),
            Some("InvalidAccessKeyId"),
            "HTTP 403 InvalidAccessKeyId",
        );
        assert!(h.contains("fs.s3a.access.key"), "{h}");
    }

    #[test]
    fn minio_unknown_key_names_the_key_and_the_setting() {
        let h = hint_for(
            Some(404),
            Some("kms:KeyNotFound"),
            "HTTP 404 kms:KeyNotFound",
        );
        assert!(
            h.contains("'k1'") && h.contains("fs.s3a.encryption.key"),
            "{h}"
        );
    }

    #[test]
    fn sse_c_with_the_wrong_key_says_which_setting_holds_it() {
        let enc = Conf::from_iter([
            ("fs.s3a.encryption.algorithm", "SSE-C"),
            (
                "fs.s3a.encryption.key",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
        ])
        .encryption("b")
        .unwrap();
        let ctx = Ctx {
            op: "HeadObject",
            bucket: "b",
            key: "t/part-0",
            enc: Some(&enc),
        };
        let h = hint(&ctx, Some(400), None, "HTTP 400");
        assert!(
            h.contains("fs.s3a.encryption.key is the key it was written with"),
            "{h}"
        );
        assert!(!h.contains("MDEyMzQ1"), "the key itself never appears: {h}");
    }
}
