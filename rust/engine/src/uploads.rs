//! Pending multipart uploads under a prefix, for operators (`sealcommit uploads list|abort`):
//! what a crashed task or driver left behind, and what it costs until it is aborted.
//!
//! The uploads sealcommit recorded come first: those named by journals of interrupted commits
//! and by pendingsets saved on the store (MapReduce), each checked to be still pending. They
//! are found even where ListMultipartUploads cannot find them (MinIO matches the prefix against
//! whole keys only). Then ListMultipartUploads under the prefix adds the rest; where that answer
//! is one MinIO gives to a prefix (nothing, or only the upload of the key equal to the prefix),
//! the bucket's uploads are listed without a prefix and filtered here, and the answer says how
//! far MinIO's listing reaches. Uploads of an interrupted commit are listed but never aborted
//! here: `sealcommit recover` decides their fate.

use std::time::{Duration, SystemTime};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::config::Conf;
use crate::encryption::EncryptionSpec;
use crate::error::Result;
use crate::model::{Journal, JournalState, PendingSet};
use crate::progress::Progress;
use crate::protocol::JOURNAL_DIR;
use crate::settings::BucketSettings;
use crate::store::{ListedUpload, Store};
use crate::uri::S3Path;

#[derive(Debug, Clone, Serialize)]
pub struct PendingUploadInfo {
    pub uri: String,
    pub upload_id: String,
    /// RFC 3339, if known.
    pub initiated: Option<String>,
    pub age_seconds: Option<u64>,
    /// `journal` (an interrupted commit: left to `sealcommit recover`), `pendingset` (saved by
    /// a MapReduce task) or `listing`.
    pub found_in: &'static str,
}

/// The answer of `uploads list` (the pending uploads) or `uploads abort` (the aborted ones).
#[derive(Debug, Clone, Serialize)]
pub struct Uploads {
    pub uploads: Vec<PendingUploadInfo>,
    /// Pending uploads of interrupted commits, left to `sealcommit recover` (abort only).
    pub left: Vec<PendingUploadInfo>,
    /// How far the store's listing reaches, when the answer rests on the bucket-wide listing
    /// ([`UNPREFIXED_LISTING_NOTE`]); `None` otherwise.
    pub note: Option<&'static str>,
}

/// Said with every answer that rests on the bucket-wide listing of multipart uploads.
pub const UNPREFIXED_LISTING_NOTE: &str =
    "the store listed no upload under the prefix (MinIO lists only an upload whose key equals \
     the prefix), so the bucket's uploads were listed without a prefix and filtered here; on \
     MinIO that listing covers only the uploads started through the node that answered since its \
     last restart: older ones, or others' through other nodes, may be missing";

// Whether a prefix listing may be MinIO's partial one: `store::minio_listing_may_hide`. The CLI
// asks again without a prefix on any store (one request more, and it says so).
use crate::store::minio_listing_may_hide as listing_needs_no_prefix;

/// The uploads of `listed` under `path` (the path itself, or anything in it as a directory),
/// except those already `known` (by upload id).
fn under_path(
    path: &S3Path,
    listed: Vec<ListedUpload>,
    known: &[(ListedUpload, &'static str)],
) -> Vec<ListedUpload> {
    let mut out: Vec<ListedUpload> = Vec::new();
    for u in listed {
        let seen = known.iter().any(|(k, _)| k.upload_id == u.upload_id)
            || out.iter().any(|o| o.upload_id == u.upload_id);
        if path.contains_key(&u.key) && !seen {
            out.push(u);
        }
    }
    out
}

/// An upload sealcommit recorded on the store, and where.
struct Recorded {
    upload: ListedUpload,
    found_in: &'static str,
}

/// The uploads named by journals of interrupted commits and by saved pendingsets under `path`.
async fn recorded(store: &Store, path: &S3Path, enc: &EncryptionSpec) -> Result<Vec<Recorded>> {
    let dir = path.child(JOURNAL_DIR).dir_prefix();
    let mut out = Vec::new();
    for o in store.list(&path.bucket, &dir).await? {
        let (found_in, uploads, since) = if o.key.ends_with(".journal") {
            let body = store.get(&path.bucket, &o.key, enc).await?;
            let j = Journal::from_slice(&body)?;
            if j.state == JournalState::Started {
                continue;
            }
            let since = humantime::parse_rfc3339_weak(&j.created).ok();
            ("journal", j.uploads.into_owned(), since)
        } else if o.key.ends_with(".pendingset") {
            let body = store.get(&path.bucket, &o.key, enc).await?;
            let since = (o.modified_ms > 0)
                .then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(o.modified_ms));
            ("pendingset", PendingSet::from_slice(&body)?.uploads, since)
        } else {
            continue;
        };
        for u in uploads {
            // Uploads are created before they are recorded: as old as the record, at least.
            out.push(Recorded {
                upload: ListedUpload {
                    key: u.key,
                    upload_id: u.upload_id,
                    initiated: since,
                },
                found_in,
            });
        }
    }
    Ok(out)
}

/// Which pending uploads an operator asks about.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only uploads started at least this long ago.
    pub older_than: Option<Duration>,
    /// Only uploads whose key carries this job id (sealcommit names files after their job).
    pub job: Option<String>,
}

