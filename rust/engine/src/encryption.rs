//! Server-side encryption: what was asked for (`EncryptionSpec`), how it is put on each request,
//! what the store reports back (`Observed`), and whether the two agree.
//!
//! Encryption is applied per request, never baked into a cached client, so two writes in one JVM
//! can use two different keys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::config::{Conf, VerifyMode};
use crate::error::{Error, Result};
use crate::secrets::{Secret, Sourced};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// No encryption header: the bucket's default encryption (if any) applies.
    #[serde(rename = "none")]
    None,
    #[serde(rename = "SSE-S3")]
    SseS3,
    #[serde(rename = "SSE-KMS")]
    SseKms,
    #[serde(rename = "DSSE-KMS")]
    DsseKms,
    #[serde(rename = "SSE-C")]
    SseC,
}

impl Algorithm {
    /// Parses the values S3A accepts for `fs.s3a.encryption.algorithm`.
    pub fn parse(s: &str) -> std::result::Result<Algorithm, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "" | "NONE" => Ok(Algorithm::None),
            "SSE-S3" | "AES256" => Ok(Algorithm::SseS3),
            "SSE-KMS" | "AWS:KMS" => Ok(Algorithm::SseKms),
            "DSSE-KMS" | "AWS:KMS:DSSE" => Ok(Algorithm::DsseKms),
            "SSE-C" => Ok(Algorithm::SseC),
            "CSE-KMS" => Err(
                "'CSE-KMS' (client-side encryption) is not supported by sealcommit; \
                               use SSE-KMS, DSSE-KMS, SSE-S3 or SSE-C"
                    .to_string(),
            ),
            other => Err(format!(
                "'{other}' is not an encryption algorithm; use one of SSE-KMS, SSE-S3 (or AES256), \
                 DSSE-KMS, SSE-C, or none"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::None => "none",
            Algorithm::SseS3 => "SSE-S3",
            Algorithm::SseKms => "SSE-KMS",
            Algorithm::DsseKms => "DSSE-KMS",
            Algorithm::SseC => "SSE-C",
        }
    }

    /// The `x-amz-server-side-encryption` value, for the algorithms that use that header.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Algorithm::SseS3 => Some("AES256"),
            Algorithm::SseKms => Some("aws:kms"),
            Algorithm::DsseKms => Some("aws:kms:dsse"),
            Algorithm::None | Algorithm::SseC => None,
        }
    }
}

/// The encryption asked for, with the configuration keys each part came from.
#[derive(Debug, Clone)]
pub struct EncryptionSpec {
    pub algorithm: Algorithm,
    pub algorithm_key: Option<String>,
    /// KMS key id (SSE-KMS, DSSE-KMS) or base64 customer key (SSE-C).
    key: Option<Secret>,
    pub key_source: Option<String>,
    /// Base64 of the JSON encryption context (SSE-KMS, DSSE-KMS).
    context_b64: Option<String>,
    pub context_source: Option<String>,
    /// Base64 MD5 of the SSE-C key.
    sse_c_md5: Option<String>,
    /// With no encryption requested: what the bucket's default encryption must apply
    /// (`sealcommit.bucket-default.*`), checked on every object like a requested one.
    pub bucket_default: Option<BucketDefault>,
}

/// The encryption a bucket's default configuration is expected to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDefault {
    pub algorithm: Algorithm,
    pub kms_key_id: Option<String>,
    /// The configuration key that asked for the check.
    pub source: String,
    /// The configuration key `kms_key_id` came from.
    pub key_source: Option<String>,
}

/// What was applied, safe to store and print: no SSE-C key, only its MD5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionSummary {
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_c_key_md5: Option<String>,
}

impl std::fmt::Display for EncryptionSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.algorithm)?;
        if let Some(k) = &self.kms_key_id {
            write!(f, " with KMS key '{k}'")?;
        }
        if let Some(m) = &self.sse_c_key_md5 {
            write!(f, " with customer key MD5 {m}")?;
        }
        Ok(())
    }
}

/// Turns S3A's `k1=v1, k2=v2` encryption context into the base64 JSON S3 expects.
pub fn encode_context(s: &str) -> std::result::Result<String, String> {
    let mut map = serde_json::Map::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            format!("'{item}' is not of the form key=value (expected 'k1=v1, k2=v2')")
        })?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!(
                "'{item}' has an empty key (expected 'k1=v1, k2=v2')"
            ));
        }
        map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    if map.is_empty() {
        return Err("the encryption context is empty (expected 'k1=v1, k2=v2')".to_string());
    }
    Ok(B64.encode(serde_json::Value::Object(map).to_string()))
}

impl EncryptionSpec {
    pub fn none() -> Self {
        EncryptionSpec {
            algorithm: Algorithm::None,
            algorithm_key: None,
            key: None,
            key_source: None,
            context_b64: None,
            context_source: None,
            sse_c_md5: None,
            bucket_default: None,
        }
    }

