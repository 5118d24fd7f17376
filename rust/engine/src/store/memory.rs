//! An in-memory S3 store for deterministic tests: buckets of objects (bytes, ETag, user
//! metadata, the encryption the store applied, Last-Modified by the store's own clock),
//! multipart uploads with their parts, `If-None-Match: *` on PutObject and
//! CompleteMultipartUpload, ranged and `If-Match` reads, listings with pages — and a script of
//! failures. Compiled only in tests and with the `fake-store` feature.
//!
//! **Reached by the endpoint.** A test registers a store under a name ([`MemoryStore::register`])
//! and sets `fs.s3a.endpoint` to [`MemoryStore::endpoint`] (`https://<name>.memory.invalid`: a
//! valid https URL whose host can never resolve, so the configuration code accepts it unchanged
//! and a release build, which has no fake, could never reach anything with it). `Store::connect`
//! then hands the protocol code this store instead of an S3 client, and jobs and checkpoint
//! writers run exactly as they do over the network.
//!
//! **Requests and retries.** `aws-sdk-s3` retries a request itself (standard mode, up to
//! `sealcommit.retry.max-attempts` attempts) when the answer is 5xx, 429 or a throttling code,
//! or when no answer came (connection reset, timeout, a lost response); `Store` sees only the
//! last attempt. The fake does the same per call — no backoff sleep, no retry quota — so a
//! scripted fault is one HTTP attempt, as a fault proxy injects it: one lost response is
//! retried and the retry meets what the first attempt did (a Complete answers `NoSuchUpload`,
//! a create-only PUT `412`), and a storm longer than the attempts reaches the engine. Every
//! attempt is recorded ([`MemoryStore::attempts`]); the engine's counters count calls. Throttled
//! attempts (503, 429) of Completes and aborts are counted for the engine as the S3 client
//! counts them (`ObjectStore::throttled`).
//!
//! **Latency.** Calls answer at once unless CreateMultipartUpload, UploadPart or
//! CompleteMultipartUpload is given a latency ([`MemoryStore::set_latency`]); then its calls
//! overlap as over a network, and the store records how many were in flight at each arrival
//! ([`MemoryStore::in_flight_at_arrival`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use md5::{Digest, Md5};

use super::{
    GetOutput, HeadInfo, Listed, ListedUpload, NotDeleted, ObjectStore, ObjectsPage, Raw, RawError,
    StoreFuture, UploadsPage, Written,
};
use crate::config::StoreConfig;
use crate::encryption::{EncryptionSpec, Observed};
use crate::error::{Error, Result};

/// The host suffix of a memory store's endpoint.
const HOST_SUFFIX: &str = ".memory.invalid";

fn registry() -> MutexGuard<'static, HashMap<String, Arc<MemoryStore>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The registered memory store `cfg.endpoint` names, as a client with the configured retry
/// attempts; `None` for any other endpoint.
pub(super) fn for_endpoint(cfg: &StoreConfig) -> Result<Option<Arc<dyn ObjectStore>>> {
    let Some(name) = cfg
        .endpoint
        .as_deref()
        .and_then(|e| e.split_once("://"))
        .and_then(|(_, host)| host.strip_suffix(HOST_SUFFIX))
    else {
        return Ok(None);
    };
    let store = registry().get(name).cloned().ok_or_else(|| {
        Error::config(
            "fs.s3a.endpoint",
            format!("no memory store named '{name}' is registered"),
        )
    })?;
    Ok(Some(Arc::new(MemoryClient {
        store,
        max_attempts: cfg.max_attempts.max(1),
        throttled: Default::default(),
    })))
}

/// What a scripted attempt does instead of (or after) being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An HTTP error answer; the request is not applied.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// The store applies the request, then the connection drops before the answer arrives.
    LoseResponse,
    /// No answer at all (the request is not applied): a timeout.
    Timeout,
}

impl Fault {
    /// `503 SlowDown`, the answer of a store under load.
    pub fn slow_down() -> Fault {
        Fault::Status {
            status: 503,
            code: "SlowDown".into(),
            message: "Please reduce your request rate.".into(),
        }
    }

