//! Store access: one cached `aws-sdk-s3` client per connection identity (endpoint, region,
//! credentials, TLS trust), rustls with an optional PEM CA file, checksums only when required
//! (Ceph RGW rejects aws-chunked trailers), and every failure turned into an `Error` that says
//! what to do. Requests are counted per operation for the `_SUCCESS` report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};

use crate::config::{CredentialsConfig, StoreConfig};
use crate::encryption::{EncryptionSpec, Observed};
use crate::error::{Error, Result};
use crate::tls::load_ca_file;

/// Clients kept at most: a long-lived driver whose session token rotates gets a new client per
/// token (the token is part of the key), and the least recently used ones go.
const MAX_CLIENTS: usize = 32;

/// The most recently used values last; beyond `cap` entries the least recently used is dropped.
/// A handful of entries, so a linear scan is cheaper than any index.
struct Recent<K, V> {
    cap: usize,
    entries: Vec<(K, V)>,
}

impl<K: PartialEq, V: Clone> Recent<K, V> {
    const fn new(cap: usize) -> Self {
        Recent {
            cap,
            entries: Vec::new(),
        }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at);
        let value = entry.1.clone();
        self.entries.push(entry);
        Some(value)
    }

    fn insert(&mut self, key: K, value: V) {
        self.entries.retain(|(k, _)| k != &key);
        self.entries.push((key, value));
        if self.entries.len() > self.cap {
            let extra = self.entries.len() - self.cap;
            self.entries.drain(..extra);
        }
    }
}

