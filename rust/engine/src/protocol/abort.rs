//! Undoing: a job's abort, the rollback of a commit that failed before its point of no return,
//! and the sweep of a job's stray uploads (attempts whose pendingsets never reached the driver).

use std::sync::atomic::{AtomicBool, Ordering};

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

    /// After a failed commit: abort whatever is still pending, delete what this commit may have
    /// made visible (`completed`: the keys whose Complete was sent and not refused), drop the
    /// journal. A key whose Complete the store refused is left alone: whatever is there (another
    /// writer's object, an older file of the same name) is not this commit's. Best effort;
    /// failures are logged (the journal then stays for `sealcommit recover`).
    pub(super) async fn roll_back(
        &self,
        uploads: &[PendingUpload],
        completed: &MaybeCompleted,
        has_journal: bool,
    ) {
        let mut ok = true;
        if let Err(e) = self.target.abort_uploads(uploads).await {
            log::warn!("rollback could not abort every upload: {e}");
            ok = false;
        }
        let keys = completed.keys(uploads);
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

/// The uploads a commit may have made visible, for its rollback, by their place in the
/// commit's list of uploads (one flag each, not a copy of every key): an upload enters when its
/// Complete is sent and leaves only when the store refused that Complete with a definite 4xx
/// answer (e.g. `NoSuchUpload` with no matching object: someone else's object, or none). A
/// Complete that succeeded, failed its check, timed out, got a 5xx or was cancelled in flight
/// stays: the object there may be this commit's.
#[derive(Debug)]
pub(crate) struct MaybeCompleted(Vec<AtomicBool>);

impl MaybeCompleted {
    /// For a commit of `n` uploads, none sent yet.
    pub(crate) fn new(n: usize) -> MaybeCompleted {
        MaybeCompleted((0..n).map(|_| AtomicBool::new(false)).collect())
    }

    fn set(&self, i: usize, maybe: bool) {
        if let Some(flag) = self.0.get(i) {
            flag.store(maybe, Ordering::SeqCst);
        }
    }

    /// Before the Complete of upload `i` is sent.
    pub(crate) fn sending(&self, i: usize) {
        self.set(i, true);
    }

    /// After the Complete of upload `i` (and its checks) returned `result`.
    pub(crate) fn answered<T>(&self, i: usize, result: &Result<T>) {
        if let Err(e) = result {
            if e.status().is_some_and(|s| (400..500).contains(&s)) {
                self.set(i, false);
            }
        }
    }

    /// The keys of `uploads` (the list the indexes refer to) that may be visible, in its order.
    pub(crate) fn keys(&self, uploads: &[PendingUpload]) -> Vec<String> {
        uploads
            .iter()
            .zip(&self.0)
            .filter(|(_, flag)| flag.load(Ordering::SeqCst))
            .map(|(u, _)| u.key.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::protocol::test_upload as upload;

    #[test]
    fn maybe_completed_keeps_what_was_sent_and_not_refused() {
        let ups = [upload("t/a"), upload("t/b"), upload("t/c"), upload("t/d")];
        let done = MaybeCompleted::new(ups.len());
        assert!(done.keys(&ups).is_empty());
        let answer = |status| Error::Store {
            op: "CompleteMultipartUpload",
            uri: "s3a://b/t/b".into(),
            status: Some(status),
            code: None,
            detail: String::new(),
            hint: String::new(),
            retryable: false,
        };
        let (refused, unavailable) = (answer(404), answer(503));
        for i in 0..3 {
            done.sending(i);
        }
        done.answered(0, &Ok::<(), Error>(()));
        done.answered(1, &Err::<(), _>(refused));
        done.answered(2, &Err::<(), _>(unavailable));
        // d was never sent; b was refused; a completed; c may have completed.
        assert_eq!(done.keys(&ups), ["t/a", "t/c"]);
    }
}
