//! Everything the engine needs to write to one bucket, validated: how to reach the store, the
//! encryption to apply and the commit settings. Above both `config` and `encryption`, so
//! neither needs the other's types.

use crate::config::{CommitConfig, Conf, StoreConfig};
use crate::encryption::{Algorithm, EncryptionSpec};
use crate::error::{Error, Result};

/// Everything the engine needs to write to one bucket, validated.
#[derive(Debug, Clone)]
pub struct BucketSettings {
    pub bucket: String,
    pub store: StoreConfig,
    pub encryption: EncryptionSpec,
    pub commit: CommitConfig,
}

impl BucketSettings {
    pub fn resolve(conf: &Conf, bucket: &str) -> Result<BucketSettings> {
        conf.check_own_keys()?;
        let store = StoreConfig::resolve(conf, bucket)?;
        let encryption = conf.encryption(bucket)?;
        if let Algorithm::SseC = encryption.algorithm {
            if store.is_http() && !conf.bool_own(bucket, "sse-c.allow-http", false)? {
                return Err(Error::config(
                    encryption.algorithm_key.clone().unwrap_or_default(),
                    format!(
                        "SSE-C sends the raw encryption key with every request, and the endpoint \
                         {} is plain http; use an https endpoint (fs.s3a.endpoint, with \
                         sealcommit.tls.ca-file for a private CA) or, if the http hop is trusted \
                         (e.g. a local proxy), set sealcommit.sse-c.allow-http=true",
                        store.endpoint.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(ca) = &store.ca_file {
            crate::tls::load_ca_file(ca, &format!("sealcommit.tls.ca-file ({bucket})"))?;
        }
        let commit = CommitConfig::resolve(conf, bucket)?;
        Ok(BucketSettings {
            bucket: bucket.to_string(),
            store,
            encryption,
            commit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> Conf {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn sse_c_over_http_is_refused_unless_allowed() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // base64 of 32 bytes
        let mut c = conf(&[
            ("fs.s3a.endpoint", "http://127.0.0.1:8000"),
            ("fs.s3a.encryption.algorithm", "SSE-C"),
            ("fs.s3a.encryption.key", key),
        ]);
        let err = BucketSettings::resolve(&c, "b").unwrap_err().to_string();
        assert!(err.contains("sealcommit.sse-c.allow-http"), "{err}");
        assert!(!err.contains(key), "the SSE-C key must not leak: {err}");
        c.set("sealcommit.sse-c.allow-http", "true");
        BucketSettings::resolve(&c, "b").unwrap();
    }
}
