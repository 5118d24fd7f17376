//! Task commit (executor side): the authorized attempt's files become multipart uploads left
//! pending, gathered into the task's pendingset. Nothing is visible until job commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::magic::{MagicWriter, TaskTimes};
use crate::model::*;
use crate::target::{started_uploads, Started};
use crate::uri::S3Path;

use super::Job;

impl Job {
    /// A magic-mode writer for `uri`, which must be in the job's bucket, owned by the task
    /// attempt this job was opened for ([`Job::magic`]). Sends no request.
    pub fn magic_writer(&self, uri: &str) -> Result<MagicWriter> {
        MagicWriter::open(&self.target, &self.magic, uri)
    }

    /// Task commit: uploads every `(local file, destination uri)` and leaves the uploads pending.
    /// If anything fails, the uploads this call started are aborted before the error returns.
    /// `attempt_number` is the engine's (Spark's) retry count of this task, used only by the
    /// `sealcommit.fault.task-commit` test hook.
    pub async fn commit_task(
        &self,
        attempt: &str,
        attempt_number: u32,
        files: Vec<(PathBuf, String)>,
    ) -> Result<PendingSet> {
        let t0 = Instant::now();
        let started: Started = Arc::default();
        let result = self.upload_all(files, &started).await;
        // Staging uploads inside task commit: both phases are the same span.
        let ms = millis(t0);
        let times = TaskTimes {
            upload_ms: ms,
            commit_ms: ms,
        };
        match self.task_pendingset(attempt, attempt_number, result, 0, times) {
            Ok(p) => Ok(p),
            Err(e) => {
                for (bucket, key, id) in started_uploads(&started) {
                    if let Err(abort_err) = self.target.store.abort_upload(&bucket, &key, &id).await
                    {
                        log::warn!(
                            "could not abort upload {id} of s3a://{bucket}/{key}: {abort_err}"
                        );
                    }
                }
                Err(e)
            }
        }
    }

    /// Task commit in magic mode: the files were uploaded while the task wrote them and
    /// finished in the background once closed; this waits for the last of them and gathers
    /// them into the task's pendingset. If one failed, or the pendingset cannot be made, every
    /// upload of the attempt is aborted and the first failure returned.
    pub async fn commit_magic_task(
        &self,
        attempt: &str,
        attempt_number: u32,
    ) -> Result<PendingSet> {
        let (files, times) = self.magic.commit().await?;
        let peak = files.iter().map(|f| f.buffer_peak).max().unwrap_or(0);
        let uploads: Vec<PendingUpload> = files.into_iter().map(|f| f.upload).collect();
        match self.task_pendingset(attempt, attempt_number, Ok(uploads.clone()), peak, times) {
            Ok(p) => Ok(p),
            Err(e) => {
                if let Err(abort_err) = self.target.abort_uploads(&uploads).await {
                    log::warn!("could not abort the uploads of {attempt}: {abort_err}");
                }
                Err(e)
            }
        }
    }

    /// The pendingset of a task whose uploads went as `result`, after the
    /// `sealcommit.fault.task-commit` test hook had its say.
    pub(super) fn task_pendingset(
        &self,
        attempt: &str,
        attempt_number: u32,
        result: Result<Vec<PendingUpload>>,
        buffer_peak: u64,
        times: TaskTimes,
    ) -> Result<PendingSet> {
        let uploads = match (result, &self.target.settings.commit.fault_task_commit) {
            (Ok(_), Some(f))
                if f.strip_prefix("fail-after-upload:")
                    .and_then(|n| n.parse::<u32>().ok())
                    == Some(attempt_number) =>
            {
                return Err(Error::Injected(format!(
                    "task commit of {attempt} failed after uploading ({f})"
                )))
            }
            (r, _) => r?,
        };
        log::info!(
            "task {attempt} uploaded {} files ({} bytes), pending until job commit; \
             uploads {} ms, task commit {} ms",
            uploads.len(),
            uploads.iter().map(|u| u.size).sum::<u64>(),
            times.upload_ms,
            times.commit_ms
        );
        Ok(PendingSet {
            version: PENDINGSET_VERSION,
            job_id: self.job_id.clone(),
            task_attempt: attempt.to_string(),
            uploads,
            requests: self.target.store.counters.snapshot(),
            buffer_peak,
            upload_ms: times.upload_ms,
            commit_ms: times.commit_ms,
        })
    }

    pub(super) async fn upload_all(
        &self,
        files: Vec<(PathBuf, String)>,
        started: &Started,
    ) -> Result<Vec<PendingUpload>> {
        let parallelism = self.target.settings.commit.upload_parallelism;
        let permits = Arc::new(Semaphore::new(parallelism));
        let mut targets = Vec::with_capacity(files.len());
        for (local, uri) in files {
            let dest = S3Path::parse(&uri)?;
            if dest.bucket != self.target.dest.bucket {
                return Err(Error::config(
                    "path",
                    format!("{uri} is outside the job's bucket {}; sealcommit writes one bucket per job", self.target.dest.bucket),
                ));
            }
            targets.push((local, dest));
        }
        stream::iter(targets)
            .map(|(local, dest)| {
                let permits = permits.clone();
                async move { self.target.upload_file(local, dest, permits, started).await }
            })
            .buffer_unordered(parallelism)
            .try_collect()
            .await
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