/// Cached clients by connection identity (credentials included). Each update leaves the cache
/// whole, so a lock poisoned by a panic elsewhere is used as it is.
fn clients() -> MutexGuard<'static, Recent<StoreConfig, Client>> {
    static CLIENTS: Mutex<Recent<StoreConfig, Client>> = Mutex::new(Recent::new(MAX_CLIENTS));
    CLIENTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A client for this connection identity, built once per process (while among the
/// [`MAX_CLIENTS`] most recently used). With the default credential chain the client's own
/// provider refreshes the credentials, so one client serves them all.
pub async fn client_for(cfg: &StoreConfig) -> Result<Client> {
    if let Some(c) = clients().get(cfg) {
        return Ok(c);
    }
    let client = build_client(cfg).await?;
    clients().insert(cfg.clone(), client.clone());
    Ok(client)
}

async fn build_client(cfg: &StoreConfig) -> Result<Client> {
    let mut trust = TrustStore::empty().with_native_roots(cfg.native_roots);
    if let Some(ca) = &cfg.ca_file {
        trust = trust.with_pem_certificate(load_ca_file(ca, "sealcommit.tls.ca-file")?);
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| Error::config("sealcommit.tls.ca-file", format!("TLS setup failed: {e}")))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(cfg.region.clone()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(cfg.max_attempts)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    loader = match &cfg.credentials {
        CredentialsConfig::Static {
            access_key,
            secret_key,
            session_token,
        } => loader.credentials_provider(Credentials::new(
            access_key.expose(),
            secret_key.expose(),
            session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "fs.s3a",
        )),
        CredentialsConfig::Anonymous => loader.no_credentials(),
        CredentialsConfig::DefaultChain => loader,
    };
    if let Some(endpoint) = &cfg.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(cfg.path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(conf))
}

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

/// Turns an SDK error into an `Error` with a hint naming the setting to change.
pub fn map_sdk_err<E, R>(ctx: &Ctx<'_>, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let status = err.raw_response().map(|r| r.status_code());
    let (code, message) = match &err {
        SdkError::ServiceError(_) => (
            err.code().map(str::to_string),
            err.message().map(str::to_string),
        ),
        _ => (None, None),
    };
    let detail = match (&status, &code, &message) {
        (Some(s), c, m) if code.is_some() || message.is_some() => format!(
            "HTTP {s} {}{}",
            c.as_deref().unwrap_or(""),
            m.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        (Some(s), _, _) => format!("HTTP {s}"),
        _ => DisplayErrorContext(&err).to_string(),
    };
    let retryable = match status {
        Some(s) => s >= 500 || s == 429,
        None => !matches!(err, SdkError::ConstructionFailure(_)),
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

/// Lets `map_sdk_err` read the status of any raw response type the SDK hands back.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
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

fn millis(t: Option<&aws_smithy_types::DateTime>) -> u64 {
    t.and_then(|t| t.to_millis().ok())
        .map(|m| m.max(0) as u64)
        .unwrap_or(0)
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

/// The store's own clock, read from the `Date` header of a response (an interceptor on the
/// request): lease decisions compare the store's times with each other, not with a local clock
/// that may be skewed.
#[derive(Debug, Clone, Default)]
pub struct StoreClock(Arc<Mutex<Option<std::time::SystemTime>>>);

impl StoreClock {
    /// The `Date` of the last response seen, if any.
    pub fn get(&self) -> Option<std::time::SystemTime> {
        // One assignment per update: a lock poisoned by a panic elsewhere still holds a whole value.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for StoreClock {
    fn name(&self) -> &'static str {
        "sealcommit-store-clock"
    }

    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| {
                aws_smithy_types::DateTime::from_str(
                    d,
                    aws_smithy_types::date_time::Format::HttpDate,
                )
                .ok()
            })
            .and_then(|d| std::time::SystemTime::try_from(d).ok());
        if let Some(d) = date {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(d);
        }
        Ok(())
    }
}

/// Whether a ListMultipartUploads answer for `prefix` may be MinIO's partial one: MinIO lists
/// only an upload whose key equals the prefix, so an answer with nothing else in it says
/// nothing about the uploads under the prefix.
pub fn minio_listing_may_hide(prefix: &str, listed: &[ListedUpload]) -> bool {
    !prefix.is_empty() && listed.iter().all(|u| u.key == prefix)
}

/// Whether the store that answered is MinIO, from the `Server` header of a response (an
/// interceptor on the request; MinIO and AIStor answer `MinIO`).
#[derive(Debug, Clone, Default)]
pub struct ServerHeader(Arc<std::sync::atomic::AtomicBool>);

impl ServerHeader {
    pub fn is_minio(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for ServerHeader {
    fn name(&self) -> &'static str {
        "sealcommit-server-header"
    }

    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if server_is_minio(context.response().headers().get("server")) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

/// `Server: MinIO` (community MinIO and AIStor); any other answer, or none, is not MinIO.
pub fn server_is_minio(server: Option<&str>) -> bool {
    server.is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("minio"))
}

/// The client plus the request counters of one job (or one CLI command).
#[derive(Clone)]
pub struct Store {
    client: Client,
    pub counters: Arc<Counters>,
}

fn observed(
    alg: Option<&aws_sdk_s3::types::ServerSideEncryption>,
    kms: Option<&str>,
    md5: Option<&str>,
) -> Observed {
    Observed {
        algorithm: alg.map(|a| a.as_str().to_string()),
        kms_key_id: kms.map(str::to_string),
        sse_c_md5: md5.map(str::to_string),
    }
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
}

impl Store {
    pub async fn connect(cfg: &StoreConfig) -> Result<Store> {
        Ok(Store {
            client: client_for(cfg).await?,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The same client with counters of its own.
    pub fn with_new_counters(&self) -> Store {
        Store {
            client: self.client.clone(),
            counters: Arc::default(),
        }
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
        let mut req = enc.apply_put(self.client.put_object().bucket(bucket).key(key).body(body));
        if let Some(writer) = create_only {
            req = req.if_none_match("*").metadata(WRITER_META, writer);
        }
        let if_none_match = create_only.is_some();
        match req.send().await {
            Ok(out) => Ok(PutOutcome::Written {
                etag: nonempty(out.e_tag()),
                observed: observed(
                    out.server_side_encryption(),
                    out.ssekms_key_id(),
                    out.sse_customer_key_md5(),
                ),
            }),
            Err(e)
                if if_none_match
                    && e.raw_response().is_some_and(|r| r.status().as_u16() == 412) =>
            {
                Ok(PutOutcome::Exists)
            }
            Err(e) => Err(map_sdk_err(
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
        let out = enc
            .apply_create(
                self.client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(key),
            )
            .send()
            .await
            .map_err(|e| {
                map_sdk_err(
                    &Ctx {
                        op: "CreateMultipartUpload",
                        bucket,
                        key,
                        enc: Some(enc),
                    },
                    e,
                )
            })?;
        let id = out
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| Error::Store {
                op: "CreateMultipartUpload",
                uri: format!("s3a://{bucket}/{key}"),
                status: None,
                code: None,
                detail: "the response has no upload id".into(),
                hint: String::new(),
                retryable: false,
            })?;
        Ok((
            id,
            observed(
                out.server_side_encryption(),
                out.ssekms_key_id(),
                out.sse_customer_key_md5(),
            ),
        ))
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
        let out = enc
            .apply_upload_part(
                self.client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(body),
            )
            .send()
            .await
            .map_err(|e| {
                map_sdk_err(
                    &Ctx {
                        op: "UploadPart",
                        bucket,
                        key,
                        enc: Some(enc),
                    },
                    e,
                )
            })?;
        nonempty(out.e_tag()).ok_or_else(|| Error::Store {
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
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
                    .collect(),
            ))
            .build();
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed);
        if if_none_match {
            req = req.if_none_match("*");
        }
        match enc.apply_complete(req).send().await {
            Ok(out) => Ok((
                nonempty(out.e_tag()),
                observed(out.server_side_encryption(), out.ssekms_key_id(), None),
            )),
            Err(e)
                if if_none_match
                    && e.raw_response().is_some_and(|r| r.status().as_u16() == 412) =>
            {
                Err(Error::AlreadyExists {
                    uri: format!("s3a://{bucket}/{key}"),
                })
            }
            Err(e) => Err(map_sdk_err(
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
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.code() == Some("NoSuchUpload")
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(())
            }
            Err(e) => Err(map_sdk_err(
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
        match enc
            .apply_head(self.client.head_object().bucket(bucket).key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(HeadInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: nonempty(out.e_tag()),
                observed: observed(
                    out.server_side_encryption(),
                    out.ssekms_key_id(),
                    out.sse_customer_key_md5(),
                ),
                writer: out.metadata().and_then(|m| m.get(WRITER_META)).cloned(),
            })),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(map_sdk_err(
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
        let out = match enc
            .apply_get(self.client.get_object().bucket(bucket).key(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Err(Error::NotFound {
                    uri: format!("s3a://{bucket}/{key}"),
                })
            }
            Err(e) => {
                return Err(map_sdk_err(
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
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                map_sdk_err(
                    &Ctx {
                        op: "DeleteObject",
                        bucket,
                        key,
                        enc: None,
                    },
                    e,
                )
            })?;
        Ok(())
    }

    /// Deletes keys in batches of 1000; any key the store could not delete is an error.
    pub async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(1000) {
            self.note("DeleteObjects", bucket, &format!("({} keys)", chunk.len()));
            let ids: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| Error::document("DeleteObjects request", e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| {
                    map_sdk_err(
                        &Ctx {
                            op: "DeleteObjects",
                            bucket,
                            key: &chunk[0],
                            enc: None,
                        },
                        e,
                    )
                })?;
            if let Some(err) = out.errors().first() {
                return Err(Error::Store {
                    op: "DeleteObjects",
                    uri: format!("s3a://{bucket}/{}", err.key().unwrap_or("")),
                    status: None,
                    code: err.code().map(str::to_string),
                    detail: format!(
                        "{} of {} keys were not deleted: {}",
                        out.errors().len(),
                        chunk.len(),
                        err.message().unwrap_or("")
                    ),
                    hint: String::new(),
                    retryable: true,
                });
            }
        }
        Ok(())
    }

    /// Lists every object under `prefix` (recursively).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>> {
        Ok(self
            .list_pages(bucket, prefix, None, None, None)
            .await?
            .objects)
    }

    /// Lists one level under `prefix` (which ends in `/` or is empty): objects and
    /// sub-prefixes, as a file system lists a directory. `max_keys` stops after that many entries.
    pub async fn list_dir(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: Option<i32>,
    ) -> Result<DirListing> {
        self.list_pages(bucket, prefix, Some("/"), max_keys, None)
            .await
    }

    /// [`list_dir`](Self::list_dir) of a whole level, with the store's clock at the time of
    /// the listing (the `Date` header of its last page; `None` if the store sent none).
    pub async fn list_dir_dated(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<(DirListing, Option<std::time::SystemTime>)> {
        let clock = StoreClock::default();
        let listing = self
            .list_pages(bucket, prefix, Some("/"), None, Some(&clock))
            .await?;
        Ok((listing, clock.get()))
    }

    /// ListObjectsV2 page by page (only the first page when `max_keys` is given).
    async fn list_pages(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        max_keys: Option<i32>,
        clock: Option<&StoreClock>,
    ) -> Result<DirListing> {
        let mut out = DirListing::default();
        let mut token: Option<String> = None;
        loop {
            self.note("ListObjectsV2", bucket, prefix);
            let req = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_max_keys(max_keys)
                .set_continuation_token(token.take());
            let sent = match clock {
                Some(c) => req.customize().interceptor(c.clone()).send().await,
                None => req.send().await,
            };
            let page = sent.map_err(|e| {
                map_sdk_err(
                    &Ctx {
                        op: "ListObjectsV2",
                        bucket,
                        key: prefix,
                        enc: None,
                    },
                    e,
                )
            })?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.objects.push(Listed {
                        key: k.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified_ms: millis(o.last_modified()),
                    });
                }
            }
            for p in page.common_prefixes() {
                if let Some(p) = p.prefix() {
                    out.dirs.push(p.to_string());
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) && max_keys.is_none() => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
        Ok(out)
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
        let mut req = enc.apply_get(self.client.get_object().bucket(bucket).key(key));
        if offset > 0 {
            req = req.range(format!("bytes={offset}-"));
        }
        if let Some(tag) = if_match {
            req = req.if_match(format!("\"{tag}\""));
        }
        let uri = || format!("s3a://{bucket}/{key}");
        match req.send().await {
            Ok(out) => {
                let len = out.content_length().unwrap_or(0).max(0) as u64;
                // "bytes 10-99/100": the whole size follows the slash.
                let total = out
                    .content_range()
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(offset + len);
                Ok(Download {
                    etag: nonempty(out.e_tag()),
                    total,
                    body: out.body,
                })
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                match status {
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
                        status,
                        code: Some("PreconditionFailed".into()),
                        detail: "the object was replaced while it was being read".into(),
                        hint: "open it again to read the new version".into(),
                        retryable: false,
                    }),
                    _ => Err(map_sdk_err(
                        &Ctx {
                            op: "GetObject",
                            bucket,
                            key,
                            enc: Some(enc),
                        },
                        e,
                    )),
                }
            }
        }
    }

    /// Lists pending multipart uploads under `prefix`.
    /// Whether an upload is still pending (one ListParts asking for at most one part).
    pub async fn is_pending(&self, bucket: &str, key: &str, upload_id: &str) -> Result<bool> {
        self.note("ListParts", bucket, key);
        match self
            .client
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .max_parts(1)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(map_sdk_err(
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

    pub async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedUpload>> {
        self.list_uploads_seen(bucket, prefix, None).await
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
        let server = ServerHeader::default();
        let listed = self
            .list_uploads_seen(bucket, prefix, Some(&server))
            .await?;
        if !(server.is_minio() && minio_listing_may_hide(prefix, &listed)) {
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

    async fn list_uploads_seen(
        &self,
        bucket: &str,
        prefix: &str,
        server: Option<&ServerHeader>,
    ) -> Result<Vec<ListedUpload>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            self.note("ListMultipartUploads", bucket, prefix);
            let req = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take());
            let sent = match server {
                Some(s) => req.customize().interceptor(s.clone()).send().await,
                None => req.send().await,
            };
            let page = sent.map_err(|e| {
                map_sdk_err(
                    &Ctx {
                        op: "ListMultipartUploads",
                        bucket,
                        key: prefix,
                        enc: None,
                    },
                    e,
                )
            })?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(ListedUpload {
                        key: k.to_string(),
                        upload_id: id.to_string(),
                        initiated: u
                            .initiated()
                            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_string);
                id_marker = page.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(out)
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

    #[test]
    fn the_client_cache_keeps_the_most_recently_used() {
        let mut r = Recent::new(3);
        for k in 1..=3 {
            r.insert(k, k * 10);
        }
        assert_eq!(r.get(&1), Some(10)); // 1 is now the most recent
        r.insert(4, 40); // evicts 2, the least recently used
        assert_eq!(r.get(&2), None);
        assert_eq!(r.get(&3), Some(30));
        r.insert(3, 31); // replaces, does not grow
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.get(&3), Some(31));
    }

    #[test]
    fn a_rotated_session_token_gets_a_new_client_and_old_ones_are_evicted() {
        let with_token = |n: usize| {
            let conf: Conf = [
                ("fs.s3a.endpoint", "http://127.0.0.1:9"),
                ("fs.s3a.access.key", "AKIDEXAMPLE"),
                ("fs.s3a.secret.key", "secret"),
                ("fs.s3a.session.token", &format!("token-{n}")),
            ]
            .into_iter()
            .collect();
            StoreConfig::resolve(&conf, "b").unwrap()
        };
        assert_ne!(with_token(1), with_token(2));
        // The cache of the process, as a driver whose token rotates would fill it.
        crate::runtime::block_on(async {
            for n in 0..MAX_CLIENTS + 8 {
                client_for(&with_token(n)).await.unwrap();
            }
        })
        .unwrap();
        let cache = clients();
        let cached = &cache.entries;
        assert!(cached.len() <= MAX_CLIENTS, "{} clients", cached.len());
        let has = |n: usize| cached.iter().any(|(k, _)| k == &with_token(n));
        assert!((0..8).all(|n| !has(n)), "the oldest clients are evicted");
        assert!((MAX_CLIENTS..).take(8).all(has), "the newest are kept");
    }

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