impl Filter {
    fn keeps(&self, key: &str, age: Option<Duration>) -> bool {
        let old_enough = match (self.older_than, age) {
            (None, _) => true,
            (Some(min), Some(age)) => age >= min,
            // Without a start time the age is unknown: never abort on a guess.
            (Some(_), None) => false,
        };
        old_enough && self.job.as_deref().is_none_or(|j| key.contains(j))
    }
}

async fn store_for(conf: &Conf, uri: &str) -> Result<(S3Path, Store, EncryptionSpec)> {
    let path = S3Path::parse(uri)?;
    let settings = BucketSettings::resolve(conf, &path.bucket)?;
    Ok((
        path.clone(),
        Store::connect(&settings.store).await?,
        settings.encryption,
    ))
}

async fn find(
    store: &Store,
    path: &S3Path,
    enc: &EncryptionSpec,
    filter: &Filter,
    progress: &dyn Progress,
) -> Result<(Vec<PendingUploadInfo>, Option<&'static str>)> {
    let now = SystemTime::now();
    let recorded = recorded(store, path, enc).await?;
    progress.phase("recorded uploads checked", recorded.len() as u64);
    let checked: Vec<Result<Option<Recorded>>> = stream::iter(recorded)
        .map(|r| async move {
            let pending = store
                .is_pending(&path.bucket, &r.upload.key, &r.upload.upload_id)
                .await;
            progress.advance(1);
            Ok(pending?.then_some(r))
        })
        .buffered(16)
        .collect()
        .await;
    let mut found: Vec<(ListedUpload, &'static str)> = Vec::new();
    for r in checked
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        found.push((r.upload, r.found_in));
    }
    // Everything under the path: the path as a directory, or as a key prefix of files.
    let mut listed = store.list_uploads(&path.bucket, &path.key).await?;
    let mut note = None;
    if listing_needs_no_prefix(&path.key, &listed) {
        listed = store.list_uploads(&path.bucket, "").await?;
        note = Some(UNPREFIXED_LISTING_NOTE);
    }
    for u in under_path(path, listed, &found) {
        found.push((u, "listing"));
    }
    let found = found
        .into_iter()
        .filter_map(|(u, found_in)| {
            let age = u.initiated.and_then(|t| now.duration_since(t).ok());
            filter.keeps(&u.key, age).then(|| PendingUploadInfo {
                uri: format!("s3a://{}/{}", path.bucket, u.key),
                upload_id: u.upload_id,
                initiated: u
                    .initiated
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                age_seconds: age.map(|a| a.as_secs()),
                found_in,
            })
        })
        .collect();
    Ok((found, note))
}

/// The pending uploads under `uri` that `filter` keeps.
pub async fn list(
    conf: &Conf,
    uri: &str,
    filter: &Filter,
    progress: &dyn Progress,
) -> Result<Uploads> {
    let (path, store, enc) = store_for(conf, uri).await?;
    let (uploads, note) = find(&store, &path, &enc, filter, progress).await?;
    Ok(Uploads {
        uploads,
        left: Vec::new(),
        note,
    })
}

