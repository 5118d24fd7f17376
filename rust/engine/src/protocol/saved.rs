//! Hadoop MapReduce has no channel from tasks to the driver: each task commit saves its intent
//! and its pendingset under `<dest>/_sealcommit/<job id>/`; job commit and abort read them back.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::model::*;
use crate::uri::S3Path;

use super::{CommitReport, Job, JOURNAL_DIR};

impl Job {
    /// Where committers without a channel to the driver (Hadoop MapReduce) keep task
    /// pendingsets: `<dest>/_sealcommit/<job id>/`.
    pub(super) fn saved_dir(&self) -> S3Path {
        self.target
            .dest
            .child(&format!("{JOURNAL_DIR}/{}", self.job_id))
    }

    /// Saves a task's pendingset on the store, written and verified like the data (it names
    /// the job's keys). A retried task of the same id replaces it.
    pub async fn save_pendingset(&self, task: &str, set: &PendingSet) -> Result<()> {
        let path = self.saved_path(task, "pendingset")?;
        self.target
            .put_verified(&path, set.to_json()?.into_bytes())
            .await
            .map(|_| ())
    }

    /// Task commit for committers without a channel to the driver (Hadoop MapReduce): first
    /// saves the task's *intent* (`<task>.intent`, the keys it is about to upload — MapReduce
    /// names its files `part-m-00000`, which carry no job id), then uploads, then saves the
    /// pendingset. Job commit and abort find a dead attempt's uploads through the intents.
    pub async fn commit_task_saved(
        &self,
        task: &str,
        attempt: &str,
        attempt_number: u32,
        files: Vec<(PathBuf, String)>,
    ) -> Result<PendingSet> {
        let mut keys = Vec::with_capacity(files.len());
        for (_, uri) in &files {
            keys.push(S3Path::parse(uri)?.key);
        }
        let intent = TaskIntent {
            version: 1,
            job_id: self.job_id.clone(),
            task: task.to_string(),
            keys,
        };
        let body = serde_json::to_vec(&intent)
            .map_err(|e| Error::document(format!("task intent of {task}"), e))?;
        self.target
            .put_verified(&self.saved_path(task, "intent")?, body)
            .await?;
        let set = self.commit_task(attempt, attempt_number, files).await?;
        self.fault_task_saved(attempt_number)?;
        if let Err(e) = self.save_pendingset(task, &set).await {
            if let Err(abort_err) = self.target.abort_uploads(&set.uploads).await {
                log::warn!("could not abort the uploads of {attempt}: {abort_err}");
            }
            return Err(e);
        }
        Ok(set)
    }

    /// The `sealcommit.fault.task-commit=crash-after-upload:<n>` test hook: attempt `n` fails
    /// after uploading without aborting anything, as a task process that died there would.
    pub(super) fn fault_task_saved(&self, attempt_number: u32) -> Result<()> {
        match &self.target.settings.commit.fault_task_commit {
            Some(f)
                if f.strip_prefix("crash-after-upload:")
                    .and_then(|n| n.parse::<u32>().ok())
                    == Some(attempt_number) =>
            {
                Err(Error::Injected(format!(
                    "task commit crashed after uploading ({f}); its uploads are left pending"
                )))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn saved_path(&self, task: &str, kind: &str) -> Result<S3Path> {
        if task.is_empty() || task.contains('/') {
            return Err(Error::config(
                "task id",
                format!("'{task}' is not a usable task id"),
            ));
        }
        Ok(self.saved_dir().child(&format!("{task}.{kind}")))
    }

    /// The saved pendingsets of this job, the keys its task intents name, and the objects
    /// holding both (to delete once the job is done).
    pub(super) async fn load_saved(
        &self,
    ) -> Result<(Vec<PendingSet>, BTreeSet<String>, Vec<String>)> {
        let dir = self.saved_dir().dir_prefix();
        let mut sets = Vec::new();
        let mut intended = BTreeSet::new();
        let mut objects = Vec::new();
        for o in self
            .target
            .store
            .list(&self.target.dest.bucket, &dir)
            .await?
        {
            let pendingset = o.key.ends_with(".pendingset");
            if !pendingset && !o.key.ends_with(".intent") {
                continue;
            }
            let body = self
                .target
                .store
                .get(&self.target.dest.bucket, &o.key, self.target.enc())
                .await?;
            if pendingset {
                sets.push(PendingSet::from_slice(&body)?);
            } else {
                let intent: TaskIntent = serde_json::from_slice(&body).map_err(|e| {
                    Error::document(format!("s3a://{}/{}", self.target.dest.bucket, o.key), e)
                })?;
                intended.extend(intent.keys);
            }
            objects.push(o.key);
        }
        Ok((sets, intended, objects))
    }

    /// Aborts the pending uploads of `keys` except those in `keep` (upload ids): what attempts
    /// that died between their intent and their pendingset left behind.
    pub(super) async fn abort_intended(
        &self,
        keys: &BTreeSet<String>,
        keep: &BTreeSet<&str>,
    ) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.target
            .abort_uploads_where(|key, id| keys.contains(key) && !keep.contains(id))
            .await
    }

    /// Job commit of the saved pendingsets; then the uploads of attempts that died after their
    /// intent are aborted, and the saved documents deleted.
    pub async fn commit_saved(&self) -> Result<CommitReport> {
        let (sets, intended, objects) = self.load_saved().await?;
        let committed: Vec<String> = sets
            .iter()
            .flat_map(|s| s.uploads.iter().map(|u| u.upload_id.clone()))
            .collect();
        let report = self.commit_job(sets, vec![], false).await?;
        let keep: BTreeSet<&str> = committed.iter().map(String::as_str).collect();
        match self.abort_intended(&intended, &keep).await {
            Ok(0) => {}
            Ok(n) => log::info!(
                "job {} aborted {n} upload(s) of failed task attempts",
                self.job_id
            ),
            Err(e) => log::warn!(
                "job {} committed; could not abort the uploads of failed task attempts: {e}",
                self.job_id
            ),
        }
        if let Err(e) = self
            .target
            .store
            .delete_many(&self.target.dest.bucket, &objects)
            .await
        {
            log::warn!(
                "job {} committed; could not delete its saved pendingsets: {e}",
                self.job_id
            );
        }
        Ok(report)
    }

    /// Job abort with saved pendingsets: their uploads, every upload of a key a task intended
    /// and any stray upload of the job are aborted, then the saved documents deleted.
    pub async fn abort_saved(&self) -> Result<()> {
        let (sets, intended, objects) = match self.load_saved().await {
            Ok(found) => found,
            Err(e) => {
                log::warn!(
                    "could not read the saved pendingsets of job {}: {e}",
                    self.job_id
                );
                (Vec::new(), BTreeSet::new(), Vec::new())
            }
        };
        self.abort_job(sets).await?;
        self.abort_intended(&intended, &BTreeSet::new()).await?;
        self.target
            .store
            .delete_many(&self.target.dest.bucket, &objects)
            .await
    }
}

/// What a MapReduce task attempt is about to upload, saved before its first upload starts.
#[derive(serde::Serialize, serde::Deserialize)]
struct TaskIntent {
    version: u32,
    job_id: String,
    task: String,
    keys: Vec<String>,
}