    /// An HTTP error answer.
    pub fn status(status: u16, code: &str, message: &str) -> Fault {
        Fault::Status {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One line of the failure script: the `skip`+1-th to `skip`+`times`-th attempts of `op`
/// (an S3 operation name, as the engine counts them) on `key` (any key when `None`; a listing's
/// key is its prefix, DeleteObjects' its first key) get `fault`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub op: Option<String>,
    pub key: Option<String>,
    pub skip: u32,
    pub times: u32,
    pub fault: Fault,
}

impl Rule {
    /// The next attempt of `op` gets `fault`.
    pub fn on(op: &str, fault: Fault) -> Rule {
        Rule {
            op: Some(op.into()),
            key: None,
            skip: 0,
            times: 1,
            fault,
        }
    }

    /// The next attempt of any operation gets `fault`.
    pub fn any(fault: Fault) -> Rule {
        Rule {
            op: None,
            ..Rule::on("", fault)
        }
    }

    pub fn key(mut self, key: &str) -> Rule {
        self.key = Some(key.into());
        self
    }

    /// Leaves the first `n` matching attempts alone.
    pub fn skip(mut self, n: u32) -> Rule {
        self.skip = n;
        self
    }

    pub fn times(mut self, n: u32) -> Rule {
        self.times = n;
        self
    }
}

/// Which encryption the store applies to what it writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Applied {
    /// What the request asked for.
    #[default]
    AsRequested,
    /// Always this (e.g. nothing: Ceph RGW stores `SSE-S3` objects unencrypted; another key).
    Always(Observed),
}

/// Which answers report the encryption applied (the others are silent on it). The default is
/// Ceph RGW's: PutObject and CreateMultipartUpload report it, CompleteMultipartUpload does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reports {
    pub put: bool,
    pub create: bool,
    pub complete: bool,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            put: true,
            create: true,
            complete: false,
        }
    }
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    pub body: Bytes,
    /// Unquoted.
    pub etag: String,
    pub modified: SystemTime,
    pub encryption: Observed,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    key: String,
    encryption: Observed,
    parts: BTreeMap<i32, (Bytes, String)>,
    initiated: SystemTime,
}

/// One HTTP attempt the store received: operation, key, and whether a scripted fault hit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub op: String,
    pub key: String,
    pub fault: Option<Fault>,
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    uploads: BTreeMap<String, Upload>,
    next_id: u64,
    now: Option<SystemTime>,
    script: Vec<Rule>,
    attempts: Vec<Attempt>,
    applied: Applied,
    applied_to: BTreeMap<String, Observed>,
    reports: Reports,
    conditional_complete: bool,
    refuse_delete: BTreeMap<(String, String), String>,
    page_size: usize,
    /// How long a call of an operation takes (as a round trip would), by operation.
    latency: BTreeMap<String, Duration>,
    /// Calls of an operation being served now, by operation.
    in_flight: BTreeMap<String, usize>,
    /// Of every call of an operation with a latency, in order of arrival: the calls of that
    /// operation in flight when it arrived (itself included).
    arrivals: BTreeMap<String, Vec<usize>>,
}

/// The in-memory store. Shared by every `Store` connected to its endpoint.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    state: Mutex<State>,
}