    pub fn new(
        algorithm: Algorithm,
        algorithm_key: Option<String>,
        key: Option<Sourced<String>>,
        context: Option<Sourced<String>>,
    ) -> Result<Self> {
        let mut spec = EncryptionSpec {
            algorithm,
            algorithm_key,
            ..EncryptionSpec::none()
        };
        let uses_kms = matches!(algorithm, Algorithm::SseKms | Algorithm::DsseKms);
        if let Some(k) = key {
            match algorithm {
                Algorithm::SseKms | Algorithm::DsseKms => {}
                Algorithm::SseC => {
                    let raw = B64.decode(k.value.trim()).map_err(|_| {
                        Error::config(
                            &k.key,
                            "the SSE-C key is not valid base64 (expected base64 of a 256-bit key)",
                        )
                    })?;
                    if raw.len() != 32 {
                        return Err(Error::config(
                            &k.key,
                            format!("the SSE-C key is {} bytes; it must be a base64-encoded 256-bit (32-byte) key", raw.len()),
                        ));
                    }
                    spec.sse_c_md5 = Some(B64.encode(Md5::digest(&raw)));
                }
                // S3A ignores the key for SSE-S3 and no encryption; so do we.
                Algorithm::SseS3 | Algorithm::None => {}
            }
            if uses_kms || algorithm == Algorithm::SseC {
                spec.key = Some(Secret::new(k.value.trim()));
                spec.key_source = Some(k.key);
            }
        } else if algorithm == Algorithm::SseC {
            return Err(Error::config(
                spec.algorithm_key
                    .clone()
                    .unwrap_or_else(|| "fs.s3a.encryption.algorithm".into()),
                "SSE-C needs a key: set fs.s3a.encryption.key to the base64 of a 256-bit key",
            ));
        }
        if let Some(c) = context {
            if uses_kms {
                spec.context_b64 =
                    Some(encode_context(&c.value).map_err(|m| Error::config(&c.key, m))?);
                spec.context_source = Some(c.key);
            }
        }
        Ok(spec)
    }

    /// The KMS key id asked for (SSE-KMS and DSSE-KMS only; never the SSE-C key).
    pub fn kms_key_id(&self) -> Option<&str> {
        match self.algorithm {
            Algorithm::SseKms | Algorithm::DsseKms => self.key.as_ref().map(|k| k.expose()),
            _ => None,
        }
    }

    fn sse_c_key(&self) -> Option<&str> {
        match self.algorithm {
            Algorithm::SseC => self.key.as_ref().map(|k| k.expose()),
            _ => None,
        }
    }

    pub fn summary(&self) -> EncryptionSummary {
        EncryptionSummary {
            algorithm: self.algorithm.name().to_string(),
            kms_key_id: self.kms_key_id().map(str::to_string),
            sse_c_key_md5: self.sse_c_md5.clone(),
        }
    }

    /// What to do when the store applied `observed`, which `verify` refused.
    pub fn mismatch_hint(&self, observed: &Observed) -> String {
        let (algorithm, wanted, setting) = match (self.algorithm, &self.bucket_default) {
            (Algorithm::None, Some(d)) => (
                d.algorithm,
                d.kms_key_id.as_deref(),
                d.key_source
                    .clone()
                    .unwrap_or_else(|| "sealcommit.bucket-default.key".to_string()),
            ),
            (a, _) => (a, self.kms_key_id(), self.key_setting()),
        };
        if let (Some(want), Some(got)) = (wanted, observed.kms_key_id.as_deref()) {
            if observed.algorithm.as_deref() == algorithm.header() && !got.is_empty() {
                let forms = if is_alias(want) {
                    "an alias matches any key but another alias or, written as an ARN, a key in \
                     another partition, region or account"
                        .to_string()
                } else if want.starts_with("arn:") {
                    "an ARN must be reported exactly as written".to_string()
                } else {
                    format!(
                        "it is reported as '{want}', 'arn:aws:kms:{want}' (MinIO) or \
                         'arn:<partition>:kms:<region>:<account>:key/{want}' (AWS)"
                    )
                };
                let mismatch = format!(
                    "The object is under KMS key '{got}', which is not the key '{want}' set by \
                     {setting} ({forms})"
                );
                return match (&self.algorithm, &self.bucket_default) {
                    (Algorithm::None, Some(_)) => format!(
                        "No encryption header was sent, so the bucket's default encryption \
                         applied. {mismatch}. Fix the bucket's default encryption configuration, \
                         or the expectation (sealcommit.bucket-default.algorithm and {setting})"
                    ),
                    _ => format!(
                        "{mismatch}. Set {setting} to the key this data must be under, or make \
                         the store use that key"
                    ),
                };
            }
        }
        match (&self.algorithm, &self.bucket_default) {
            (Algorithm::None, Some(d)) => format!(
                "No encryption header was sent, so the bucket's default encryption applied, and it \
                 is not what {} expects: fix the bucket's default encryption configuration, or the \
                 expectation",
                d.source
            ),
            _ => format!(
                "The store accepted the request but ignored or changed the encryption; use an \
                 algorithm this store supports ({} is set by {}), or turn it off to rely on the \
                 bucket's default encryption",
                self.algorithm.name(),
                self.algorithm_key
                    .as_deref()
                    .unwrap_or("fs.s3a.encryption.algorithm")
            ),
        }
    }

    /// The configuration key to change to fix the encryption key.
    pub fn key_setting(&self) -> String {
        self.key_source
            .clone()
            .unwrap_or_else(|| "fs.s3a.encryption.key".to_string())
    }

    /// Checks what the store reports against what was asked for. `Err` holds a description of
    /// what the object actually has.
    pub fn verify(&self, observed: &Observed) -> std::result::Result<(), String> {
        let (algorithm, kms_key) = match (self.algorithm, &self.bucket_default) {
            (Algorithm::None, Some(d)) => (d.algorithm, d.kms_key_id.as_deref()),
            (a, _) => (a, self.kms_key_id()),
        };
        let ok = match algorithm {
            Algorithm::None => true,
            Algorithm::SseS3 => {
                observed.algorithm.as_deref() == Some("AES256") && observed.sse_c_md5.is_none()
            }
            Algorithm::SseKms | Algorithm::DsseKms => {
                observed.algorithm.as_deref() == algorithm.header()
                    && match kms_key {
                        None => true,
                        Some(want) => observed
                            .kms_key_id
                            .as_deref()
                            .is_some_and(|got| kms_keys_match(want, got)),
                    }
            }
            Algorithm::SseC => observed.sse_c_md5.is_some() && observed.sse_c_md5 == self.sse_c_md5,
        };
        if ok {
            Ok(())
        } else {
            Err(observed.describe())
        }
    }
}

