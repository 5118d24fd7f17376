//! The real store: `aws-sdk-s3` with one cached client per connection identity (endpoint,
//! region, credentials, TLS trust), rustls with an optional PEM CA file, checksums only when
//! required (Ceph RGW rejects aws-chunked trailers) and the SDK's standard retries
//! (`sealcommit.retry.max-attempts`, backoff from 200 ms). Each method is one request as the
//! SDK sends it (retries included); what the answer means is decided above, in `store`.

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

use super::{
    Ctx, GetOutput, HeadInfo, Listed, ListedUpload, NotDeleted, ObjectStore, ObjectsPage, RawError,
    StoreFuture, UploadsPage, Written, WRITER_META,
};
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

/// Turns an SDK error into an `Error` with a hint naming the setting to change.
pub fn map_sdk_err<E, R>(ctx: &Ctx<'_>, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus,
{
    super::map_raw(ctx, raw(err))
}

/// What the store (or the connection) answered, as the store-neutral [`RawError`].
fn raw<E, R>(err: SdkError<E, R>) -> RawError
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
    RawError {
        status,
        code,
        message,
        text: DisplayErrorContext(&err).to_string(),
        construction: matches!(err, SdkError::ConstructionFailure(_)),
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

fn millis(t: Option<&aws_smithy_types::DateTime>) -> u64 {
    t.and_then(|t| t.to_millis().ok())
        .map(|m| m.max(0) as u64)
        .unwrap_or(0)
}

/// What an interceptor on a request sees of each response: every attempt, also those the SDK
/// retried and got past, which the caller never hears of otherwise. [`OnResponse`] makes one an
/// SDK interceptor (`.customize().interceptor(OnResponse(x.clone()))`).
pub trait SeeResponse: std::fmt::Debug + Send + Sync + 'static {
    const NAME: &'static str;
    fn see(&self, response: &aws_smithy_runtime_api::client::orchestrator::HttpResponse);
}

/// The SDK interceptor of a [`SeeResponse`].
#[derive(Debug)]
pub struct OnResponse<T>(pub T);

impl<T: SeeResponse> aws_smithy_runtime_api::client::interceptors::Intercept for OnResponse<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.see(context.response());
        Ok(())
    }
}

/// The store's own clock, read from the `Date` header of a response: lease decisions compare
/// the store's times with each other, not with a local clock that may be skewed.
#[derive(Debug, Clone, Default)]
pub struct StoreClock(Arc<Mutex<Option<std::time::SystemTime>>>);

impl StoreClock {
    /// The `Date` of the last response seen, if any.
    pub fn get(&self) -> Option<std::time::SystemTime> {
        // One assignment per update: a lock poisoned by a panic elsewhere still holds a whole value.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SeeResponse for StoreClock {
    const NAME: &'static str = "sealcommit-store-clock";

    fn see(&self, response: &aws_smithy_runtime_api::client::orchestrator::HttpResponse) {
        let date = response
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
    }
}

/// Counts the attempts of a request the store answered with throttling (503 SlowDown or
/// Service Unavailable, 429), retried ones included.
#[derive(Debug, Clone, Default)]
pub struct Throttles(Arc<std::sync::atomic::AtomicU64>);

impl Throttles {
    pub fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl SeeResponse for Throttles {
    const NAME: &'static str = "sealcommit-throttles";

    fn see(&self, response: &aws_smithy_runtime_api::client::orchestrator::HttpResponse) {
        if matches!(response.status().as_u16(), 503 | 429) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Whether the store that answered is MinIO, from the `Server` header of a response (MinIO and
/// AIStor answer `MinIO`).
#[derive(Debug, Clone, Default)]
pub struct ServerHeader(Arc<std::sync::atomic::AtomicBool>);

impl ServerHeader {
    pub fn is_minio(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl SeeResponse for ServerHeader {
    const NAME: &'static str = "sealcommit-server-header";

    fn see(&self, response: &aws_smithy_runtime_api::client::orchestrator::HttpResponse) {
        if server_is_minio(response.headers().get("server")) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// `Server: MinIO` (community MinIO and AIStor); any other answer, or none, is not MinIO.
pub fn server_is_minio(server: Option<&str>) -> bool {
    server.is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("minio"))
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

/// The real store behind [`super::Store`]: one cached SDK client.
pub(super) struct S3 {
    client: Client,
    /// Throttled attempts of this connection's Completes and aborts.
    throttles: Throttles,
}

impl S3 {
    pub(super) async fn connect(cfg: &StoreConfig) -> Result<S3> {
        Ok(S3 {
            client: client_for(cfg).await?,
            throttles: Throttles::default(),
        })
    }
}

impl ObjectStore for S3 {
    fn throttled(&self) -> u64 {
        self.throttles.count()
    }

    fn put_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        body: ByteStream,
        enc: &'a EncryptionSpec,
        create_only: Option<&'a str>,
    ) -> StoreFuture<'a, Written> {
        Box::pin(async move {
            let mut req =
                enc.apply_put(self.client.put_object().bucket(bucket).key(key).body(body));
            if let Some(writer) = create_only {
                req = req.if_none_match("*").metadata(WRITER_META, writer);
            }
            let out = req.send().await.map_err(raw)?;
            Ok(Written {
                etag: out.e_tag().map(str::to_string),
                observed: observed(
                    out.server_side_encryption(),
                    out.ssekms_key_id(),
                    out.sse_customer_key_md5(),
                ),
            })
        })
    }

    fn create_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, (Option<String>, Observed)> {
        Box::pin(async move {
            let out = enc
                .apply_create(
                    self.client
                        .create_multipart_upload()
                        .bucket(bucket)
                        .key(key),
                )
                .send()
                .await
                .map_err(raw)?;
            Ok((
                out.upload_id().map(str::to_string),
                observed(
                    out.server_side_encryption(),
                    out.ssekms_key_id(),
                    out.sse_customer_key_md5(),
                ),
            ))
        })
    }

    fn upload_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        number: i32,
        body: ByteStream,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
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
                .map_err(raw)?;
            Ok(out.e_tag().map(str::to_string))
        })
    }

    fn complete_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        parts: &'a [(i32, String)],
        enc: &'a EncryptionSpec,
        if_none_match: bool,
    ) -> StoreFuture<'a, Written> {
        Box::pin(async move {
            let completed = CompletedMultipartUpload::builder()
                .set_parts(Some(
                    parts
                        .iter()
                        .map(|(n, etag)| {
                            CompletedPart::builder().part_number(*n).e_tag(etag).build()
                        })
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
            let out = enc
                .apply_complete(req)
                .customize()
                .interceptor(OnResponse(self.throttles.clone()))
                .send()
                .await
                .map_err(raw)?;
            Ok(Written {
                etag: out.e_tag().map(str::to_string),
                observed: observed(out.server_side_encryption(), out.ssekms_key_id(), None),
            })
        })
    }

    fn abort_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .customize()
                .interceptor(OnResponse(self.throttles.clone()))
                .send()
                .await
                .map_err(raw)?;
            Ok(())
        })
    }