/// Aborts the pending uploads under `uri` that `filter` keeps, except those of interrupted
/// commits (`sealcommit recover` finishes or undoes them). Returns the aborted ones and the
/// ones left.
pub async fn abort(
    conf: &Conf,
    uri: &str,
    filter: &Filter,
    progress: &dyn Progress,
) -> Result<Uploads> {
    let (path, store, enc) = store_for(conf, uri).await?;
    let (all, note) = find(&store, &path, &enc, filter, progress).await?;
    let (left, found): (Vec<_>, Vec<_>) = all.into_iter().partition(|u| u.found_in == "journal");
    progress.phase("uploads aborted", found.len() as u64);
    let results: Vec<Result<()>> = stream::iter(&found)
        .map(|u| {
            let key = u
                .uri
                .strip_prefix(&format!("s3a://{}/", path.bucket))
                .unwrap_or_default()
                .to_string();
            let store = store.clone();
            let bucket = path.bucket.clone();
            let id = u.upload_id.clone();
            async move {
                let done = store.abort_upload(&bucket, &key, &id).await;
                progress.advance(1);
                done
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(Uploads {
        uploads: found,
        left,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_by_age_and_job_and_never_guesses_an_age() {
        let f = Filter {
            older_than: Some(Duration::from_secs(3600)),
            job: Some("job-7".into()),
        };
        assert!(f.keeps("t/part-0-job-7.parquet", Some(Duration::from_secs(7200))));
        assert!(!f.keeps("t/part-0-job-7.parquet", Some(Duration::from_secs(60))));
        assert!(!f.keeps("t/part-0-job-8.parquet", Some(Duration::from_secs(7200))));
        assert!(!f.keeps("t/part-0-job-7.parquet", None));
        assert!(Filter::default().keeps("anything", None));
    }

    fn up(key: &str, id: &str) -> ListedUpload {
        ListedUpload {
            key: key.into(),
            upload_id: id.into(),
            initiated: None,
        }
    }

    #[test]
    fn minio_prefix_listing_is_asked_again_without_a_prefix() {
        // MinIO's answers to prefix `d/t`: nothing, or only the upload of key `d/t` itself.
        assert!(listing_needs_no_prefix("d/t", &[]));
        assert!(listing_needs_no_prefix(
            "d/t",
            &[up("d/t", "1"), up("d/t", "2")]
        ));
        // A store that matches prefixes (AWS, Ceph RGW) answered: no second listing.
        assert!(!listing_needs_no_prefix(
            "d/t",
            &[up("d/t/part-0.parquet", "1")]
        ));
        assert!(!listing_needs_no_prefix(
            "d/t",
            &[up("d/t", "1"), up("d/tx", "2")]
        ));
        // The bucket's root was listed without a prefix already.
        assert!(!listing_needs_no_prefix("", &[]));
    }

    #[test]
    fn unprefixed_listing_is_filtered_to_the_path() {
        let path = S3Path::parse("s3a://b/d/t").unwrap();
        let bucket_wide = vec![
            up("d/t/part-00000-job-aaa.parquet", "1"),
            up("d/t/p=1/part-00001-job-bbb.parquet", "2"),
            up("d/t", "3"),
            // Neighbours whose names only start like the path, and other directories.
            up("d/tx/part-00000-job-aaa.parquet", "4"),
            up("d/t.parquet", "5"),
            up("d/part-00000.parquet", "6"),
            up("other/d/t/part-0.parquet", "7"),
            // Listed twice (a page boundary), and one the journal named already.
            up("d/t/part-00000-job-aaa.parquet", "1"),
            up("d/t/part-00002-job-aaa.parquet", "8"),
        ];
        let known = vec![(up("d/t/part-00002-job-aaa.parquet", "8"), "journal")];
        let ids: Vec<String> = under_path(&path, bucket_wide.clone(), &known)
            .into_iter()
            .map(|u| u.upload_id)
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
        // Written as a directory, the same path.
        let dir = S3Path::parse("s3a://b/d/t/").unwrap();
        let ids: Vec<String> = under_path(&dir, bucket_wide.clone(), &[])
            .into_iter()
            .map(|u| u.upload_id)
            .collect();
        assert_eq!(ids, ["1", "2", "3", "8"]);
        // The bucket's root holds everything.
        let root = S3Path::parse("s3a://b").unwrap();
        assert_eq!(under_path(&root, bucket_wide, &[]).len(), 8);
        assert!(UNPREFIXED_LISTING_NOTE.contains("since its last restart"));
    }
}