/// How MinIO (AIStor with MinKMS or KES) reports the key of an object whose request, or whose
/// bucket's default encryption, named the key `<name>`: `arn:aws:kms:<name>`, nothing between.
const MINIO_KEY_PREFIX: &str = "arn:aws:kms:";

/// The AWS partitions in which a bare key id is reported as `arn:<partition>:kms:…:key/<id>`.
const AWS_PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// An AWS KMS ARN, `arn:<partition>:kms:<region>:<account>:<resource>`, with a 12-digit account
/// and a resource `key/<id>` or `alias/<name>`.
#[derive(Debug, PartialEq, Eq)]
struct AwsKmsArn<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

impl<'a> AwsKmsArn<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
        let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let name = resource
            .strip_prefix("key/")
            .or_else(|| resource.strip_prefix("alias/"));
        (arn == "arn"
            && AWS_PARTITIONS.contains(&partition)
            && service == "kms"
            && region_ok
            && account_ok
            && name.is_some_and(|n| !n.is_empty()))
        .then_some(AwsKmsArn {
            partition,
            region,
            account,
            resource,
        })
    }

    fn same_place(&self, other: &AwsKmsArn<'_>) -> bool {
        (self.partition, self.region, self.account)
            == (other.partition, other.region, other.account)
    }
}

/// `alias/<name>`, or an ARN whose resource is `alias/<name>`.
fn is_alias(id: &str) -> bool {
    id.starts_with("alias/")
        || (id.starts_with("arn:")
            && id
                .rsplit(':')
                .next()
                .is_some_and(|r| r.starts_with("alias/")))
}

/// Whether the key id the store reports is the key asked for, in exactly the forms stores answer
/// with (see docs/COMPATIBILITY.md, "KMS key ids as stores report them"):
/// - the same string: Ceph RGW echoes the id as given (ids may look like ARNs), and a full ARN
///   asked for must come back exactly (another region, account or partition is another key);
/// - MinIO: `<name>` comes back as `arn:aws:kms:<name>`. The reverse (asked `arn:aws:kms:<name>`,
///   reported `<name>`) is no store's answer — MinIO reports that request as asked — and fails;
/// - AWS: a bare key id `<id>` comes back as `arn:<partition>:kms:<region>:<account>:key/<id>`
///   (partition `aws`, `aws-cn` or `aws-us-gov`, 12-digit account);
/// - an alias (`alias/x`, `arn:…:alias/x`) cannot be resolved without asking KMS: any reported key
///   is accepted, except a different alias (a store that reports an alias echoes the request) and,
///   for an alias ARN, a key ARN in another partition, region or account (an AWS alias and its
///   key always share those).
///
/// Everything else fails, including a name that is only a suffix of the reported one and a
/// difference in case. An empty id on either side never matches.
pub fn kms_keys_match(wanted: &str, reported: &str) -> bool {
    if wanted.is_empty() || reported.is_empty() {
        return false;
    }
    if wanted == reported {
        return true;
    }
    if is_alias(wanted) {
        if is_alias(reported) {
            return reported.strip_prefix(MINIO_KEY_PREFIX) == Some(wanted);
        }
        return match (AwsKmsArn::parse(wanted), AwsKmsArn::parse(reported)) {
            (Some(w), Some(r)) => w.same_place(&r),
            _ => true,
        };
    }
    if wanted.starts_with("arn:") {
        return false;
    }
    reported.strip_prefix(MINIO_KEY_PREFIX) == Some(wanted)
        || AwsKmsArn::parse(reported)
            .is_some_and(|r| r.resource.strip_prefix("key/") == Some(wanted))
}

/// Encryption as reported by the store for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub algorithm: Option<String>,
    pub kms_key_id: Option<String>,
    pub sse_c_md5: Option<String>,
}

impl Observed {
    /// The store reported encryption and it is what `spec` asks for: its summary, else `None`
    /// (always `None` for a silent response, whatever `spec` asks for).
    pub fn confirms(&self, spec: &EncryptionSpec) -> Option<EncryptionSummary> {
        (!self.is_empty() && spec.verify(self).is_ok()).then(|| self.summary())
    }

    /// Says nothing about encryption: no header, or only empty ones. MinIO's
    /// CreateMultipartUpload and CompleteMultipartUpload responses are such; an empty answer is
    /// never taken as proof of anything.
    pub fn is_empty(&self) -> bool {
        [&self.algorithm, &self.kms_key_id, &self.sse_c_md5]
            .iter()
            .all(|v| v.as_deref().is_none_or(str::is_empty))
    }

    pub fn describe(&self) -> String {
        self.summary().to_string()
    }

    pub fn summary(&self) -> EncryptionSummary {
        let algorithm = match (self.algorithm.as_deref(), &self.sse_c_md5) {
            (_, Some(_)) => "SSE-C",
            (Some("aws:kms"), _) => "SSE-KMS",
            (Some("aws:kms:dsse"), _) => "DSSE-KMS",
            (Some("AES256"), _) => "SSE-S3",
            (Some(other), _) => other,
            (None, None) => "none",
        };
        EncryptionSummary {
            algorithm: algorithm.to_string(),
            kms_key_id: self.kms_key_id.clone(),
            sse_c_key_md5: self.sse_c_md5.clone(),
        }
    }
}

/// How the encryption of a completed multipart upload is established before the object is
/// declared verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionProof {
    /// `sealcommit.verify=off`: nothing is checked.
    Unchecked,
    /// CreateMultipartUpload's response confirmed the encryption and Complete's says nothing
    /// (AWS); the object has what its upload was created with.
    Created,
    /// The answer at hand says what the object has and is checked: Complete's response with an
    /// ETag and encryption headers, or the HEAD that found the object after a retried Complete.
    Answer,
    /// Nothing proved it yet: HEAD the object and check that.
    Head,
}