    fn head_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, HeadInfo> {
        Box::pin(async move {
            let out = enc
                .apply_head(self.client.head_object().bucket(bucket).key(key))
                .send()
                .await
                .map_err(raw)?;
            Ok(HeadInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: out.e_tag().map(str::to_string),
                observed: observed(
                    out.server_side_encryption(),
                    out.ssekms_key_id(),
                    out.sse_customer_key_md5(),
                ),
                writer: out.metadata().and_then(|m| m.get(WRITER_META)).cloned(),
            })
        })
    }

    fn get_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        enc: &'a EncryptionSpec,
        offset: u64,
        if_match: Option<&'a str>,
    ) -> StoreFuture<'a, GetOutput> {
        Box::pin(async move {
            let mut req = enc.apply_get(self.client.get_object().bucket(bucket).key(key));
            if offset > 0 {
                req = req.range(format!("bytes={offset}-"));
            }
            if let Some(tag) = if_match {
                req = req.if_match(format!("\"{tag}\""));
            }
            let out = req.send().await.map_err(raw)?;
            Ok(GetOutput {
                content_length: out.content_length().unwrap_or(0).max(0) as u64,
                content_range: out.content_range().map(str::to_string),
                etag: out.e_tag().map(str::to_string),
                body: out.body,
            })
        })
    }

    fn delete_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(raw)?;
            Ok(())
        })
    }

    fn delete_objects<'a>(
        &'a self,
        bucket: &'a str,
        keys: &'a [String],
    ) -> StoreFuture<'a, Vec<NotDeleted>> {
        Box::pin(async move {
            let ids: Vec<ObjectIdentifier> = keys
                .iter()
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| RawError::construction(format!("DeleteObjects request: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(raw)?;
            Ok(out
                .errors()
                .iter()
                .map(|e| NotDeleted {
                    key: e.key().unwrap_or("").to_string(),
                    code: e.code().map(str::to_string),
                    message: e.message().map(str::to_string),
                })
                .collect())
        })
    }

    fn list_objects<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        max_keys: Option<i32>,
        token: Option<String>,
    ) -> StoreFuture<'a, ObjectsPage> {
        Box::pin(async move {
            let clock = StoreClock::default();
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_max_keys(max_keys)
                .set_continuation_token(token)
                .customize()
                .interceptor(OnResponse(clock.clone()))
                .send()
                .await
                .map_err(raw)?;
            let mut out = ObjectsPage {
                date: clock.get(),
                ..ObjectsPage::default()
            };
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
            if page.is_truncated() == Some(true) {
                out.next_token = page.next_continuation_token().map(str::to_string);
            }
            Ok(out)
        })
    }

    fn list_parts<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .max_parts(1)
                .send()
                .await
                .map_err(raw)?;
            Ok(())
        })
    }

    fn list_multipart_uploads<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        key_marker: Option<String>,
        upload_id_marker: Option<String>,
    ) -> StoreFuture<'a, UploadsPage> {
        Box::pin(async move {
            let server = ServerHeader::default();
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_upload_id_marker(upload_id_marker)
                .customize()
                .interceptor(OnResponse(server.clone()))
                .send()
                .await
                .map_err(raw)?;
            let uploads = page
                .uploads()
                .iter()
                .filter_map(|u| match (u.key(), u.upload_id()) {
                    (Some(k), Some(id)) => Some(ListedUpload {
                        key: k.to_string(),
                        upload_id: id.to_string(),
                        initiated: u
                            .initiated()
                            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                    }),
                    _ => None,
                })
                .collect();
            Ok(UploadsPage {
                uploads,
                truncated: page.is_truncated() == Some(true),
                next_key_marker: page.next_key_marker().map(str::to_string),
                next_upload_id_marker: page.next_upload_id_marker().map(str::to_string),
                minio: server.is_minio(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