impl MemoryStore {
    /// A new store named `name` (unique per test) with the given buckets, registered so that
    /// [`endpoint`](Self::endpoint) reaches it.
    pub fn register(name: &str, buckets: &[&str]) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore {
            name: name.to_string(),
            state: Mutex::new(State {
                buckets: buckets
                    .iter()
                    .map(|b| (b.to_string(), BTreeMap::new()))
                    .collect(),
                // A fixed start: Last-Modified and the listing's Date move only when told.
                now: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
                conditional_complete: true,
                page_size: 1000,
                ..State::default()
            }),
        });
        registry().insert(name.to_string(), store.clone());
        store
    }

    /// The `fs.s3a.endpoint` that reaches this store.
    pub fn endpoint(&self) -> String {
        format!("https://{}{HOST_SUFFIX}", self.name)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a line to the failure script.
    pub fn script(&self, rule: Rule) {
        self.state().script.push(rule);
    }

    /// Script lines not used up yet.
    pub fn unused_script(&self) -> Vec<Rule> {
        self.state().script.clone()
    }

    /// Every attempt received so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.state().attempts.clone()
    }

    /// Attempts of `op` received so far.
    pub fn attempts_of(&self, op: &str) -> usize {
        self.state().attempts.iter().filter(|a| a.op == op).count()
    }

    pub fn set_applied(&self, applied: Applied) {
        self.state().applied = applied;
    }

    /// Writes of `key` (a PUT, or an upload created from now on) get `observed`, whatever
    /// they ask for.
    pub fn set_applied_to(&self, key: &str, observed: Observed) {
        self.state().applied_to.insert(key.into(), observed);
    }

    /// Drops what is left of the failure script (a storm ends).
    pub fn clear_script(&self) {
        self.state().script.clear();
    }

    /// Deletes succeed again.
    pub fn allow_deletes(&self) {
        self.state().refuse_delete.clear();
    }

    pub fn set_reports(&self, reports: Reports) {
        self.state().reports = reports;
    }

    /// Whether CompleteMultipartUpload honours `If-None-Match: *` (Ceph RGW 16 ignores it).
    pub fn set_conditional_complete(&self, honoured: bool) {
        self.state().conditional_complete = honoured;
    }

    /// DeleteObjects (and DeleteObject) of `key` fails with `code` from now on.
    pub fn refuse_delete(&self, bucket: &str, key: &str, code: &str) {
        self.state()
            .refuse_delete
            .insert((bucket.into(), key.into()), code.into());
    }

    /// Every call of `op` from now on takes `latency` before it is served, so that calls
    /// overlap as they do over a network and [`in_flight_at_arrival`](Self::in_flight_at_arrival)
    /// can count them. CreateMultipartUpload and UploadPart (a magic-mode file's close) and
    /// CompleteMultipartUpload (the operation whose parallelism adapts) take it; other
    /// operations answer at once whatever is set.
    pub fn set_latency(&self, op: &str, latency: Duration) {
        self.state().latency.insert(op.into(), latency);
    }

    /// For every call of `op` (one with a latency set), in order of arrival: how many calls of
    /// `op` were in flight when it arrived, itself included.
    pub fn in_flight_at_arrival(&self, op: &str) -> Vec<usize> {
        self.state().arrivals.get(op).cloned().unwrap_or_default()
    }

    /// The most calls of `op` (one with a latency set) ever in flight at once.
    pub fn most_in_flight(&self, op: &str) -> usize {
        self.in_flight_at_arrival(op).into_iter().max().unwrap_or(0)
    }

    /// A call of `op` arrives: counted in flight (until the guard drops) and delayed by the
    /// operation's latency, if it has one.
    async fn arrive(self: &Arc<Self>, op: &'static str) -> InFlight {
        let latency = {
            let mut s = self.state();
            let latency = s.latency.get(op).copied();
            let n = s.in_flight.entry(op.into()).or_default();
            *n += 1;
            let n = *n;
            if latency.is_some() {
                s.arrivals.entry(op.into()).or_default().push(n);
            }
            latency
        };
        let guard = InFlight {
            store: self.clone(),
            op,
        };
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        guard
    }

    /// At most this many entries per listing page.
    pub fn set_page_size(&self, n: usize) {
        self.state().page_size = n.max(1);
    }

    /// Moves the store's clock forward.
    pub fn advance(&self, by: Duration) {
        let mut s = self.state();
        s.now = s.now.map(|t| t + by);
    }

    pub fn now(&self) -> SystemTime {
        self.state().now.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The object at `bucket`/`key`, if any.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Object> {
        self.state().buckets.get(bucket)?.get(key).cloned()
    }

    /// Every key in `bucket`, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.state()
            .buckets
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Pending uploads, as (key, upload id), sorted.
    pub fn pending(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .state()
            .uploads
            .iter()
            .map(|(id, u)| (u.key.clone(), id.clone()))
            .collect();
        v.sort();
        v
    }

    /// Puts an object directly (no request, no fault), with the encryption `enc` asks for.
    pub fn insert(&self, bucket: &str, key: &str, body: &[u8], enc: &EncryptionSpec) {
        let mut s = self.state();
        let object = Object {
            etag: hex_md5(body),
            body: Bytes::copy_from_slice(body),
            modified: s.now.unwrap_or(SystemTime::UNIX_EPOCH),
            encryption: s.apply_to(key, enc),
            metadata: BTreeMap::new(),
        };
        s.buckets
            .entry(bucket.into())
            .or_default()
            .insert(key.into(), object);
    }
}

