//! Undoing: a job's abort, the rollback of a commit that failed before its point of no return,
//! and the sweep of a job's stray uploads (attempts whose pendingsets never reached the driver).

use crate::error::Result;
use crate::model::*;

use super::Job;

impl Job {
    /// Aborts every pending upload under the destination whose file name is one this job gave
    /// (`naming::is_job_output`, an exact parse, not a substring): the leftovers of attempts
    /// whose pendingsets never reached the driver.
    pub(super) async fn abort_strays(&self) -> Result<usize> {
        self.target
            .abort_uploads_where(|key, _| crate::naming::is_job_output(key, &self.job_id))
            .await
    }

    /// After a failed commit: delete whatever became visible, abort whatever is still pending,
    /// drop the journal. Best effort; failures are logged (the journal then stays for
    /// `sealcommit recover`).
    /// The sweep before `_SUCCESS`: aborts the job's stray uploads (see
    /// [`abort_strays`](Self::abort_strays)) and says how many there were.
    pub(super) async fn sweep_strays(&self) -> Result<()> {
        let strays = self.abort_strays().await?;
        if strays > 0 {
            log::info!(
                "job {} aborted {strays} stray uploads of failed attempts",
                self.job_id
            );
        }
        Ok(())
    }

    pub(super) async fn roll_back(&self, uploads: &[PendingUpload], has_journal: bool) {
        let mut ok = true;
        if let Err(e) = self.target.abort_uploads(uploads).await {
            log::warn!("rollback could not abort every upload: {e}");
            ok = false;
        }
        let keys: Vec<String> = uploads.iter().map(|u| u.key.clone()).collect();
        if let Err(e) = self
            .target
            .store
            .delete_many(&self.target.dest.bucket, &keys)
            .await
        {
            log::warn!("rollback could not delete every new object: {e}");
            ok = false;
        }
        if ok && has_journal {
            let j = self.journal_path();
            if let Err(e) = self.target.store.delete(&j.bucket, &j.key).await {
                log::warn!("rollback could not delete the journal {j}: {e}");
            }
        }
    }

    /// Job abort: abort the uploads of the given pendingsets and any stray upload of this job,
    /// then drop the journal. Nothing of the job becomes visible.
    pub async fn abort_job(&self, pendingsets: Vec<PendingSet>) -> Result<()> {
        let uploads: Vec<PendingUpload> = pendingsets.into_iter().flat_map(|p| p.uploads).collect();
        self.target.abort_uploads(&uploads).await?;
        self.abort_strays().await?;
        if self.published.load(std::sync::atomic::Ordering::SeqCst) {
            log::warn!(
                "job {} was aborted after publishing its output; keeping its journal",
                self.job_id
            );
            return Ok(());
        }
        let j = self.journal_path();
        self.target.store.delete(&j.bucket, &j.key).await
    }
}