/// Decides [`CompletionProof`]. `answer` is Complete's response, or a HEAD's when `from_head`;
/// `created_confirmed` says whether CreateMultipartUpload's response confirmed the encryption
/// ([`Observed::confirms`]). A silent answer is never proof: when neither Create nor Complete
/// reported encryption (MinIO, Ceph RGW), the object is HEADed.
pub fn completion_proof(
    mode: VerifyMode,
    answer: &Observed,
    from_head: bool,
    have_etag: bool,
    created_confirmed: bool,
) -> CompletionProof {
    match mode {
        VerifyMode::Off => CompletionProof::Unchecked,
        _ if from_head => CompletionProof::Answer,
        VerifyMode::Auto if !answer.is_empty() => {
            if have_etag {
                CompletionProof::Answer
            } else {
                CompletionProof::Head
            }
        }
        VerifyMode::Auto if created_confirmed => CompletionProof::Created,
        VerifyMode::Auto | VerifyMode::Head => CompletionProof::Head,
    }
}

/// Puts the encryption headers on a request builder. KMS/DSSE/SSE-S3 exist only on PutObject and
/// CreateMultipartUpload; SSE-C goes on every request that touches the object's data.
macro_rules! impl_apply {
    ($fn:ident, $builder:ty, full, $fn_c:ident) => {
        pub fn $fn(&self, b: $builder) -> $builder {
            use aws_sdk_s3::types::ServerSideEncryption as Sse;
            let b = match self.algorithm {
                Algorithm::SseS3 => b.server_side_encryption(Sse::Aes256),
                Algorithm::SseKms => b.server_side_encryption(Sse::AwsKms),
                Algorithm::DsseKms => b.server_side_encryption(Sse::AwsKmsDsse),
                Algorithm::None | Algorithm::SseC => b,
            };
            let b = match self.kms_key_id() {
                Some(k) => b.ssekms_key_id(k),
                None => b,
            };
            let b = match &self.context_b64 {
                Some(c) => b.ssekms_encryption_context(c),
                None => b,
            };
            self.$fn_c(b)
        }
    };
    ($fn:ident, $builder:ty, sse_c) => {
        pub fn $fn(&self, b: $builder) -> $builder {
            match (self.sse_c_key(), &self.sse_c_md5) {
                (Some(k), Some(md5)) => b
                    .sse_customer_algorithm("AES256")
                    .sse_customer_key(k)
                    .sse_customer_key_md5(md5),
                _ => b,
            }
        }
    };
}

/// One SSE-C setter per request type that touches the object's data.
macro_rules! sse_c_setters {
    ($($fn:ident: $($path:ident)::+),* $(,)?) => {
        $(impl_apply!($fn, ops::$($path)::+, sse_c);)*
    };
}

/// Reading the encryption settings: they live here rather than in `config`, so that `config`
/// knows nothing of encryption (the layers go config → encryption, never back).
impl EncryptionSpec {
    /// The encryption to apply to new objects in `bucket`, from `conf`.
    pub fn resolve(conf: &Conf, bucket: &str) -> Result<EncryptionSpec> {
        conf.encryption(bucket)
    }
}

impl Conf {
    /// Looks up an encryption setting at one S3A level (`fs.s3a.` or `fs.s3a.bucket.<b>.`),
    /// reading the current name and the legacy one; both set to different values is an error.
    fn s3a_level_alias(
        &self,
        prefix: &str,
        current: &str,
        legacy: &str,
    ) -> Result<Option<Sourced<String>>> {
        let a = self.sourced(format!("{prefix}{current}"));
        let b = self.sourced(format!("{prefix}{legacy}"));
        match (a, b) {
            (Some(a), Some(b)) if a.value != b.value => Err(Error::config(
                a.key.clone(),
                format!(
                    "conflicts with the legacy key {} which is set to a different value; \
                     remove one of them",
                    b.key
                ),
            )),
            (Some(a), _) => Ok(Some(a)),
            (None, b) => Ok(b),
        }
    }

    /// An encryption setting, in precedence order: sealcommit per bucket, sealcommit global,
    /// S3A per bucket (current or legacy name), S3A global (current or legacy name).
    fn encryption_setting(
        &self,
        bucket: &str,
        rest: &str,
        legacy: Option<&str>,
    ) -> Result<Option<Sourced<String>>> {
        // A per-bucket S3A key set to the empty string counts as set (as in S3A): it turns a
        // global setting off for that bucket.
        let explicit_empty = |key: String| {
            self.is_blank(&key).then(|| Sourced {
                value: String::new(),
                key,
            })
        };
        if let Some(v) = self.own(bucket, &format!("encryption.{rest}")) {
            return Ok(Some(v));
        }
        for prefix in [format!("fs.s3a.bucket.{bucket}."), "fs.s3a.".to_string()] {
            let current = format!("encryption.{rest}");
            let found = match legacy {
                Some(l) => self.s3a_level_alias(&prefix, &current, l)?,
                None => self.sourced(format!("{prefix}{current}")),
            };
            if found.is_some() {
                return Ok(found);
            }
            if prefix != "fs.s3a." {
                let empty = explicit_empty(format!("{prefix}encryption.{rest}"))
                    .or_else(|| legacy.and_then(|l| explicit_empty(format!("{prefix}{l}"))));
                if empty.is_some() {
                    return Ok(empty);
                }
            }
        }
        Ok(None)
    }

    /// The encryption to apply to new objects in `bucket` (see [`EncryptionSpec::resolve`]).
    pub fn encryption(&self, bucket: &str) -> Result<EncryptionSpec> {
        let algorithm = self.encryption_setting(
            bucket,
            "algorithm",
            Some("server-side-encryption-algorithm"),
        )?;
        let key = self.encryption_setting(bucket, "key", Some("server-side-encryption.key"))?;
        let context = self.encryption_setting(bucket, "context", None)?;
        let algo = match &algorithm {
            Some(a) => Algorithm::parse(&a.value).map_err(|m| Error::config(&a.key, m))?,
            None => Algorithm::None,
        };
        let mut spec = EncryptionSpec::new(algo, algorithm.map(|a| a.key), key, context)?;
        spec.bucket_default = self.bucket_default(bucket, &spec)?;
        Ok(spec)
    }

