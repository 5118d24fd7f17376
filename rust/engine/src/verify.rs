//! Walks a prefix and reports each object's encryption against what is expected.

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::config::Conf;
use crate::encryption::{EncryptionSpec, EncryptionSummary};
use crate::error::Result;
use crate::progress::Progress;
use crate::settings::BucketSettings;
use crate::store::Store;
use crate::uri::S3Path;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub uri: String,
    pub size: u64,
    pub encryption: EncryptionSummary,
    /// With `--deep`, the rows a Parquet file's footer reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// With `--deep`, what is worth knowing but no problem ([`ENCRYPTED_FOOTER`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `None` when it matches (or nothing was expected), else what is wrong.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub prefix: String,
    pub expected: Option<EncryptionSummary>,
    pub objects: Vec<ObjectReport>,
    pub mismatches: usize,
    /// With `--deep`: Parquet files opened, and their rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet_files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet_rows: Option<u64>,
    /// With `--deep`: Parquet files whose footer is encrypted (counted in `parquet_files`, their
    /// rows not in `parquet_rows`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet_encrypted_footers: Option<usize>,
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
        rows: None,
        note: None,
        problem: Some(problem),
    }
}

/// Reads `len` bytes from `offset` to the end of an object.
async fn read_range(
    store: &Store,
    bucket: &str,
    key: &str,
    enc: &EncryptionSpec,
    offset: u64,
) -> Result<Vec<u8>> {
    let d = store.open_read(bucket, key, enc, offset, None).await?;
    let bytes = d.body.collect().await.map_err(|e| {
        crate::error::Error::io(
            "read",
            format!("s3a://{bucket}/{key}"),
            std::io::Error::other(e),
        )
    })?;
    Ok(bytes.into_bytes().to_vec())
}

/// What a Parquet file's footer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Footer {
    Rows(u64),
    /// Parquet modular encryption with an encrypted footer (magic `PARE`): Parquet, but its
    /// rows cannot be counted without the file's keys.
    Encrypted,
}

/// What `verify --deep` notes about a file whose footer is encrypted.
pub const ENCRYPTED_FOOTER: &str =
    "encrypted footer (Parquet modular encryption): rows not counted";

/// Opens a Parquet file's footer (two ranged GETs, decrypted by the store; one when the footer is
/// encrypted): its row count, or why it is not a readable Parquet file.
async fn parquet_footer(
    store: &Store,
    bucket: &str,
    key: &str,
    enc: &EncryptionSpec,
    size: u64,
) -> std::result::Result<Footer, String> {
    use crate::parquet::{footer, num_rows, tail, FooterError, TAIL};
    // Problems found in the bytes name the object: a short read is the store's doing, not ours.
    let named = |e: FooterError| format!("s3a://{bucket}/{key}: {e}");
    if size < TAIL {
        return Err(named(FooterError::TooSmall { size }));
    }
    let last = read_range(store, bucket, key, enc, size - TAIL)
        .await
        .map_err(|e| e.to_string())?;
    let t = tail(&last, size).map_err(named)?;
    if t.encrypted {
        return Ok(Footer::Encrypted);
    }
    let read = read_range(store, bucket, key, enc, size - TAIL - t.len)
        .await
        .map_err(|e| e.to_string())?;
    num_rows(footer(&read, t.len).map_err(named)?)
        .map(Footer::Rows)
        .map_err(named)
}

/// Lists every object under `uri` and HEADs it. `expect` overrides the configured encryption
/// as the expectation; with neither, objects are only reported.
/// With `deep`, every `.parquet` object's footer is opened as well (see [`parquet_footer`]).
/// `progress` hears of each object checked.
pub async fn verify(
    conf: &Conf,
    uri: &str,
    expect: Option<EncryptionSpec>,
    deep: bool,
    progress: &dyn Progress,
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
    progress.phase("objects verified", listed.len() as u64);
    let mut objects: Vec<ObjectReport> = stream::iter(listed)
        .map(|o| {
            let (store, head_with, expect, bucket) = (&store, &head_with, &expect, &path.bucket);
            async move {
                let uri = format!("s3a://{bucket}/{}", o.key);
                let report = match store.head(bucket, &o.key, head_with).await {
                    Ok(Some(h)) => {
                        let parquet = if deep && o.key.ends_with(".parquet") {
                            Some(parquet_footer(store, bucket, &o.key, head_with, h.size).await)
                        } else {
                            None
                        };
                        let mut report = ObjectReport {
                            uri,
                            size: h.size,
                            encryption: h.observed.summary(),
                            rows: None,
                            note: None,
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
                        };
                        match parquet {
                            Some(Ok(Footer::Rows(rows))) => report.rows = Some(rows),
                            Some(Ok(Footer::Encrypted)) => {
                                report.note = Some(ENCRYPTED_FOOTER.into())
                            }
                            Some(Err(why)) if report.problem.is_none() => {
                                report.problem = Some(why)
                            }
                            _ => {}
                        }
                        report
                    }
                    Ok(None) => unreadable(uri, o.size, "deleted while being verified".into()),
                    Err(e) => unreadable(uri, o.size, e.to_string()),
                };
                progress.advance(1);
                report
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    objects.sort_by(|a, b| a.uri.cmp(&b.uri));
    let mismatches = objects.iter().filter(|o| o.problem.is_some()).count();
    let parquet: Vec<u64> = objects.iter().filter_map(|o| o.rows).collect();
    let encrypted_footers = objects.iter().filter(|o| o.note.is_some()).count();
    Ok(VerifyReport {
        prefix: path.to_string(),
        expected: expect.map(|e| e.summary()),
        objects,
        mismatches,
        parquet_files: deep.then_some(parquet.len() + encrypted_footers),
        parquet_rows: deep.then(|| parquet.iter().sum()),
        parquet_encrypted_footers: deep.then_some(encrypted_footers),
    })
}
