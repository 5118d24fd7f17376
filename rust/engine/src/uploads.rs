//! Pending multipart uploads under a prefix, for operators (`sealcommit uploads list|abort`):
//! what a crashed task or driver left behind, and what it costs until it is aborted.

use std::time::{Duration, SystemTime};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::config::{BucketSettings, Conf};
use crate::error::Result;
use crate::store::Store;
use crate::uri::S3Path;

#[derive(Debug, Clone, Serialize)]
pub struct PendingUploadInfo {
    pub uri: String,
    pub upload_id: String,
    /// RFC 3339, if the store said.
    pub initiated: Option<String>,
    pub age_seconds: Option<u64>,
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

async fn store_for(conf: &Conf, uri: &str) -> Result<(S3Path, Store)> {
    let path = S3Path::parse(uri)?;
    let settings = BucketSettings::resolve(conf, &path.bucket)?;
    Ok((path.clone(), Store::connect(&settings.store).await?))
}

async fn find(store: &Store, path: &S3Path, filter: &Filter) -> Result<Vec<PendingUploadInfo>> {
    let now = SystemTime::now();
    // Everything under the path: the path as a directory, or as a key prefix of files.
    let uploads = store.list_uploads(&path.bucket, &path.key).await?;
    Ok(uploads
        .into_iter()
        .filter(|u| path.contains_key(&u.key))
        .filter_map(|u| {
            let age = u.initiated.and_then(|t| now.duration_since(t).ok());
            filter.keeps(&u.key, age).then(|| PendingUploadInfo {
                uri: format!("s3a://{}/{}", path.bucket, u.key),
                upload_id: u.upload_id,
                initiated: u
                    .initiated
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                age_seconds: age.map(|a| a.as_secs()),
            })
        })
        .collect())
}

/// The pending uploads under `uri` that `filter` keeps.
pub async fn list(conf: &Conf, uri: &str, filter: &Filter) -> Result<Vec<PendingUploadInfo>> {
    let (path, store) = store_for(conf, uri).await?;
    find(&store, &path, filter).await
}

/// Aborts the pending uploads under `uri` that `filter` keeps; returns them.
pub async fn abort(conf: &Conf, uri: &str, filter: &Filter) -> Result<Vec<PendingUploadInfo>> {
    let (path, store) = store_for(conf, uri).await?;
    let found = find(&store, &path, filter).await?;
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
            async move { store.abort_upload(&bucket, &key, &id).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(found)
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
}