    /// `sealcommit.bucket-default.algorithm` / `.key`: what the bucket's default encryption must
    /// apply when no encryption is requested.
    fn bucket_default(&self, bucket: &str, spec: &EncryptionSpec) -> Result<Option<BucketDefault>> {
        let Some(a) = self.own(bucket, "bucket-default.algorithm") else {
            if let Some(k) = self.own(bucket, "bucket-default.key") {
                return Err(Error::config(
                    &k.key,
                    "a bucket-default key needs sealcommit.bucket-default.algorithm (SSE-KMS or \
                     DSSE-KMS) as well",
                ));
            }
            return Ok(None);
        };
        let algorithm = Algorithm::parse(&a.value).map_err(|m| Error::config(&a.key, m))?;
        if matches!(algorithm, Algorithm::None | Algorithm::SseC) {
            return Err(Error::config(
                &a.key,
                format!(
                    "a bucket's default encryption is SSE-S3, SSE-KMS or DSSE-KMS, not {}",
                    algorithm.name()
                ),
            ));
        }
        if spec.algorithm != Algorithm::None {
            return Err(Error::config(
                &a.key,
                format!(
                    "it checks the bucket's default encryption, which applies only when no \
                     encryption is requested, but {} requests {} for bucket {bucket}; set that \
                     to an empty value for this bucket (fs.s3a.bucket.{bucket}.encryption.algorithm=) \
                     or drop the expectation",
                    spec.algorithm_key.as_deref().unwrap_or("fs.s3a.encryption.algorithm"),
                    spec.algorithm.name()
                ),
            ));
        }
        let kms_key_id = self.own(bucket, "bucket-default.key");
        if kms_key_id.is_some() && algorithm == Algorithm::SseS3 {
            return Err(Error::config(
                "sealcommit.bucket-default.key",
                "SSE-S3 has no KMS key; drop the key or expect SSE-KMS",
            ));
        }
        Ok(Some(BucketDefault {
            algorithm,
            kms_key_id: kms_key_id.as_ref().map(|k| k.value.clone()),
            source: a.key,
            key_source: kms_key_id.map(|k| k.key),
        }))
    }
}

use aws_sdk_s3::operation as ops;

