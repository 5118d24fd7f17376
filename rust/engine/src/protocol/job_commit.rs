//! Job commit (driver), the design's steps in the order they run ([`Job::commit_job`]):
//!
//! 0. gather the tasks' pendingsets (one job, no key twice) and the paths to replace; take the
//!    lease (`lease`);
//! 1. **journal**: `<dest>/_sealcommit/<job id>.journal` in state `committing`, every upload and
//!    every path to replace;
//! 2. **complete** every upload in parallel (bounded) and 3. **verify** each object's size and
//!    encryption; a failure here rolls back (`abort`): nothing old was touched;
//!
//!    — the point of no return: the new output is visible —
//!
//! 4. **replace**: the journal says `publishing` (when anything is replaced), then the old
//!    objects of a static overwrite, or of every partition a dynamic partition overwrite wrote,
//!    are deleted; the job's stray uploads are aborted;
//! 5. **`_SUCCESS`**;
//! 6. the journal is deleted, then the lease released.
//!
//! DESIGN.md lists the dynamic overwrite's deletes before the Completes; the engine deletes
//! late, after every new object is complete and verified (ARCHITECTURE.md, "Overwrite deletes
//! late"), so a failed job never loses old data.

use std::collections::HashSet;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::limiter;
use crate::model::*;
use crate::uri::S3Path;

use super::abort::MaybeCompleted;
use super::lease::LeaseGuard;
use super::{CommitReport, CompletePhase, Job, TaskPhases, JOURNAL_DIR};

impl Job {
    /// Job commit. `replace` holds the paths a static overwrite replaces: their old objects are
    /// deleted only after every new object is complete and verified.
    /// With `dynamic_partitions` (Spark's dynamic partition overwrite), every partition
    /// directory the job wrote to is replaced as well, and nothing else.
    pub async fn commit_job(
        &self,
        pendingsets: Vec<PendingSet>,
        replace: Vec<String>,
        dynamic_partitions: bool,
    ) -> Result<CommitReport> {
        let t0 = Instant::now();
        let buffer_peak = pendingsets.iter().map(|p| p.buffer_peak).max().unwrap_or(0);
        let uploads = self.collect_uploads(pendingsets)?;
        let replace_prefixes = self.replace_prefixes(replace, dynamic_partitions, &uploads)?;

        // The lease first: a journal in state `committing` always names a lease that was taken.
        let (lease, terms) = self.take_lease().await?;
        let result = self
            .commit_leased(&lease, terms, uploads, replace_prefixes, t0, buffer_peak)
            .await;
        lease.release(self).await;
        result
    }

    /// The uploads of all task pendingsets, checked to belong to this job and not to overlap.
    pub(super) fn collect_uploads(
        &self,
        pendingsets: Vec<PendingSet>,
    ) -> Result<Vec<PendingUpload>> {
        let mut uploads = Vec::with_capacity(pendingsets.iter().map(|p| p.uploads.len()).sum());
        let mut encryptions = Vec::new();
        let mut phases = TaskPhases::default();
        for p in &pendingsets {
            phases.add(p.upload_ms, p.commit_ms);
        }
        *self
            .task_phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = phases;
        for mut p in pendingsets {
            for (op, n) in &p.requests {
                self.target.store.counters.add(op, *n);
            }
            if p.job_id != self.job_id {
                return Err(Error::document(
                    "pendingset",
                    format!(
                        "task {} belongs to job {}, not {}",
                        p.task_attempt, p.job_id, self.job_id
                    ),
                ));
            }
            share_encryption(&mut p.uploads, &mut encryptions);
            uploads.append(&mut p.uploads);
        }
        // Sorted, duplicates sit side by side: no second index of every key.
        uploads.sort_unstable_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
        if let Some(w) = uploads
            .windows(2)
            .find(|w| (&w[0].bucket, &w[0].key) == (&w[1].bucket, &w[1].key))
        {
            return Err(Error::document(
                "pendingsets",
                format!(
                    "{} was committed by two task attempts; refusing to commit duplicates",
                    w[0].uri()
                ),
            ));
        }
        Ok(uploads)
    }

