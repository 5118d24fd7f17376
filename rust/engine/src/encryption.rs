//! Server-side encryption: what was asked for (`EncryptionSpec`), how it is put on each request,
//! what the store reports back (`Observed`), and whether the two agree.
//!
//! Encryption is applied per request, never baked into a cached client, so two writes in one JVM
//! can use two different keys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::config::{Secret, Sourced};
use crate::error::{Error, Result};

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

    /// What to do when the store applied something other than what `verify` expected.
    pub fn mismatch_hint(&self) -> String {
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

/// Whether the key id the store reports is the one asked for. AWS answers with the full key ARN
/// when given a bare key id; an alias cannot be resolved without KMS, so it is accepted as is.
pub fn kms_keys_match(wanted: &str, reported: &str) -> bool {
    wanted == reported
        || wanted.starts_with("alias/")
        || wanted.contains(":alias/")
        || reported.ends_with(&format!("/{wanted}"))
}

/// Encryption as reported by the store for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub algorithm: Option<String>,
    pub kms_key_id: Option<String>,
    pub sse_c_md5: Option<String>,
}

impl Observed {
    /// The store reported encryption and it is what `spec` asks for: its summary, else `None`.
    pub fn confirms(&self, spec: &EncryptionSpec) -> Option<EncryptionSummary> {
        (!self.is_empty() && spec.verify(self).is_ok()).then(|| self.summary())
    }

    pub fn is_empty(&self) -> bool {
        self.algorithm.is_none() && self.kms_key_id.is_none() && self.sse_c_md5.is_none()
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
            .verify(&obs("aws:kms", "arn:aws:kms:us-east-1:1:key/key-1"))
            .is_ok());
        assert!(spec
            .verify(&obs("aws:kms", "key-2"))
            .unwrap_err()
            .contains("key-2"));
        assert!(spec.verify(&obs("AES256", "key-1")).is_err());
        assert_eq!(spec.verify(&Observed::default()).unwrap_err(), "none");
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
}
