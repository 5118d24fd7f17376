//! Walks a prefix and reports each object's encryption against what is expected.

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::config::{BucketSettings, Conf};
use crate::encryption::{EncryptionSpec, EncryptionSummary};
use crate::error::Result;
use crate::store::Store;
use crate::uri::S3Path;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub uri: String,
    pub size: u64,
    pub encryption: EncryptionSummary,
    /// `None` when it matches (or nothing was expected), else what is wrong.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub prefix: String,
    pub expected: Option<EncryptionSummary>,
    pub objects: Vec<ObjectReport>,
    pub mismatches: usize,
}

fn unreadable(uri: String, size: u64, problem: String) -> ObjectReport {
    ObjectReport {
        uri,
        size,
        encryption: EncryptionSummary {
            algorithm: "unknown".into(),
            kms_key_id: None,
            sse_c_key_md5: None,
        },
        problem: Some(problem),
    }
}

/// Lists every object under `uri` and HEADs it. `expect` overrides the configured encryption
/// as the expectation; with neither, objects are only reported.
pub async fn verify(
    conf: &Conf,
    uri: &str,
    expect: Option<EncryptionSpec>,
) -> Result<VerifyReport> {
    let path = S3Path::parse(uri)?;
    let settings = BucketSettings::resolve(conf, &path.bucket)?;
    let store = Store::connect(&settings.store).await?;
    let expect = expect.or_else(|| {
        (settings.encryption.algorithm != crate::encryption::Algorithm::None)
            .then(|| settings.encryption.clone())
    });
    // The configured encryption supplies the SSE-C key needed to HEAD SSE-C objects.
    let head_with = settings.encryption.clone();
    let listed = store.list(&path.bucket, &path.key).await?;
    let listed: Vec<_> = listed
        .into_iter()
        .filter(|o| path.contains_key(&o.key))
        .collect();
    let mut objects: Vec<ObjectReport> = stream::iter(listed)
        .map(|o| {
            let (store, head_with, expect, bucket) = (&store, &head_with, &expect, &path.bucket);
            async move {
                let uri = format!("s3a://{bucket}/{}", o.key);
                match store.head(bucket, &o.key, head_with).await {
                    Ok(Some(h)) => ObjectReport {
                        uri,
                        size: h.size,
                        encryption: h.observed.summary(),
                        problem: expect
                            .as_ref()
                            .and_then(|e| e.verify(&h.observed).err())
                            .map(|actual| {
                                format!(
                                    "expected {}, found {actual}",
                                    expect
                                        .as_ref()
                                        .map(|e| e.summary().to_string())
                                        .unwrap_or_default()
                                )
                            }),
                    },
                    Ok(None) => unreadable(uri, o.size, "deleted while being verified".into()),
                    Err(e) => unreadable(uri, o.size, e.to_string()),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    objects.sort_by(|a, b| a.uri.cmp(&b.uri));
    let mismatches = objects.iter().filter(|o| o.problem.is_some()).count();
    Ok(VerifyReport {
        prefix: path.to_string(),
        expected: expect.map(|e| e.summary()),
        objects,
        mismatches,
    })
}