    /// The key prefixes whose old objects this commit replaces: the paths a static overwrite
    /// named and, for a dynamic partition overwrite, every partition directory the job wrote.
    fn replace_prefixes(
        &self,
        replace: Vec<String>,
        dynamic_partitions: bool,
        uploads: &[PendingUpload],
    ) -> Result<Vec<String>> {
        let mut replace_prefixes = Vec::new();
        for r in replace {
            let p = S3Path::parse(&r)?;
            if p.bucket != self.target.dest.bucket {
                return Err(Error::config(
                    "path",
                    format!("{r} is outside the job's bucket"),
                ));
            }
            replace_prefixes.push(p.dir_prefix());
        }
        if dynamic_partitions {
            replace_prefixes.extend(written_partitions(&self.target.dest, uploads));
        }
        Ok(replace_prefixes)
    }

    /// Job commit under the lease, step by step. A commit that could not renew its lease in
    /// time stops where it is and keeps its journal, undoing nothing: another job's setup or
    /// `sealcommit recover` may be rolling it forward.
    async fn commit_leased(
        &self,
        lease: &LeaseGuard,
        terms: LeaseTerms,
        uploads: Vec<PendingUpload>,
        replace_prefixes: Vec<String>,
        t0: Instant,
        buffer_peak: u64,
    ) -> Result<CommitReport> {
        // 1. Journal: state `committing`, every upload and every path to replace, before the
        //    first Complete.
        let mut journal =
            self.journal(JournalState::Committing, &uploads, replace_prefixes.clone());
        journal.lease = Some(terms);
        self.write_journal(&journal).await?;

        // 2. Complete and 3. verify, undoable: nothing old has been touched.
        let done = self.complete_or_roll_back(lease, &uploads).await?;

        // ---- The point of no return: the new output is visible. From here on a failure keeps
        // the journal, which records what is left to do: rolling back would lose data.
        self.keep_journal();
        if !lease.held() {
            return Err(self.published_error(lease.lost(self)));
        }
        // 4. Replace, announced first: the journal says `publishing` before any old object goes.
        if !replace_prefixes.is_empty() {
            journal.state = JournalState::Publishing;
            self.write_journal(&journal).await?;
        }
        // From here on only the committed files are needed: each takes its upload's key.
        drop(journal);
        let files = committed_files(uploads.into_iter().map(|u| u.key), done);
        // 4. Replace, then the sweep of stray uploads and 5. `_SUCCESS`.
        let done = if lease.held() {
            self.publish(files, &replace_prefixes, t0, buffer_peak)
                .await
        } else {
            Err(lease.lost(self))
        };
        // 6. The journal goes last.
        match done {
            Ok(report) => {
                self.delete_journal().await?;
                Ok(report)
            }
            Err(e) => Err(self.published_error(e)),
        }
    }

    /// Writes the journal (`<dest>/_sealcommit/<job id>.journal`), verified like the data.
    async fn write_journal(&self, journal: &Journal<'_>) -> Result<()> {
        self.put_document(&self.journal_path(), "journal", journal, false)
            .await
            .map(|_| ())
    }

    /// Deletes this job's journal: the commit is done.
    async fn delete_journal(&self) -> Result<()> {
        let j = self.journal_path();
        self.target.store.delete(&j.bucket, &j.key).await
    }