/// A call in flight; dropped when it is answered (or abandoned).
struct InFlight {
    store: Arc<MemoryStore>,
    op: &'static str,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.store.state().in_flight.get_mut(self.op) {
            *n = n.saturating_sub(1);
        }
    }
}

fn hex_md5(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn quoted(etag: &str) -> Option<String> {
    Some(format!("\"{etag}\""))
}

fn no_such_bucket(bucket: &str) -> RawError {
    RawError::http(
        404,
        "NoSuchBucket",
        &format!("The specified bucket {bucket} does not exist"),
    )
}

fn no_such_upload() -> RawError {
    RawError::http(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may \
         have been aborted or completed.",
    )
}

fn no_such_key() -> RawError {
    RawError::http(404, "NoSuchKey", "The specified key does not exist.")
}

fn precondition_failed() -> RawError {
    RawError::http(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
    )
}

/// What the SDK's standard retry mode retries: no answer, 5xx, 429, throttling codes.
fn sdk_retries(e: &RawError) -> bool {
    match e.status {
        None => !e.construction,
        Some(s) => {
            s >= 500
                || s == 429
                || matches!(
                    e.code.as_deref(),
                    Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout")
                )
        }
    }
}

impl State {
    fn time(&self) -> SystemTime {
        self.now.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// The encryption this store applies to a write of `key` that asked for `enc`.
    fn apply_to(&self, key: &str, enc: &EncryptionSpec) -> Observed {
        match self.applied_to.get(key) {
            Some(o) => o.clone(),
            None => self.apply(enc),
        }
    }

    /// The encryption this store applies to a write that asked for `enc`.
    fn apply(&self, enc: &EncryptionSpec) -> Observed {
        match &self.applied {
            Applied::Always(o) => o.clone(),
            Applied::AsRequested => Observed {
                algorithm: enc.algorithm.header().map(str::to_string),
                kms_key_id: enc.kms_key_id().map(str::to_string),
                sse_c_md5: enc.summary().sse_c_key_md5,
            },
        }
    }

    fn bucket(&mut self, bucket: &str) -> Raw<&mut BTreeMap<String, Object>> {
        self.buckets
            .get_mut(bucket)
            .ok_or_else(|| no_such_bucket(bucket))
    }

    /// The scripted fault for this attempt, if any (and uses it up).
    fn fault_for(&mut self, op: &str, key: &str) -> Option<Fault> {
        let at = self.script.iter().position(|r| {
            r.op.as_deref().is_none_or(|o| o == op) && r.key.as_deref().is_none_or(|k| k == key)
        })?;
        let rule = &mut self.script[at];
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        let fault = rule.fault.clone();
        rule.times = rule.times.saturating_sub(1);
        if rule.times == 0 {
            self.script.remove(at);
        }
        Some(fault)
    }
}

/// A `Store`'s view of a [`MemoryStore`]: the SDK's retry behaviour with the configured attempts.
struct MemoryClient {
    store: Arc<MemoryStore>,
    max_attempts: u32,
    /// Attempts of Completes and aborts answered with throttling (503, 429).
    throttled: std::sync::atomic::AtomicU64,
}

impl MemoryClient {
    /// Serves one call as the SDK would: up to `max_attempts` attempts, each first checked
    /// against the script, then `serve`d on the state.
    fn call<T>(&self, op: &str, key: &str, mut serve: impl FnMut(&mut State) -> Raw<T>) -> Raw<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut s = self.store.state();
            let fault = s.fault_for(op, key);
            s.attempts.push(Attempt {
                op: op.into(),
                key: key.into(),
                fault: fault.clone(),
            });
            let result = match fault {
                None => serve(&mut s),
                Some(Fault::Status {
                    status,
                    code,
                    message,
                }) => Err(RawError::http(status, &code, &message)),
                Some(Fault::LoseResponse) => {
                    let _applied = serve(&mut s);
                    Err(RawError::transport(
                        "dispatch failure: io error: connection closed before message completed",
                    ))
                }
                Some(Fault::Timeout) => Err(RawError::transport(
                    "timeout: operation timed out (read timeout)",
                )),
            };
            if let Err(e) = &result {
                let counted = matches!(op, "CompleteMultipartUpload" | "AbortMultipartUpload");
                if counted && matches!(e.status, Some(503 | 429)) {
                    self.throttled
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            match result {
                Err(e) if sdk_retries(&e) && attempt < self.max_attempts => continue,
                r => return r,
            }
        }
    }
}

async fn collect(body: ByteStream) -> Raw<Bytes> {
    body.collect()
        .await
        .map(|b| b.into_bytes())
        .map_err(|e| RawError::transport(format!("reading the request body failed: {e}")))
}

impl ObjectStore for MemoryClient {
    fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
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
            let body = collect(body).await?;
            self.call("PutObject", key, |s| {
                let now = s.time();
                let encryption = s.apply_to(key, enc);
                let reports = s.reports.put;
                let objects = s.bucket(bucket)?;
                if create_only.is_some() && objects.contains_key(key) {
                    return Err(precondition_failed());
                }
                let etag = hex_md5(&body);
                let metadata = create_only
                    .map(|w| (super::WRITER_META.to_string(), w.to_string()))
                    .into_iter()
                    .collect();
                objects.insert(
                    key.into(),
                    Object {
                        body: body.clone(),
                        etag: etag.clone(),
                        modified: now,
                        encryption: encryption.clone(),
                        metadata,
                    },
                );
                Ok(Written {
                    etag: quoted(&etag),
                    observed: if reports {
                        encryption
                    } else {
                        Observed::default()
                    },
                })
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
            let _in_flight = self.store.arrive("CreateMultipartUpload").await;
            self.call("CreateMultipartUpload", key, |s| {
                s.bucket(bucket)?;
                s.next_id += 1;
                let id = format!("upload-{}", s.next_id);
                let encryption = s.apply_to(key, enc);
                let upload = Upload {
                    bucket: bucket.into(),
                    key: key.into(),
                    encryption: encryption.clone(),
                    parts: BTreeMap::new(),
                    initiated: s.time(),
                };
                s.uploads.insert(id.clone(), upload);
                let reported = if s.reports.create {
                    encryption
                } else {
                    Observed::default()
                };
                Ok((Some(id), reported))
            })
        })
    }

    fn upload_part<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        number: i32,
        body: ByteStream,
        _enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let body = collect(body).await?;
            let _in_flight = self.store.arrive("UploadPart").await;
            self.call("UploadPart", key, |s| {
                let upload = s
                    .uploads
                    .get_mut(upload_id)
                    .filter(|u| u.bucket == bucket && u.key == key)
                    .ok_or_else(no_such_upload)?;
                let etag = hex_md5(&body);
                upload.parts.insert(number, (body.clone(), etag.clone()));
                Ok(quoted(&etag))
            })
        })
    }

    fn complete_multipart_upload<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        parts: &'a [(i32, String)],
        _enc: &'a EncryptionSpec,
        if_none_match: bool,
    ) -> StoreFuture<'a, Written> {
        Box::pin(async move {
            let _in_flight = self.store.arrive("CompleteMultipartUpload").await;
            self.call("CompleteMultipartUpload", key, |s| {
                let upload = s
                    .uploads
                    .get(upload_id)
                    .filter(|u| u.bucket == bucket && u.key == key)
                    .ok_or_else(no_such_upload)?;
                let mut body = Vec::new();
                let mut digests = Vec::new();
                for (n, etag) in parts {
                    match upload.parts.get(n) {
                        Some((data, e)) if e == etag.trim_matches('"') => {
                            body.extend_from_slice(data);
                            digests.extend_from_slice(e.as_bytes());
                        }
                        _ => {
                            return Err(RawError::http(
                                400,
                                "InvalidPart",
                                &format!("part {n} was not uploaded or its ETag differs"),
                            ))
                        }
                    }
                }
                let exists = s.buckets.get(bucket).is_some_and(|b| b.contains_key(key));
                if if_none_match && s.conditional_complete && exists {
                    return Err(precondition_failed());
                }
                let upload = s.uploads.remove(upload_id).ok_or_else(no_such_upload)?;
                let etag = format!("{}-{}", hex_md5(&digests), parts.len());
                let object = Object {
                    body: Bytes::from(body),
                    etag: etag.clone(),
                    modified: s.time(),
                    encryption: upload.encryption.clone(),
                    metadata: BTreeMap::new(),
                };
                let reports = s.reports.complete;
                s.bucket(bucket)?.insert(key.into(), object);
                Ok(Written {
                    etag: quoted(&etag),
                    observed: if reports {
                        upload.encryption
                    } else {
                        Observed::default()
                    },
                })
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
            self.call("AbortMultipartUpload", key, |s| {
                match s.uploads.get(upload_id) {
                    Some(u) if u.bucket == bucket && u.key == key => {
                        s.uploads.remove(upload_id);
                        Ok(())
                    }
                    _ => Err(no_such_upload()),
                }
            })
        })
    }

    fn head_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        _enc: &'a EncryptionSpec,
    ) -> StoreFuture<'a, HeadInfo> {
        Box::pin(async move {
            self.call("HeadObject", key, |s| {
                // A HEAD answer has no body: a 404 carries no S3 code.
                let o = s
                    .bucket(bucket)?
                    .get(key)
                    .ok_or_else(|| RawError::http(404, "", ""))?;
                Ok(HeadInfo {
                    size: o.body.len() as u64,
                    etag: quoted(&o.etag),
                    observed: o.encryption.clone(),
                    writer: o.metadata.get(super::WRITER_META).cloned(),
                })
            })
        })
    }

    fn get_object<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        _enc: &'a EncryptionSpec,
        offset: u64,
        if_match: Option<&'a str>,
    ) -> StoreFuture<'a, GetOutput> {
        Box::pin(async move {
            let (data, etag, len) = self.call("GetObject", key, |s| {
                let o = s.bucket(bucket)?.get(key).ok_or_else(no_such_key)?;
                if if_match.is_some_and(|t| t != o.etag) {
                    return Err(precondition_failed());
                }
                let len = o.body.len() as u64;
                if offset > 0 && offset >= len {
                    return Err(RawError::http(
                        416,
                        "InvalidRange",
                        "The requested range is not satisfiable",
                    ));
                }
                Ok((o.body.slice(offset as usize..), o.etag.clone(), len))
            })?;
            Ok(GetOutput {
                content_length: data.len() as u64,
                content_range: (offset > 0)
                    .then(|| format!("bytes {offset}-{}/{len}", len.saturating_sub(1))),
                etag: quoted(&etag),
                body: ByteStream::from(data),
            })
        })
    }

    fn delete_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.call("DeleteObject", key, |s| {
                if let Some(code) = s.refuse_delete.get(&(bucket.into(), key.into())) {
                    return Err(RawError::http(403, code, "Access Denied"));
                }
                s.bucket(bucket)?.remove(key);
                Ok(())
            })
        })
    }

    fn delete_objects<'a>(
        &'a self,
        bucket: &'a str,
        keys: &'a [String],
    ) -> StoreFuture<'a, Vec<NotDeleted>> {
        Box::pin(async move {
            let first = keys.first().map(String::as_str).unwrap_or("");
            self.call("DeleteObjects", first, |s| {
                s.bucket(bucket)?;
                let mut failed = Vec::new();
                for k in keys {
                    match s.refuse_delete.get(&(bucket.to_string(), k.clone())) {
                        Some(code) => failed.push(NotDeleted {
                            key: k.clone(),
                            code: Some(code.clone()),
                            message: Some("Access Denied".into()),
                        }),
                        None => {
                            s.bucket(bucket)?.remove(k);
                        }
                    }
                }
                Ok(failed)
            })
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
            self.call("ListObjectsV2", prefix, |s| {
                let page_size = max_keys
                    .map(|m| m.max(0) as usize)
                    .unwrap_or(usize::MAX)
                    .min(s.page_size);
                let now = s.time();
                let objects = s.bucket(bucket)?;
                let mut page = ObjectsPage {
                    date: Some(now),
                    ..ObjectsPage::default()
                };
                // Entries in key order; a common prefix stands for all the keys under it.
                let mut last = None;
                for (k, o) in objects.range(prefix.to_string()..) {
                    if !k.starts_with(prefix) {
                        break;
                    }
                    let dir = delimiter.and_then(|d| {
                        k[prefix.len()..]
                            .find(d)
                            .map(|at| k[..prefix.len() + at + d.len()].to_string())
                    });
                    let entry = dir.clone().unwrap_or_else(|| k.clone());
                    if token.as_deref().is_some_and(|t| entry.as_str() <= t) {
                        continue;
                    }
                    if page.dirs.last() == Some(&entry) {
                        continue;
                    }
                    if page.objects.len() + page.dirs.len() == page_size {
                        page.next_token = last;
                        break;
                    }
                    match dir {
                        Some(d) => page.dirs.push(d),
                        None => page.objects.push(Listed {
                            key: k.clone(),
                            size: o.body.len() as u64,
                            modified_ms: o
                                .modified
                                .duration_since(SystemTime::UNIX_EPOCH)
                                .map(|d| d.as_millis() as u64)
                                .unwrap_or(0),
                        }),
                    }
                    last = Some(entry);
                }
                Ok(page)
            })
        })
    }

    fn list_parts<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.call("ListParts", key, |s| {
                s.uploads
                    .get(upload_id)
                    .filter(|u| u.bucket == bucket && u.key == key)
                    .map(|_| ())
                    .ok_or_else(no_such_upload)
            })
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
            self.call("ListMultipartUploads", prefix, |s| {
                s.bucket(bucket)?;
                let mut all: Vec<(&String, &Upload)> = s
                    .uploads
                    .iter()
                    .filter(|(_, u)| u.bucket == bucket && u.key.starts_with(prefix))
                    .collect();
                all.sort_by(|a, b| (&a.1.key, a.0).cmp(&(&b.1.key, b.0)));
                let after = key_marker.clone().map(|k| (k, upload_id_marker.clone()));
                let mut page = UploadsPage::default();
                for (id, u) in all {
                    if let Some((k, i)) = &after {
                        let past = match i {
                            Some(i) => (&u.key, id) > (k, i),
                            None => &u.key > k,
                        };
                        if !past {
                            continue;
                        }
                    }
                    if page.uploads.len() == s.page_size {
                        page.truncated = true;
                        break;
                    }
                    page.next_key_marker = Some(u.key.clone());
                    page.next_upload_id_marker = Some(id.clone());
                    page.uploads.push(ListedUpload {
                        key: u.key.clone(),
                        upload_id: id.clone(),
                        initiated: Some(u.initiated),
                    });
                }
                if !page.truncated {
                    page.next_key_marker = None;
                    page.next_upload_id_marker = None;
                }
                Ok(page)
            })
        })
    }
}
