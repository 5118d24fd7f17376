//! A write target: a destination with its validated settings and a connected store, shared by
//! jobs (`commit`), checkpoints (`checkpoint`) and magic writers (`magic`). The operations here
//! need no job identity: writing and verifying one object, uploading a local file as a pending
//! multipart upload, completing and verifying an upload, aborting uploads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::{ByteStream, Length};
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::config::{Conf, VerifyMode};
use crate::encryption::{completion_proof, CompletionProof, EncryptionSpec, Observed};
use crate::error::{Error, Result};
use crate::limiter::{self, Limiter};
use crate::model::{Completed, PendingUpload};
use crate::settings::BucketSettings;
use crate::store::{PutOutcome, Store};
use crate::uri::S3Path;

/// Uploads a task commit has started, as (bucket, key, upload id): aborted if the task fails.
pub(crate) type Started = Arc<Mutex<Vec<(String, String, String)>>>;

/// Records an upload as started. A lock poisoned by a panic elsewhere still takes the record:
/// each record is one push, so the list is whole, and a forgotten upload would never be aborted.
pub(crate) fn record_started(started: &Started, bucket: &str, key: &str, upload_id: &str) {
    started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((bucket.to_string(), key.to_string(), upload_id.to_string()));
}

/// Every upload recorded as started, poisoned lock or not (see [`record_started`]).
pub(crate) fn started_uploads(started: &Started) -> Vec<(String, String, String)> {
    started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// A destination, its settings and a client for its store. Cheap to open: no request is sent.
pub struct Target {
    pub dest: S3Path,
    pub settings: BucketSettings,
    pub store: Store,
}

impl Target {
    /// Validates the configuration for `uri` and gets a client. Sends no request.
    pub async fn open(conf: &Conf, uri: &str) -> Result<Target> {
        let dest = S3Path::parse(uri)?;
        let settings = BucketSettings::resolve(conf, &dest.bucket)?;
        Target::connect(dest, settings).await
    }

    /// A target for `dest` with settings already resolved. Sends no request.
    pub async fn connect(dest: S3Path, settings: BucketSettings) -> Result<Target> {
        let store = Store::connect(&settings.store).await?;
        Ok(Target::over(dest, settings, store))
    }

    /// A target for `dest` over a store the caller built (`Store::over` a backend of its own,
    /// as `sealcommit bench commit --simulate` does). Sends no request.
    pub fn over(dest: S3Path, settings: BucketSettings, store: Store) -> Target {
        Target {
            dest,
            settings,
            store,
        }
    }

    /// The same destination with other settings (recovery: another job's encryption), with
    /// its own request counters.
    pub(crate) fn with_settings(&self, settings: BucketSettings) -> Target {
        Target {
            dest: self.dest.clone(),
            settings,
            store: self.store.with_new_counters(),
        }
    }

    pub(crate) fn enc(&self) -> &EncryptionSpec {
        &self.settings.encryption
    }

    /// Writes one of our own small objects with the job's encryption and checks that the store
    /// applied it. Returns what the store reported.
    pub(crate) async fn put_verified(&self, path: &S3Path, body: Vec<u8>) -> Result<Observed> {
        self.put_verified_stream(path, ByteStream::from(body), None)
            .await
    }

    /// One PUT (create-only with a writer id: an existing object is `AlreadyExists`),
    /// verified like every object sealcommit writes.
    pub(crate) async fn put_verified_stream(
        &self,
        path: &S3Path,
        body: ByteStream,
        create_only: Option<&str>,
    ) -> Result<Observed> {
        let (etag, observed) = match self
            .store
            .put_stream(&path.bucket, &path.key, body, self.enc(), create_only)
            .await?
        {
            PutOutcome::Written { etag, observed } => (etag, observed),
            PutOutcome::Exists => {
                return Err(Error::AlreadyExists {
                    uri: path.to_string(),
                })
            }
        };
        self.verified_observation(path, etag.is_some(), observed)
            .await
    }

    /// The encryption of an object just written, from the response when it says enough (and the
    /// verify mode allows), else from a HEAD; checked against the request.
    pub(crate) async fn verified_observation(
        &self,
        path: &S3Path,
        have_etag: bool,
        observed: Observed,
    ) -> Result<Observed> {
        let mode = self.settings.commit.verify;
        if mode == VerifyMode::Off {
            return Ok(observed);
        }
        let observed = if mode == VerifyMode::Auto
            && have_etag
            && !observed.is_empty()
            && self.enc().verify(&observed).is_ok()
        {
            observed
        } else {
            match self.store.head(&path.bucket, &path.key, self.enc()).await? {
                Some(h) => h.observed,
                None => {
                    return Err(Error::NotFound {
                        uri: path.to_string(),
                    });
                }
            }
        };
        self.check(path, "PutObject", &observed)?;
        Ok(observed)
    }

    pub(crate) fn check(&self, path: &S3Path, op: &'static str, observed: &Observed) -> Result<()> {
        self.enc()
            .verify(observed)
            .map_err(|actual| Error::EncryptionNotApplied {
                uri: path.to_string(),
                op,
                requested: self.enc().summary().to_string(),
                actual,
                hint: self.enc().mismatch_hint(observed),
            })
    }

    /// Uploads a local file as a multipart upload left pending: one Create, then its parts
    /// streamed from the file, at most as many in flight as `permits` gives out. Every upload
    /// created is recorded in `started` first (the caller aborts those of a failure). Once the
    /// upload exists, `stop` ending interrupts the parts (the upload is then the caller's to
    /// abort); the Create itself is never interrupted, so an upload that exists is known.
    pub(crate) async fn upload_file(
        &self,
        local: PathBuf,
        dest: S3Path,
        permits: Arc<Semaphore>,
        started: &Started,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<PendingUpload> {
        let shown = local.display().to_string();
        let size = tokio::fs::metadata(&local)
            .await
            .map_err(|e| match e.kind() {
                // Never skipped: a file the task was asked to write is committed or the task fails.
                std::io::ErrorKind::NotFound => Error::io(
                    "read task output",
                    format!("{shown} (the staged file for {dest}, which the task was asked to write and did not; the task fails rather than commit without it)"),
                    e,
                ),
                _ => Error::io("read task output", &shown, e),
            })?
            .len();
        let enc = self.enc();
        let (upload_id, created) = self
            .store
            .create_upload(&dest.bucket, &dest.key, enc)
            .await?;
        record_started(started, &dest.bucket, &dest.key, &upload_id);
        let part_size = self.settings.commit.part_size;
        let nparts = size.div_ceil(part_size).max(1);
        let parts = stream::iter(0..nparts)
            .map(|i| {
                let (local, dest, upload_id, permits, shown) =
                    (&local, &dest, &upload_id, permits.clone(), &shown);
                async move {
                    let _permit = permits
                        .acquire()
                        .await
                        .map_err(|e| Error::io("upload", shown, std::io::Error::other(e)))?;
                    let offset = i * part_size;
                    let len = part_size.min(size - offset);
                    let body = if len == 0 {
                        ByteStream::from(Vec::new())
                    } else {
                        ByteStream::read_from()
                            .path(local)
                            .offset(offset)
                            .length(Length::Exact(len))
                            .build()
                            .await
                            .map_err(|e| {
                                Error::io("read task output", shown, std::io::Error::other(e))
                            })?
                    };
                    let number = (i + 1) as i32;
                    let etag = self
                        .store
                        .upload_part(&dest.bucket, &dest.key, upload_id, number, body, enc)
                        .await?;
                    Ok::<_, Error>((number, etag))
                }
            })
            .buffer_unordered(self.settings.commit.upload_parallelism)
            .try_collect::<Vec<(i32, String)>>();
        let mut parts = tokio::select! {
            parts = parts => parts?,
            _ = stop => {
                return Err(Error::TaskEnded {
                    uri: dest.to_string(),
                    reason: "its task attempt ended first".into(),
                })
            }
        };
        parts.sort_by_key(|p| p.0);
        Ok(PendingUpload {
            bucket: dest.bucket,
            key: dest.key,
            upload_id,
            parts,
            size,
            encryption: Arc::new(enc.summary()),
            created_with: created.confirms(enc).map(Arc::new),
        })
    }

    /// A limiter of the Completes or aborts in flight: adaptive up to
    /// `sealcommit.commit.parallelism` unless `sealcommit.commit.parallelism.adaptive` is false.
    pub(crate) fn limiter(&self) -> Limiter {
        Limiter::new(
            self.settings.commit.commit_parallelism,
            self.settings.commit.commit_adaptive,
        )
    }

    /// Aborts the given uploads (a task's or a job's), every one of them even when some fail
    /// (the first failure is returned). Gone uploads count as aborted.
    pub async fn abort_uploads(&self, uploads: &[PendingUpload]) -> Result<()> {
        let results: Vec<Result<()>> = limiter::run(
            &mut self.limiter(),
            uploads,
            || self.store.throttled(),
            |u| async move {
                Ok::<_, std::convert::Infallible>(
                    self.store
                        .abort_upload(&u.bucket, &u.key, &u.upload_id)
                        .await,
                )
            },
        )
        .await
        .unwrap_or_else(|never| match never {});
        results.into_iter().collect()
    }

    /// Aborts every pending upload under the destination whose key and upload id `matches`.
    pub(crate) async fn abort_uploads_where(
        &self,
        matches: impl Fn(&str, &str) -> bool,
    ) -> Result<usize> {
        let shared = Arc::new(self.enc().summary());
        let strays: Vec<PendingUpload> = self
            .store
            .list_uploads_under(&self.dest.bucket, &self.dest.dir_prefix())
            .await?
            .into_iter()
            .filter(|u| matches(&u.key, &u.upload_id))
            .map(|u| PendingUpload {
                bucket: self.dest.bucket.clone(),
                key: u.key,
                upload_id: u.upload_id,
                parts: vec![],
                size: 0,
                encryption: shared.clone(),
                created_with: None,
            })
            .collect();
        self.abort_uploads(&strays).await?;
        Ok(strays.len())
    }

    /// Completes one upload and checks its size and encryption. A Complete whose response was
    /// lost and retried answers `NoSuchUpload`: then the object must exist with the right size.
    pub(crate) async fn complete_one(
        &self,
        u: &PendingUpload,
        if_none_match: bool,
    ) -> Result<Completed> {
        let path = S3Path {
            bucket: u.bucket.clone(),
            key: u.key.clone(),
        };
        let enc = self.enc();
        let (etag, observed, checked) = match self
            .store
            .complete_upload(
                &u.bucket,
                &u.key,
                &u.upload_id,
                &u.parts,
                enc,
                if_none_match,
            )
            .await
        {
            Ok((etag, observed)) => (etag, observed, false),
            Err(e) if e.code() == Some("NoSuchUpload") => {
                match self.store.head(&u.bucket, &u.key, enc).await? {
                    Some(h) if h.size == u.size => (h.etag, h.observed, true),
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let proof = completion_proof(
            self.settings.commit.verify,
            &observed,
            checked,
            etag.is_some(),
            u.created_with.is_some(),
        );
        let (etag, observed, size) = if proof == CompletionProof::Unchecked {
            (etag, observed, u.size)
        } else if let (CompletionProof::Created, Some(created)) = (proof, &u.created_with) {
            // Completed, silent on encryption, created with the right one: that is the object's.
            return Ok(Completed {
                size: u.size,
                etag,
                encryption: created.clone(),
            });
        } else if proof == CompletionProof::Answer {
            self.check(&path, "CompleteMultipartUpload", &observed)?;
            (etag, observed, u.size)
        } else {
            let h = self
                .store
                .head(&u.bucket, &u.key, enc)
                .await?
                .ok_or_else(|| Error::NotFound { uri: u.uri() })?;
            self.check(&path, "CompleteMultipartUpload", &h.observed)?;
            if h.size != u.size {
                return Err(Error::Store {
                    op: "CompleteMultipartUpload",
                    uri: u.uri(),
                    status: None,
                    code: None,
                    detail: format!(
                        "the object has {} bytes, the task uploaded {}",
                        h.size, u.size
                    ),
                    hint: String::new(),
                    retryable: false,
                });
            }
            (h.etag.or(etag), h.observed, h.size)
        };
        // The store's answer, shared with the upload's record when it says the same.
        let summary = observed.summary();
        let encryption = match &u.created_with {
            Some(c) if **c == summary => c.clone(),
            _ if *u.encryption == summary => u.encryption.clone(),
            _ => Arc::new(summary),
        };
        Ok(Completed {
            size,
            etag,
            encryption,
        })
    }
}

/// Settings of a store nobody listens on (port 9), plus `extra`, for unit tests.
#[cfg(test)]
pub(crate) fn offline_conf(extra: &[(&str, &str)]) -> Conf {
    [
        ("fs.s3a.endpoint", "http://127.0.0.1:9"),
        ("fs.s3a.access.key", "a"),
        ("fs.s3a.secret.key", "s"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A target on a store nobody listens on, for unit tests of what sends no request.
#[cfg(test)]
pub(crate) fn offline_target(extra: &[(&str, &str)]) -> Target {
    let conf = offline_conf(extra);
    crate::runtime::block_on(Target::open(&conf, "s3a://b/t"))
        .and_then(|r| r)
        .expect("an offline target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_forgets_no_started_upload() {
        let started: Started = Arc::default();
        record_started(&started, "b", "k1", "u1");
        let held = started.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("a task thread dies holding the lock");
        })
        .join();
        assert!(panicked.is_err() && started.is_poisoned());
        record_started(&started, "b", "k2", "u2");
        let ids: Vec<_> = started_uploads(&started)
            .into_iter()
            .map(|(_, _, id)| id)
            .collect();
        assert_eq!(ids, ["u1", "u2"]);
    }
}