    /// From now on an abort keeps the journal: the commit has published (or lost its lease).
    fn keep_journal(&self) {
        self.published
            .store(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// The error of a commit that failed after the point of no return.
    fn published_error(&self, e: Error) -> Error {
        Error::Published {
            destination: self.target.dest.to_string(),
            journal: self.journal_path().to_string(),
            source: Box::new(e),
        }
    }

    /// Steps 2 and 3: completes every upload and verifies every object. Nothing old has been
    /// touched, so a failure is undone by deleting what this commit made visible, unless the
    /// lease was lost meanwhile (then someone else may be rolling the commit forward: the
    /// journal stays and nothing is undone).
    async fn complete_or_roll_back(
        &self,
        lease: &LeaseGuard,
        uploads: &[PendingUpload],
    ) -> Result<Vec<Completed>> {
        let completed = MaybeCompleted::new(uploads.len());
        match self.complete_all(uploads, &completed).await {
            Ok(files) => Ok(files),
            Err(e) if !lease.held() => {
                log::error!(
                    "job {} commit failed ({e}) after its lease lapsed: not rolling \
                     back",
                    self.job_id
                );
                self.keep_journal();
                Err(lease.lost(self))
            }
            Err(e) => {
                log::error!("job {} commit failed, rolling back: {e}", self.job_id);
                self.roll_back(uploads, &completed, true).await;
                Err(e)
            }
        }
    }

    /// Steps 2 and 3 (also recovery's roll forward): completes every upload in parallel (as
    /// many in flight as the limiter allows), each checked for size and encryption by
    /// `Target::complete_one`. The results are in the order of `uploads`, one each.
    pub(crate) async fn complete_all(
        &self,
        uploads: &[PendingUpload],
        completed: &MaybeCompleted,
    ) -> Result<Vec<Completed>> {
        self.fault("after-journal").await?;
        let done = &std::sync::atomic::AtomicUsize::new(0);
        let started = Instant::now();
        // As many in flight as the store keeps up with, up to sealcommit.commit.parallelism.
        let mut limiter = self.target.limiter();
        let files = limiter::run(
            &mut limiter,
            uploads.iter().enumerate(),
            || self.target.store.throttled(),
            |(i, u)| async move {
                completed.sending(i);
                let f = self.target.complete_one(u, false).await;
                completed.answered(i, &f);
                let f = f?;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                self.fault(&format!("after-completes:{n}")).await?;
                Ok::<_, Error>((i, f))
            },
        )
        .await?;
        let phase = CompletePhase {
            completes: files.len(),
            millis: started.elapsed().as_millis() as u64,
            peak_parallelism: limiter.peak(),
            throttle_cuts: limiter.cuts(),
        };
        log::debug!(
            "job {} completed {} uploads in {} ms, at most {} in flight, halved {} times on \
             throttling",
            self.job_id,
            phase.completes,
            phase.millis,
            phase.peak_parallelism,
            phase.throttle_cuts
        );
        *self
            .complete_phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = phase;
        self.fault("before-replace").await?;
        Ok(in_order(files))
    }

    /// Steps 4 and 5, forward only (also recovery's roll forward): replace what the job
    /// replaces, abort the job's stray uploads, write `_SUCCESS`.
    pub(crate) async fn publish(
        &self,
        files: Vec<CommittedFile>,
        replace_prefixes: &[String],
        t0: Instant,
        buffer_peak: u64,
    ) -> Result<CommitReport> {
        let replaced = self.replace(&files, replace_prefixes).await?;
        self.fault("before-success").await?;
        self.sweep_strays().await?;
        self.write_success(&files, replaced, t0, buffer_peak).await
    }

    /// Step 4: deletes the old objects under every replaced prefix, except the new files and
    /// the journals. Returns how many went.
    async fn replace(&self, files: &[CommittedFile], replace_prefixes: &[String]) -> Result<u64> {
        if replace_prefixes.is_empty() {
            return Ok(0);
        }
        let new_keys: HashSet<&str> = files.iter().map(|f| f.key.as_str()).collect();
        let journal_dir = self.target.dest.child(JOURNAL_DIR).dir_prefix();
        let mut replaced = 0u64;
        for prefix in replace_prefixes {
            let old: Vec<String> = self
                .target
                .store
                .list(&self.target.dest.bucket, prefix)
                .await?
                .into_iter()
                .map(|o| o.key)
                .filter(|k| !new_keys.contains(k.as_str()) && !k.starts_with(&journal_dir))
                .collect();
            self.target
                .store
                .delete_many(&self.target.dest.bucket, &old)
                .await?;
            replaced += old.len() as u64;
        }
        Ok(replaced)
    }

    /// Step 5: writes `_SUCCESS` (every file, the encryption, the requests) and reports.
    async fn write_success(
        &self,
        files: &[CommittedFile],
        replaced: u64,
        t0: Instant,
        buffer_peak: u64,
    ) -> Result<CommitReport> {
        let success = self.target.dest.child("_SUCCESS");
        let millis = t0.elapsed().as_millis() as u64;
        let mut requests = self.target.store.counters.snapshot();
        // The counts in _SUCCESS include its own PUT (not the HEAD that may verify it).
        *requests.entry("PutObject".into()).or_default() += 1;
        let data = self.success_data(files, requests.clone(), replaced, millis, buffer_peak);
        self.put_document(&success, "_SUCCESS", &data, true).await?;
        let report = CommitReport {
            destination: self.target.dest.to_string(),
            files: files.len(),
            bytes: files.iter().map(|f| f.size).sum(),
            replaced_objects: replaced,
            requests: self.target.store.counters.snapshot(),
            millis,
            complete: *self
                .complete_phase
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            tasks: *self
                .task_phases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        };
        let t = &report.tasks;
        log::info!(
            "job {} committed {} files ({} bytes) to {} in {} ms, {} objects replaced; \
             {} tasks: uploads {} ms in all (longest {} ms), task commits {} ms in all \
             (longest {} ms); requests {:?}",
            self.job_id,
            report.files,
            report.bytes,
            report.destination,
            report.millis,
            report.replaced_objects,
            t.tasks,
            t.upload_ms,
            t.upload_ms_max,
            t.commit_ms,
            t.commit_ms_max,
            report.requests
        );
        Ok(report)
    }
}

/// The results of Completes sent as `(index in the uploads, result)`, in the uploads' order.
pub(crate) fn in_order(mut done: Vec<(usize, Completed)>) -> Vec<Completed> {
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, c)| c).collect()
}