impl EncryptionSpec {
    impl_apply!(
        apply_put,
        ops::put_object::builders::PutObjectFluentBuilder,
        full,
        apply_put_c
    );
    impl_apply!(
        apply_create,
        ops::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
        full,
        apply_create_c
    );
    sse_c_setters! {
        apply_put_c: put_object::builders::PutObjectFluentBuilder,
        apply_create_c: create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
        apply_upload_part: upload_part::builders::UploadPartFluentBuilder,
        apply_complete: complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder,
        apply_head: head_object::builders::HeadObjectFluentBuilder,
        apply_get: get_object::builders::GetObjectFluentBuilder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(v: &str, k: &str) -> Option<Sourced<String>> {
        Some(Sourced {
            value: v.into(),
            key: k.into(),
        })
    }

    #[test]
    fn context_is_base64_json() {
        let b = encode_context("project=alpha, team = data").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&B64.decode(b).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"project": "alpha", "team": "data"})
        );
        assert!(encode_context("novalue").unwrap_err().contains("novalue"));
    }

    #[test]
    fn malformed_context_names_the_key() {
        let err = EncryptionSpec::new(
            Algorithm::SseKms,
            None,
            None,
            src("oops", "fs.s3a.encryption.context"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("fs.s3a.encryption.context") && err.contains("oops"),
            "{err}"
        );
    }

    #[test]
    fn sse_c_key_must_be_32_bytes_and_never_echoed() {
        let short = B64.encode([7u8; 16]);
        let err = EncryptionSpec::new(
            Algorithm::SseC,
            None,
            src(&short, "fs.s3a.encryption.key"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("32-byte") && err.contains("fs.s3a.encryption.key"),
            "{err}"
        );
        assert!(!err.contains(&short));
        let good = B64.encode([7u8; 32]);
        let spec = EncryptionSpec::new(Algorithm::SseC, None, src(&good, "k"), None).unwrap();
        assert_eq!(spec.kms_key_id(), None);
        let s = spec.summary();
        assert_eq!(s.algorithm, "SSE-C");
        assert_eq!(
            s.sse_c_key_md5.as_deref(),
            Some(B64.encode(Md5::digest([7u8; 32])).as_str())
        );
        assert!(!format!("{spec:?}").contains(&good));
        assert!(!serde_json::to_string(&s).unwrap().contains(&good));
    }

    #[test]
    fn verify_kms_key() {
        let spec = EncryptionSpec::new(Algorithm::SseKms, None, src("key-1", "k"), None).unwrap();
        let obs = |a: &str, k: &str| Observed {
            algorithm: Some(a.into()),
            kms_key_id: Some(k.into()),
            sse_c_md5: None,
        };
        assert!(spec.verify(&obs("aws:kms", "key-1")).is_ok());
        assert!(spec
            .verify(&obs(
                "aws:kms",
                "arn:aws:kms:us-east-1:111122223333:key/key-1"
            ))
            .is_ok());
        assert!(spec
            .verify(&obs("aws:kms", "key-2"))
            .unwrap_err()
            .contains("key-2"));
        assert!(spec.verify(&obs("AES256", "key-1")).is_err());
        assert_eq!(spec.verify(&Observed::default()).unwrap_err(), "none");
    }

    // Key-id equivalence, from the answers stores really give (docs/COMPATIBILITY.md).

    const AWS_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const AWS_ARN: &str =
        "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn kms(key: &str) -> Observed {
        Observed {
            algorithm: Some("aws:kms".into()),
            kms_key_id: Some(key.into()),
            sse_c_md5: None,
        }
    }

    fn sse_kms(key: &str) -> EncryptionSpec {
        EncryptionSpec::new(
            Algorithm::SseKms,
            None,
            src(key, "fs.s3a.encryption.key"),
            None,
        )
        .unwrap()
    }

    #[test]
    fn minio_reports_arn_aws_kms_name() {
        // The field: fs.s3a.encryption.key=spark-encryption-key, MinIO AIStor + MinKMS.
        assert!(kms_keys_match(
            "spark-encryption-key",
            "arn:aws:kms:spark-encryption-key"
        ));
        assert!(sse_kms("spark-encryption-key")
            .verify(&kms("arn:aws:kms:spark-encryption-key"))
            .is_ok());
        // Asked in MinIO's ARN form, MinIO reports it as asked.
        assert!(kms_keys_match(
            "arn:aws:kms:spark-encryption-key",
            "arn:aws:kms:spark-encryption-key"
        ));
    }

    #[test]
    fn minio_arn_form_asked_never_matches_the_bare_name() {
        // No store answers `<name>` to a request naming `arn:aws:kms:<name>`: not accepted.
        assert!(!kms_keys_match(
            "arn:aws:kms:spark-encryption-key",
            "spark-encryption-key"
        ));
    }

    #[test]
    fn minio_other_keys_and_suffixes_fail() {
        for (wanted, reported) in [
            ("spark-encryption-key", "arn:aws:kms:other-key"),
            ("key", "arn:aws:kms:other-key"),
            ("spark-encryption-key", "arn:aws:kms:spark-encryption-key2"),
            ("encryption-key", "arn:aws:kms:spark-encryption-key"),
            ("spark-encryption-key", "arn:aws:kms:x:spark-encryption-key"),
            ("spark-encryption-key", "arn:aws:kms:/spark-encryption-key"),
            ("spark-encryption-key", "arn:aws:kms:"),
            ("spark-encryption-key", "spark-encryption-key2"),
            ("spark-encryption-key", ""),
        ] {
            assert!(!kms_keys_match(wanted, reported), "{wanted} vs {reported}");
        }
    }

    #[test]
    fn minio_bucket_default_reports_arn_aws_kms_name() {
        // `mc encrypt set sse-kms spark-encryption-key aistor/spark-data/`, no header sent.
        let spec = crate::config::Conf::from_iter([
            ("sealcommit.bucket-default.algorithm", "SSE-KMS"),
            ("sealcommit.bucket-default.key", "spark-encryption-key"),
        ])
        .encryption("spark-data")
        .unwrap();
        assert!(spec
            .verify(&kms("arn:aws:kms:spark-encryption-key"))
            .is_ok());
        assert!(spec
            .verify(&kms("arn:aws:kms:spark-encryption-key2"))
            .is_err());
        assert!(spec.verify(&kms("arn:aws:kms:other-key")).is_err());
        // Create and Complete say nothing on MinIO: that is no proof of the default.
        assert!(spec.verify(&Observed::default()).is_err());
        let hint = spec.mismatch_hint(&kms("arn:aws:kms:other-key"));
        for part in [
            "sealcommit.bucket-default.key",
            "sealcommit.bucket-default.algorithm",
            "bucket's default encryption",
            "'arn:aws:kms:other-key'",
            "'spark-encryption-key'",
        ] {
            assert!(hint.contains(part), "{part}: {hint}");
        }
    }

    #[test]
    fn aws_reports_full_arn_for_bare_id() {
        assert!(kms_keys_match(AWS_ID, AWS_ARN));
        for arn in [
            format!("arn:aws-cn:kms:cn-north-1:111122223333:key/{AWS_ID}"),
            format!("arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/{AWS_ID}"),
        ] {
            assert!(kms_keys_match(AWS_ID, &arn), "{arn}");
        }
        // Multi-Region keys keep their `mrk-` id.
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        assert!(kms_keys_match(
            mrk,
            &format!("arn:aws:kms:eu-west-1:111122223333:key/{mrk}")
        ));
        assert!(sse_kms(AWS_ID).verify(&kms(AWS_ARN)).is_ok());
    }

    #[test]
    fn aws_full_arn_must_match_exactly() {
        assert!(kms_keys_match(AWS_ARN, AWS_ARN));
        for other in [
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-2:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-cn:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
            AWS_ID,
        ] {
            assert!(!kms_keys_match(AWS_ARN, other), "{other}");
        }
    }

    #[test]
    fn aws_bare_id_mismatches_fail() {
        for reported in [
            // Another key whose id ends like this one's.
            "arn:aws:kms:us-east-2:111122223333:key/my-key".to_string(),
            // Not an ARN AWS answers with: unknown partition, short account, no `key/`.
            format!("arn:aws-xx:kms:us-east-2:111122223333:key/{AWS_ID}"),
            format!("arn:aws:kms:us-east-2:1:key/{AWS_ID}"),
            format!("arn:aws:kms:us-east-2:111122223333:{AWS_ID}"),
            format!("arn:aws:kms:us-east-2:111122223333:alias/{AWS_ID}"),
            format!("arn:aws:s3:us-east-2:111122223333:key/{AWS_ID}"),
            format!("arn:aws:kms::111122223333:key/{AWS_ID}"),
            format!("arn:aws:kms:us-east-2:111122223333:key/x/{AWS_ID}"),
        ] {
            assert!(!kms_keys_match(AWS_ID, &reported), "{reported}");
        }
        assert!(!kms_keys_match(
            "key",
            "arn:aws:kms:us-east-2:111122223333:key/my-key"
        ));
        assert!(!kms_keys_match(
            "my-key",
            "arn:aws:kms:us-east-2:111122223333:key/other-my-key"
        ));
    }

    #[test]
    fn rgw_echoes_as_given() {
        for id in [
            "testkey-1",
            "spark-encryption-key",
            AWS_ARN,
            "arn:aws:kms:spark-encryption-key",
        ] {
            assert!(kms_keys_match(id, id), "{id}");
            assert!(sse_kms(id).verify(&kms(id)).is_ok(), "{id}");
        }
        assert!(!kms_keys_match("testkey-1", "testkey-2"));
        assert!(sse_kms("testkey-1").verify(&kms("testkey-2")).is_err());
    }

    #[test]
    fn key_ids_are_case_sensitive() {
        assert!(!kms_keys_match(
            "Spark-Encryption-Key",
            "arn:aws:kms:spark-encryption-key"
        ));
        assert!(!kms_keys_match(
            "spark-encryption-key",
            "ARN:AWS:KMS:spark-encryption-key"
        ));
        assert!(!kms_keys_match(&AWS_ID.to_uppercase(), AWS_ARN));
        assert!(!kms_keys_match(AWS_ARN, &AWS_ARN.to_uppercase()));
        assert!(!kms_keys_match("testkey", "TESTKEY"));
    }

    #[test]
    fn aliases_accept_any_reported_key_but_another_alias_or_place() {
        // An alias cannot be resolved without KMS: any reported key is accepted.
        assert!(kms_keys_match("alias/spark", AWS_ARN));
        assert!(kms_keys_match(
            "alias/spark",
            "arn:aws:kms:spark-encryption-key"
        ));
        assert!(kms_keys_match("alias/spark", "arn:aws:kms:alias/spark"));
        let alias_arn = "arn:aws:kms:us-east-2:111122223333:alias/spark";
        assert!(kms_keys_match(alias_arn, AWS_ARN));
        // An AWS alias and its key share partition, region and account.
        assert!(!kms_keys_match(
            alias_arn,
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(!kms_keys_match(
            alias_arn,
            "arn:aws:kms:us-east-2:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        // A reported alias is an echo of the request: it must be this one.
        assert!(!kms_keys_match("alias/spark", "alias/other"));
        assert!(!kms_keys_match("alias/spark", "arn:aws:kms:alias/spark2"));
        assert!(!kms_keys_match(
            alias_arn,
            "arn:aws:kms:us-east-2:111122223333:alias/other"
        ));
        // Only a KMS key: nothing reported is not a match.
        assert!(!kms_keys_match("alias/spark", ""));
        let spec = sse_kms("alias/spark");
        assert!(spec.verify(&kms(AWS_ARN)).is_ok());
        assert!(spec
            .verify(&Observed {
                algorithm: Some("aws:kms".into()),
                ..Default::default()
            })
            .is_err());
        assert!(spec.verify(&Observed::default()).is_err());
        // SSE-KMS reported as SSE-S3 is not a KMS key.
        assert!(spec
            .verify(&Observed {
                algorithm: Some("AES256".into()),
                kms_key_id: Some(AWS_ARN.into()),
                sse_c_md5: None,
            })
            .is_err());
    }

    #[test]
    fn key_mismatch_hint_names_both_keys_and_the_setting() {
        let spec = sse_kms("spark-encryption-key");
        let got = kms("arn:aws:kms:other-key");
        assert!(spec.verify(&got).is_err());
        let hint = spec.mismatch_hint(&got);
        for part in [
            "'arn:aws:kms:other-key'",
            "'spark-encryption-key'",
            "fs.s3a.encryption.key",
            "'arn:aws:kms:spark-encryption-key' (MinIO)",
        ] {
            assert!(hint.contains(part), "{part}: {hint}");
        }
        // Not KMS at all: the algorithm hint.
        assert!(spec
            .mismatch_hint(&Observed::default())
            .contains("fs.s3a.encryption.algorithm"));
    }

    #[test]
    fn silent_answers_prove_nothing() {
        let silent = [
            Observed::default(),
            Observed {
                algorithm: Some(String::new()),
                kms_key_id: Some(String::new()),
                sse_c_md5: None,
            },
        ];
        for spec in [
            EncryptionSpec::none(),
            sse_kms("spark-encryption-key"),
            EncryptionSpec::new(Algorithm::SseS3, None, None, None).unwrap(),
        ] {
            for o in &silent {
                assert!(o.is_empty());
                assert_eq!(o.confirms(&spec), None, "{o:?}");
            }
        }
        let spec = sse_kms("spark-encryption-key");
        assert!(kms("arn:aws:kms:spark-encryption-key")
            .confirms(&spec)
            .is_some());
        assert!(kms("arn:aws:kms:other-key").confirms(&spec).is_none());
    }

    #[test]
    fn silent_create_and_complete_lead_to_a_head() {
        use CompletionProof::*;
        let silent = Observed::default();
        let said = kms("arn:aws:kms:spark-encryption-key");
        // MinIO, Ceph RGW: Create silent (nothing confirmed), Complete silent: HEAD.
        assert_eq!(
            completion_proof(VerifyMode::Auto, &silent, false, true, false),
            Head
        );
        assert_eq!(
            completion_proof(VerifyMode::Auto, &silent, false, false, false),
            Head
        );
        // AWS: Create confirmed, Complete silent on encryption: the upload's creation proves it.
        assert_eq!(
            completion_proof(VerifyMode::Auto, &silent, false, true, true),
            Created
        );
        // Complete says what the object has (with an ETag): that answer is checked.
        assert_eq!(
            completion_proof(VerifyMode::Auto, &said, false, true, false),
            Answer
        );
        assert_eq!(
            completion_proof(VerifyMode::Auto, &said, false, false, true),
            Head
        );
        // The HEAD after a retried Complete is the answer, silent or not (then it is checked).
        assert_eq!(
            completion_proof(VerifyMode::Auto, &silent, true, true, true),
            Answer
        );
        // `head` mode always asks, `off` never does.
        for (answer, created) in [(&silent, true), (&said, true), (&said, false)] {
            assert_eq!(
                completion_proof(VerifyMode::Head, answer, false, true, created),
                Head
            );
            assert_eq!(
                completion_proof(VerifyMode::Off, answer, false, true, created),
                Unchecked
            );
        }
    }

    #[test]
    fn sse_s3_not_applied_is_detected() {
        let spec = EncryptionSpec::new(Algorithm::SseS3, None, None, None).unwrap();
        assert!(spec.verify(&Observed::default()).is_err());
        assert!(spec
            .verify(&Observed {
                algorithm: Some("AES256".into()),
                ..Default::default()
            })
            .is_ok());
    }

    fn conf(pairs: &[(&str, &str)]) -> Conf {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn per_bucket_override_wins_over_global() {
        let c = conf(&[
            ("fs.s3a.encryption.algorithm", "SSE-KMS"),
            ("fs.s3a.encryption.key", "global-key"),
            ("fs.s3a.bucket.tenant1.encryption.key", "tenant1-key"),
        ]);
        let e = c.encryption("tenant1").unwrap();
        assert_eq!(e.algorithm, Algorithm::SseKms);
        assert_eq!(e.kms_key_id(), Some("tenant1-key"));
        assert_eq!(
            e.key_source.as_deref(),
            Some("fs.s3a.bucket.tenant1.encryption.key")
        );
        let e = c.encryption("other").unwrap();
        assert_eq!(e.kms_key_id(), Some("global-key"));
    }

    #[test]
    fn empty_per_bucket_algorithm_turns_encryption_off_for_that_bucket() {
        let c = conf(&[
            ("fs.s3a.encryption.algorithm", "SSE-KMS"),
            ("fs.s3a.encryption.key", "k1"),
            ("fs.s3a.bucket.bucket-default.encryption.algorithm", ""),
        ]);
        assert_eq!(
            c.encryption("bucket-default").unwrap().algorithm,
            Algorithm::None
        );
        assert_eq!(c.encryption("other").unwrap().algorithm, Algorithm::SseKms);
    }

    #[test]
    fn legacy_keys_are_read() {
        let c = conf(&[
            ("fs.s3a.server-side-encryption-algorithm", "SSE-KMS"),
            ("fs.s3a.server-side-encryption.key", "legacy-key"),
        ]);
        let e = c.encryption("b").unwrap();
        assert_eq!(e.algorithm, Algorithm::SseKms);
        assert_eq!(e.kms_key_id(), Some("legacy-key"));
        assert_eq!(
            e.key_source.as_deref(),
            Some("fs.s3a.server-side-encryption.key")
        );
    }

    #[test]
    fn conflicting_current_and_legacy_keys_are_an_error() {
        let c = conf(&[
            ("fs.s3a.bucket.b.encryption.algorithm", "SSE-KMS"),
            ("fs.s3a.bucket.b.server-side-encryption-algorithm", "SSE-S3"),
        ]);
        let err = c.encryption("b").unwrap_err().to_string();
        assert!(
            err.contains("fs.s3a.bucket.b.encryption.algorithm"),
            "{err}"
        );
        assert!(
            err.contains("fs.s3a.bucket.b.server-side-encryption-algorithm"),
            "{err}"
        );
    }

    #[test]
    fn sealcommit_keys_win_over_s3a_keys() {
        let c = conf(&[
            ("fs.s3a.encryption.algorithm", "SSE-S3"),
            ("sealcommit.encryption.algorithm", "SSE-KMS"),
            ("sealcommit.encryption.key", "k1"),
            ("sealcommit.bucket.b.encryption.key", "k2"),
        ]);
        let e = c.encryption("b").unwrap();
        assert_eq!(e.algorithm, Algorithm::SseKms);
        assert_eq!(e.kms_key_id(), Some("k2"));
        assert_eq!(c.encryption("a").unwrap().kms_key_id(), Some("k1"));
    }

    #[test]
    fn unknown_algorithm_names_the_key() {
        let c = conf(&[("fs.s3a.encryption.algorithm", "SSE-FOO")]);
        let err = c.encryption("b").unwrap_err().to_string();
        assert!(err.contains("fs.s3a.encryption.algorithm"), "{err}");
        assert!(err.contains("SSE-FOO"), "{err}");
        assert!(err.contains("SSE-KMS"), "lists the valid values: {err}");
    }

    #[test]
    fn bucket_default_expectations_are_checked_and_validated() {
        let kms = |key: &str| Observed {
            algorithm: Some("aws:kms".into()),
            kms_key_id: Some(key.into()),
            sse_c_md5: None,
        };
        let c = conf(&[
            ("sealcommit.bucket-default.algorithm", "SSE-KMS"),
            ("sealcommit.bucket-default.key", "k1"),
        ]);
        let spec = c.encryption("b").unwrap();
        assert!(spec.verify(&kms("k1")).is_ok());
        assert!(spec.verify(&kms("k2")).is_err());
        assert!(spec.verify(&Observed::default()).is_err());
        assert!(spec
            .mismatch_hint(&Observed::default())
            .contains("sealcommit.bucket-default.algorithm"));
        // Without an expectation, no encryption requested means anything goes.
        assert!(conf(&[])
            .encryption("b")
            .unwrap()
            .verify(&Observed::default())
            .is_ok());
        for (bad, key) in [
            (
                vec![("sealcommit.bucket-default.algorithm", "SSE-C")],
                "sealcommit.bucket-default.algorithm",
            ),
            (
                vec![("sealcommit.bucket-default.key", "k1")],
                "sealcommit.bucket-default.key",
            ),
            (
                vec![
                    ("sealcommit.bucket-default.algorithm", "SSE-KMS"),
                    ("fs.s3a.encryption.algorithm", "SSE-KMS"),
                ],
                "fs.s3a.encryption.algorithm",
            ),
        ] {
            let err = conf(&bad).encryption("b").unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
