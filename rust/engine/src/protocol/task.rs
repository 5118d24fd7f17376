//! Task commit (executor side): the attempt's files become multipart uploads left pending,
//! gathered into the task's pendingset. Nothing is visible until job commit. In both modes a
//! file's upload starts when the task closes it and finishes in the background, owned by the
//! task attempt (`crate::attempt`); task commit waits for them (staging mode uploads any file
//! not closed that way, as MapReduce's, itself).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::attempt::{ClosedFile, Stop, TaskTimes};
use crate::error::{Error, Result};
use crate::magic::MagicWriter;
use crate::model::*;
use crate::target::{started_uploads, Started, Target};
use crate::uri::S3Path;

use super::Job;

impl Job {
    /// A magic-mode writer for `uri`, which must be in the job's bucket, owned by the task
    /// attempt this job was opened for ([`Job::task`]). Sends no request.
    pub fn magic_writer(&self, uri: &str) -> Result<MagicWriter> {
        MagicWriter::open(&self.target, &self.task, uri)
    }

    /// Staging mode: the task has closed `local`, its output for `uri`. The file's upload
    /// (Create, then its parts streamed from the file) starts now in the background, owned by
    /// the task attempt this job was opened for, and the call returns — unless
    /// `sealcommit.upload.parallelism` files of the attempt are uploading: then it waits for
    /// one. The local file is removed once its upload is done (pending until job commit), or
    /// once the attempt has failed or stopped it. If the attempt has ended, the file is
    /// refused (and removed).
    pub async fn close_staged(&self, local: PathBuf, uri: &str) -> Result<()> {
        let dest = self.dest_of(uri)?;
        let (target, slots) = (self.target.clone(), self.part_slots.clone());
        let upload = move |local, stop| upload_staged(target, local, dest, slots, stop);
        match self.task.hand_over(uri, 0, local, upload).await {
            Ok(()) => Ok(()),
            Err((e, local)) => {
                remove_local(&local).await;
                Err(e)
            }
        }
    }

    /// Task commit in staging mode: waits for the uploads of the files the task closed
    /// ([`close_staged`](Self::close_staged)), uploads any other of `files` (`(local file,
    /// destination uri)`: every file the task was asked to write) now, and leaves every upload
    /// pending. A file asked for and neither closed nor on disk fails the task. If anything
    /// fails, every upload of the attempt is aborted before the error returns.
    /// `attempt_number` is the engine's (Spark's) retry count of this task, used only by the
    /// `sealcommit.fault.task-commit` test hook.
    pub async fn commit_task(
        &self,
        attempt: &str,
        attempt_number: u32,
        files: Vec<(PathBuf, String)>,
    ) -> Result<PendingSet> {
        let (closed, phases) = self.task.commit().await?;
        let closed: Vec<PendingUpload> = closed.into_iter().map(|f| f.upload).collect();
        let started: Started = Arc::default();
        let own_start = Instant::now();
        let result = self.upload_rest(files, &closed, &started).await;
        let own = match &result {
            Ok((_, true)) => Some((own_start, Instant::now())),
            _ => None,
        };
        let result = result.map(|(own, _)| {
            let mut all = closed.clone();
            all.extend(own);
            all
        });
        match self.task_pendingset(attempt, attempt_number, result, 0, phases.times(own)) {
            Ok(p) => Ok(p),
            Err(e) => {
                if let Err(abort_err) = self.target.abort_uploads(&closed).await {
                    log::warn!("could not abort the uploads of {attempt}: {abort_err}");
                }
                abort_started(&self.target, &started).await;
                Err(e)
            }
        }
    }

    /// Uploads those of `files` that are not among the uploads of closed files (`closed`);
    /// whether there were any.
    async fn upload_rest(
        &self,
        files: Vec<(PathBuf, String)>,
        closed: &[PendingUpload],
        started: &Started,
    ) -> Result<(Vec<PendingUpload>, bool)> {
        let done: HashSet<(&str, &str)> = closed
            .iter()
            .map(|u| (u.bucket.as_str(), u.key.as_str()))
            .collect();
        let mut rest = Vec::new();
        for (local, uri) in files {
            let dest = self.dest_of(&uri)?;
            if !done.contains(&(dest.bucket.as_str(), dest.key.as_str())) {
                rest.push((local, dest));
            }
        }
        if rest.is_empty() {
            return Ok((Vec::new(), false));
        }
        Ok((self.upload_all(rest, started).await?, true))
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
        let (files, phases) = self.task.commit().await?;
        let times = phases.times(None);
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

    /// The destination `uri`, which must be in the job's bucket.
    fn dest_of(&self, uri: &str) -> Result<S3Path> {
        let dest = S3Path::parse(uri)?;
        if dest.bucket != self.target.dest.bucket {
            return Err(Error::config(
                "path",
                format!(
                    "{uri} is outside the job's bucket {}; sealcommit writes one bucket per job",
                    self.target.dest.bucket
                ),
            ));
        }
        Ok(dest)
    }

    /// Uploads local files at task commit, as many parts in flight as the attempt allows.
    async fn upload_all(
        &self,
        files: Vec<(PathBuf, S3Path)>,
        started: &Started,
    ) -> Result<Vec<PendingUpload>> {
        let never = || std::future::pending::<()>();
        stream::iter(files)
            .map(|(local, dest)| {
                let slots = self.part_slots.clone();
                async move {
                    self.target
                        .upload_file(local, dest, slots, started, never())
                        .await
                }
            })
            .buffer_unordered(self.target.settings.commit.upload_parallelism)
            .try_collect()
            .await
    }
}

/// A staged file's upload in the background (see [`Job::close_staged`]): on failure, or when
/// its attempt says stop, the upload is aborted. Either way the local file is removed once
/// the upload has ended: uploaded, or given up with its attempt.
async fn upload_staged(
    target: Arc<Target>,
    local: PathBuf,
    dest: S3Path,
    slots: Arc<Semaphore>,
    stop: Stop,
) -> Result<ClosedFile> {
    let started: Started = Arc::default();
    let result = target
        .upload_file(local.clone(), dest, slots, &started, stop.stopped())
        .await;
    if result.is_err() {
        abort_started(&target, &started).await;
    }
    remove_local(&local).await;
    result.map(|upload| ClosedFile {
        upload,
        buffer_peak: 0,
    })
}

/// Aborts every upload recorded in `started`, logging what cannot be aborted.
async fn abort_started(target: &Target, started: &Started) {
    for (bucket, key, id) in started_uploads(started) {
        if let Err(e) = target.store.abort_upload(&bucket, &key, &id).await {
            log::warn!("could not abort upload {id} of s3a://{bucket}/{key}: {e}");
        }
    }
}

/// Removes a staged local file; one already gone is fine, another failure is logged (the
/// task's work directory is removed when the task ends).
async fn remove_local(local: &Path) {
    match tokio::fs::remove_file(local).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("could not remove the staged file {}: {e}", local.display()),
    }
}