/// The committed files: each upload's key (`keys`, in the uploads' order) with what its
/// Complete established (`done`, the same order), sorted by key.
pub(crate) fn committed_files(
    keys: impl IntoIterator<Item = String>,
    done: Vec<Completed>,
) -> Vec<CommittedFile> {
    let mut files: Vec<CommittedFile> =
        keys.into_iter().zip(done).map(|(k, c)| c.file(k)).collect();
    files.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    files
}

/// The partition directories (key prefixes ending in `/`) that uploads write to, below `dest`.
/// Files directly in `dest` belong to no partition and replace nothing.
pub fn written_partitions(dest: &S3Path, uploads: &[PendingUpload]) -> Vec<String> {
    let root = dest.dir_prefix();
    let dirs: std::collections::BTreeSet<String> = uploads
        .iter()
        .filter(|u| u.bucket == dest.bucket)
        .filter_map(|u| u.key.rfind('/').map(|i| u.key[..=i].to_string()))
        .filter(|dir| dir.starts_with(&root) && dir.len() > root.len())
        .collect();
    dirs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::protocol::{offline_job, test_upload as upload};

    fn set(attempt: &str, keys: &[&str]) -> PendingSet {
        PendingSet {
            version: PENDINGSET_VERSION,
            job_id: "j".into(),
            task_attempt: attempt.into(),
            uploads: keys.iter().map(|k| upload(k)).collect(),
            requests: BTreeMap::new(),
            buffer_peak: 0,
            upload_ms: 0,
            commit_ms: 0,
        }
    }

    #[test]
    fn collected_uploads_are_sorted_shared_and_unique() {
        let job = offline_job(&[]);
        let ups = job
            .collect_uploads(vec![set("a1", &["t/z", "t/b"]), set("a2", &["t/a"])])
            .unwrap();
        let keys: Vec<&str> = ups.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["t/a", "t/b", "t/z"]);
        assert!(Arc::ptr_eq(&ups[0].encryption, &ups[2].encryption));

        let err = job
            .collect_uploads(vec![set("a1", &["t/a", "t/b"]), set("a2", &["t/c", "t/b"])])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s3a://b/t/b was committed by two task attempts"),
            "{err}"
        );
        let mut other = set("a3", &["t/d"]);
        other.job_id = "k".into();
        let err = job.collect_uploads(vec![other]).unwrap_err().to_string();
        assert!(err.contains("task a3 belongs to job k, not j"), "{err}");
    }

    #[test]
    fn written_partitions_are_the_leaf_directories_under_dest() {
        let dest = S3Path::parse("s3a://b/t").unwrap();
        let ups = [
            upload("t/p=1/part-0.parquet"),
            upload("t/p=1/part-1.parquet"),
            upload("t/p=2/q=x/part-0.parquet"),
            upload("t/part-9.parquet"),
            upload("other/p=3/part-0.parquet"),
        ];
        assert_eq!(
            written_partitions(&dest, &ups),
            vec!["t/p=1/".to_string(), "t/p=2/q=x/".to_string()]
        );
    }
}
