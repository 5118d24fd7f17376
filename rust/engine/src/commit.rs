//! The commit protocol (staging mode).
//!
//! * job setup (driver): validate the configuration, write a `started` journal with the requested
//!   encryption and check that the store applied it — a wrong key or an encryption the store
//!   ignores fails the job before any task runs;
//! * task commit (executor, authorized attempt only): upload each local file as a multipart
//!   upload, parts in parallel, and leave it pending; return a pendingset;
//! * job commit (driver): journal every upload, complete them in parallel, verify each object's
//!   encryption, replace what a static overwrite replaces, write `_SUCCESS`, drop the journal;
//!   on failure undo everything this commit made visible;
//! * abort: abort exactly the uploads that were started (plus any stray upload of this job found
//!   under the destination).
//!
//! No object is ever copied or renamed.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::config::{Conf, Mode, VerifyMode};
use crate::encryption::Observed;
use crate::error::{Error, Result};
use crate::magic::{MagicFile, MagicWriter};
use crate::model::*;
use crate::recover::LeaseGuard;
use crate::settings::BucketSettings;
use crate::target::{started_uploads, Started, Target};
use crate::uri::S3Path;

/// The directory under the destination that holds journals.
pub const JOURNAL_DIR: &str = "_sealcommit";

/// One write job, bound to its destination. Cheap to open: no request is sent.
pub struct Job {
    /// Destination, settings and store, shared with checkpoints and magic writers.
    pub target: Target,
    pub job_id: String,
    /// Set once job commit has published new output (or lost its lease): from then on an abort
    /// must not remove the journal, which records what is left to finish.
    published: std::sync::atomic::AtomicBool,
    /// When this job was opened (recorded as the journal owner's start time).
    pub(crate) opened: SystemTime,
}

/// What a job commit did, returned to the caller (and logged by the Java side).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitReport {
    pub destination: String,
    pub files: usize,
    pub bytes: u64,
    pub replaced_objects: u64,
    pub requests: BTreeMap<String, u64>,
    pub millis: u64,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

impl Job {
    /// Validates the configuration for `dest` and gets a client. Sends no request.
    pub async fn open(conf: &Conf, dest: &str, job_id: &str) -> Result<Job> {
        let dest = S3Path::parse(dest)?;
        if job_id.is_empty() || job_id.contains('/') {
            return Err(Error::config(
                "job id",
                format!("'{job_id}' is not a usable job id"),
            ));
        }
        let settings = BucketSettings::resolve(conf, &dest.bucket)?;
        log::debug!(
            "job {job_id} on {dest}: endpoint {}, encryption {}, {:?}",
            settings.store.endpoint.as_deref().unwrap_or("(AWS)"),
            settings.encryption.summary(),
            settings.commit
        );
        let target = Target::connect(dest, settings).await?;
        Ok(Job {
            target,
            job_id: job_id.to_string(),
            published: Default::default(),
            opened: SystemTime::now(),
        })
    }

    /// The same destination under another job's identity and settings (recovery), with its
    /// own request counters.
    pub(crate) fn with_identity(&self, job_id: String, settings: BucketSettings) -> Job {
        Job {
            target: self.target.with_settings(settings),
            job_id,
            published: Default::default(),
            opened: SystemTime::now(),
        }
    }

    /// A magic-mode writer for `uri`, which must be in the job's bucket. Sends no request.
    pub fn magic_writer(&self, uri: &str) -> Result<MagicWriter> {
        MagicWriter::open(&self.target, uri)
    }

    pub fn journal_path(&self) -> S3Path {
        self.target
            .dest
            .child(&format!("{JOURNAL_DIR}/{}.journal", self.job_id))
    }

    fn journal<'a>(
        &self,
        state: JournalState,
        uploads: &'a [PendingUpload],
        replace_prefixes: Vec<String>,
    ) -> Journal<'a> {
        Journal {
            version: JOURNAL_VERSION,
            job_id: self.job_id.clone(),
            destination: self.target.dest.to_string(),
            state,
            created: now_rfc3339(),
            encryption: self.target.enc().summary(),
            uploads: Cow::Borrowed(uploads),
            replace_prefixes,
            owner: Some(self.owner()),
            lease: None,
        }
    }

    /// Writes one of our JSON documents (journal, `_SUCCESS`), verified like
    /// [`put_verified`](Self::put_verified). A document that lists every file of a large job
    /// is spooled through a local temporary file rather than built in memory; where no
    /// temporary file can be made, it is built in memory.
    async fn put_document(
        &self,
        path: &S3Path,
        what: &'static str,
        doc: &impl serde::Serialize,
        pretty: bool,
    ) -> Result<Observed> {
        let spooled = match Spooled::write(doc, pretty) {
            Ok(s) => Some(s),
            Err(e) => {
                log::debug!("{what} built in memory (no temporary file: {e})");
                None
            }
        };
        let body = match &spooled {
            Some(s) => ByteStream::read_from()
                .path(&s.path)
                .build()
                .await
                .map_err(|e| {
                    Error::io(
                        "read back",
                        s.path.display().to_string(),
                        std::io::Error::other(e),
                    )
                })?,
            None => {
                let mut body = Vec::new();
                write_json(&mut body, doc, pretty).map_err(|e| Error::document(what, e))?;
                ByteStream::from(body)
            }
        };
        self.target.put_verified_stream(path, body, None).await
    }

    /// Job setup: records the job in flight and proves, with one small write, that the store
    /// accepts and applies the requested encryption before any task runs.
    pub async fn setup(&self) -> Result<()> {
        let journal = self.journal(JournalState::Started, &[], vec![]);
        let path = self.journal_path();
        if let Err(e) = self.put_document(&path, "journal", &journal, false).await {
            // Leave nothing behind; the original error is what the user needs to see.
            let _ = self.target.store.delete(&path.bucket, &path.key).await;
            return Err(e);
        }
        // A commit a dead driver left half done is finished before this job adds to it.
        if let Err(e) = self.finish_interrupted_commits().await {
            let _ = self.target.store.delete(&path.bucket, &path.key).await;
            return Err(e);
        }
        Ok(())
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
        let started: Started = Arc::default();
        let result = self.upload_all(files, &started).await;
        match self.task_pendingset(attempt, attempt_number, result, 0) {
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

    /// Task commit in magic mode: the files were uploaded while the task wrote them; this only
    /// gathers them into the task's pendingset. If that fails, the uploads are aborted.
    pub async fn commit_magic_task(
        &self,
        attempt: &str,
        attempt_number: u32,
        files: Vec<MagicFile>,
    ) -> Result<PendingSet> {
        let peak = files.iter().map(|f| f.buffer_peak).max().unwrap_or(0);
        let uploads: Vec<PendingUpload> = files.into_iter().map(|f| f.upload).collect();
        match self.task_pendingset(attempt, attempt_number, Ok(uploads.clone()), peak) {
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
    fn task_pendingset(
        &self,
        attempt: &str,
        attempt_number: u32,
        result: Result<Vec<PendingUpload>>,
        buffer_peak: u64,
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
            "task {attempt} uploaded {} files ({} bytes), pending until job commit",
            uploads.len(),
            uploads.iter().map(|u| u.size).sum::<u64>()
        );
        Ok(PendingSet {
            version: PENDINGSET_VERSION,
            job_id: self.job_id.clone(),
            task_attempt: attempt.to_string(),
            uploads,
            requests: self.target.store.counters.snapshot(),
            buffer_peak,
        })
    }

    async fn upload_all(
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

    /// Aborts every pending upload under the destination whose file name is one this job gave
    /// (`naming::is_job_output`, an exact parse, not a substring): the leftovers of attempts
    /// whose pendingsets never reached the driver.
    async fn abort_strays(&self) -> Result<usize> {
        self.target
            .abort_uploads_where(|key, _| crate::naming::is_job_output(key, &self.job_id))
            .await
    }

    /// The `sealcommit.fault.job-commit` test hook, a comma-separated list of: `<point>` fails
    /// the commit there, `kill:<point>` kills the process there (SIGKILL, as a lost driver),
    /// `pause:<point>:<seconds>` stalls the commit there (its lease is still renewed).
    pub(crate) async fn fault(&self, point: &str) -> Result<()> {
        let Some(hooks) = self.target.settings.commit.fault_job_commit.as_deref() else {
            return Ok(());
        };
        for f in hooks.split(',').map(str::trim) {
            if f == point {
                return Err(Error::Injected(format!("job commit stopped at {point}")));
            }
            if f.strip_prefix("kill:") == Some(point) {
                log::error!("job {} killing this process at {point} ({f})", self.job_id);
                // The shell's builtin kill: no dependency on a kill binary being installed.
                let _ = std::process::Command::new("sh")
                    .args(["-c", &format!("kill -9 {}", std::process::id())])
                    .status();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            if let Some((p, secs)) = f.strip_prefix("pause:").and_then(|r| r.rsplit_once(':')) {
                if p != point {
                    continue;
                }
                let secs: u64 = secs.parse().map_err(|_| {
                    Error::config(
                        "sealcommit.fault.job-commit",
                        format!("'{f}' is not pause:<point>:<seconds>"),
                    )
                })?;
                log::warn!("job {} pausing at {point} for {secs} s ({f})", self.job_id);
                tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                log::warn!("job {} resuming after {point}", self.job_id);
            }
        }
        Ok(())
    }

    /// The uploads of all task pendingsets, checked to belong to this job and not to overlap.
    fn collect_uploads(&self, pendingsets: Vec<PendingSet>) -> Result<Vec<PendingUpload>> {
        let mut uploads = Vec::with_capacity(pendingsets.iter().map(|p| p.uploads.len()).sum());
        let mut encryptions = Vec::new();
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
            replace_prefixes.extend(written_partitions(&self.target.dest, &uploads));
        }

        // The lease first: a journal in state `committing` always names a lease that was taken.
        let (lease, terms) = self.take_lease().await?;
        let result = self
            .commit_leased(&lease, terms, uploads, replace_prefixes, t0, buffer_peak)
            .await;
        lease.release(self).await;
        result
    }

    /// Job commit under the lease: journal, complete and verify, replace, `_SUCCESS`. A commit
    /// that could not renew its lease in time stops where it is and keeps its journal, undoing
    /// nothing: another job's setup or `sealcommit recover` may be rolling it forward.
    async fn commit_leased(
        &self,
        lease: &LeaseGuard,
        terms: LeaseTerms,
        uploads: Vec<PendingUpload>,
        replace_prefixes: Vec<String>,
        t0: Instant,
        buffer_peak: u64,
    ) -> Result<CommitReport> {
        let journal_path = self.journal_path();
        let mut journal =
            self.journal(JournalState::Committing, &uploads, replace_prefixes.clone());
        journal.lease = Some(terms);
        self.put_document(&journal_path, "journal", &journal, false)
            .await?;
        let keep_journal = || {
            self.published
                .store(true, std::sync::atomic::Ordering::SeqCst)
        };
        let published = |e: Error| Error::Published {
            destination: self.target.dest.to_string(),
            journal: journal_path.to_string(),
            source: Box::new(e),
        };

        // Phase 1: complete and verify. Nothing old has been touched, so any failure is undone
        // by deleting what this commit made visible (unless the lease was lost meanwhile).
        let files = match self.complete_all(&uploads).await {
            Ok(files) => files,
            Err(e) if !lease.held() => {
                log::error!(
                    "job {} commit failed ({e}) after its lease lapsed: not rolling \
                     back",
                    self.job_id
                );
                keep_journal();
                return Err(lease.lost(self));
            }
            Err(e) => {
                log::error!("job {} commit failed, rolling back: {e}", self.job_id);
                self.roll_back(&uploads, true).await;
                return Err(e);
            }
        };
        // Phase 2: the new output is published; replace the old and write _SUCCESS. A failure
        // here keeps the journal, which records what is left to do.
        keep_journal();
        if !lease.held() {
            return Err(published(lease.lost(self)));
        }
        if !replace_prefixes.is_empty() {
            journal.state = JournalState::Publishing;
            self.put_document(&journal_path, "journal", &journal, false)
                .await?;
        }
        // From here on only the committed files are needed.
        drop(journal);
        drop(uploads);
        let done = if lease.held() {
            self.publish(files, &replace_prefixes, t0, buffer_peak)
                .await
        } else {
            Err(lease.lost(self))
        };
        match done {
            Ok(report) => {
                self.target
                    .store
                    .delete(&journal_path.bucket, &journal_path.key)
                    .await?;
                Ok(report)
            }
            Err(e) => Err(published(e)),
        }
    }

    pub(crate) async fn complete_all(
        &self,
        uploads: &[PendingUpload],
    ) -> Result<Vec<CommittedFile>> {
        self.fault("after-journal").await?;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let mut files: Vec<CommittedFile> = stream::iter(uploads)
            .map(|u| async {
                let f = self.target.complete_one(u, false).await?;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                self.fault(&format!("after-completes:{n}")).await?;
                Ok::<_, Error>(f)
            })
            .buffer_unordered(self.target.settings.commit.commit_parallelism)
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.key.cmp(&b.key));
        self.fault("before-replace").await?;
        Ok(files)
    }

    pub(crate) async fn publish(
        &self,
        files: Vec<CommittedFile>,
        replace_prefixes: &[String],
        t0: Instant,
        buffer_peak: u64,
    ) -> Result<CommitReport> {
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
        self.fault("before-success").await?;

        let strays = self.abort_strays().await?;
        if strays > 0 {
            log::info!(
                "job {} aborted {strays} stray uploads of failed attempts",
                self.job_id
            );
        }
        let success = self.target.dest.child("_SUCCESS");
        let millis = t0.elapsed().as_millis() as u64;
        let mut requests = self.target.store.counters.snapshot();
        // The counts in _SUCCESS include its own PUT (not the HEAD that may verify it).
        *requests.entry("PutObject".into()).or_default() += 1;
        let data = self.success_data(&files, requests.clone(), replaced, millis, buffer_peak);
        self.put_document(&success, "_SUCCESS", &data, true).await?;
        let report = CommitReport {
            destination: self.target.dest.to_string(),
            files: files.len(),
            bytes: files.iter().map(|f| f.size).sum(),
            replaced_objects: replaced,
            requests: self.target.store.counters.snapshot(),
            millis,
        };
        log::info!(
            "job {} committed {} files ({} bytes) to {} in {} ms, {} objects replaced; requests {:?}",
            self.job_id,
            report.files,
            report.bytes,
            report.destination,
            report.millis,
            report.replaced_objects,
            report.requests
        );
        Ok(report)
    }

    /// After a failed commit: delete whatever became visible, abort whatever is still pending,
    /// drop the journal. Best effort; failures are logged (the journal then stays for
    /// `sealcommit recover`).
    async fn roll_back(&self, uploads: &[PendingUpload], has_journal: bool) {
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

    /// Where committers without a channel to the driver (Hadoop MapReduce) keep task
    /// pendingsets: `<dest>/_sealcommit/<job id>/`.
    fn saved_dir(&self) -> S3Path {
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
    fn fault_task_saved(&self, attempt_number: u32) -> Result<()> {
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

    fn saved_path(&self, task: &str, kind: &str) -> Result<S3Path> {
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
    async fn load_saved(&self) -> Result<(Vec<PendingSet>, BTreeSet<String>, Vec<String>)> {
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
    async fn abort_intended(
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

    /// Commits one micro-batch of a streaming file sink: completes and verifies every upload
    /// and returns the files, which the caller then records in the sink's log (`_spark_metadata`,
    /// the only thing readers trust). No journal and no `_SUCCESS`: a file not in the log is
    /// not part of the output. On failure, everything this call completed is deleted again.
    pub async fn commit_stream(&self, pendingsets: Vec<PendingSet>) -> Result<Vec<CommittedFile>> {
        let uploads = self.collect_uploads(pendingsets)?;
        let result: Result<Vec<CommittedFile>> = stream::iter(&uploads)
            .map(|u| self.target.complete_one(u, false))
            .buffer_unordered(self.target.settings.commit.commit_parallelism)
            .try_collect()
            .await;
        match result {
            Ok(mut files) => {
                files.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(files)
            }
            Err(e) => {
                log::error!(
                    "streaming batch {} of {} failed, rolling back: {e}",
                    self.job_id,
                    self.target.dest
                );
                self.roll_back(&uploads, false).await;
                Err(e)
            }
        }
    }

    /// Deletes files a streaming batch completed but could not record (another writer recorded
    /// the batch first).
    pub async fn discard(&self, keys: &[String]) -> Result<()> {
        self.target
            .store
            .delete_many(&self.target.dest.bucket, keys)
            .await
    }

    /// After streaming batch `batch` is recorded: aborts every pending upload under the sink
    /// that belongs to this batch or an earlier one (see [`stream_file_batch`]): leftovers of
    /// a driver that died in the middle of a batch, which Spark then ran again.
    pub async fn abort_stream_strays(&self, batch: u64) -> Result<usize> {
        let aborted = self
            .target
            .abort_uploads_where(|key, _| stream_file_batch(key).is_some_and(|b| b <= batch))
            .await?;
        if aborted > 0 {
            log::info!(
                "aborted {aborted} stray uploads of batches up to {batch} under {}",
                self.target.dest
            );
        }
        Ok(aborted)
    }

    fn success_data<'a>(
        &self,
        files: &'a [CommittedFile],
        requests: BTreeMap<String, u64>,
        replaced: u64,
        millis: u64,
        buffer_peak: u64,
    ) -> SuccessData<'a> {
        let now = SystemTime::now();
        let timestamp = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let mut metrics = BTreeMap::new();
        metrics.insert("files_committed".to_string(), files.len() as u64);
        metrics.insert("bytes_committed".to_string(), bytes);
        metrics.insert("commit_millis".to_string(), millis);
        metrics.insert("objects_replaced".to_string(), replaced);
        for (op, n) in &requests {
            metrics.insert(format!("requests_{op}"), *n);
        }
        let mut diagnostics = BTreeMap::new();
        diagnostics.insert("destination".to_string(), self.target.dest.to_string());
        diagnostics.insert(
            "encryption".to_string(),
            self.target.enc().summary().to_string(),
        );
        diagnostics.insert(
            "verify".to_string(),
            format!("{:?}", self.target.settings.commit.verify).to_lowercase(),
        );
        SuccessData {
            name: SUCCESS_NAME.to_string(),
            timestamp,
            date: now_rfc3339(),
            hostname: hostname(),
            committer: "sealcommit".to_string(),
            description: format!(
                "sealcommit {} committer, job {}",
                match self.target.settings.commit.mode {
                    Mode::Staging => "staging",
                    Mode::Magic => "magic",
                },
                self.job_id
            ),
            job_id: self.job_id.clone(),
            job_id_source: "spark".to_string(),
            metrics,
            diagnostics,
            filenames: files
                .iter()
                .take(SUCCESS_FILENAMES)
                .map(|f| format!("/{}", f.key))
                .collect(),
            iostatistics: IoStatistics {
                counters: requests.clone(),
                ..Default::default()
            },
            sealcommit: SealSection {
                version: crate::VERSION.to_string(),
                revision: crate::REVISION.to_string(),
                destination: self.target.dest.to_string(),
                requested_encryption: self.target.enc().summary(),
                verified: self.target.settings.commit.verify != VerifyMode::Off,
                files,
                requests,
                replaced_objects: replaced,
                commit_millis: millis,
                buffer_peak,
            },
        }
    }
}

/// A JSON document in a local temporary file (owner-only), removed when dropped. It holds
/// keys and upload ids, never a secret.
struct Spooled {
    path: PathBuf,
}

impl Spooled {
    fn write(doc: &impl serde::Serialize, pretty: bool) -> std::io::Result<Spooled> {
        use std::os::unix::fs::OpenOptionsExt;
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sealcommit-{}-{}.json",
            std::process::id(),
            SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let spooled = Spooled { path };
        let mut w = std::io::BufWriter::new(file);
        write_json(&mut w, doc, pretty)?;
        w.flush()?;
        Ok(spooled)
    }
}

fn write_json(
    w: impl std::io::Write,
    doc: &impl serde::Serialize,
    pretty: bool,
) -> serde_json::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(w, doc)
    } else {
        serde_json::to_writer(w, doc)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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

/// The micro-batch a streaming sink file belongs to. `SealStreamingCommitProtocol` names files
/// `part-<split>-<run id>-sc<batch><suffix>`, the suffix starting with `.` (Spark 3.5:
/// `.c000.snappy.parquet`) or `-` (Spark 4: `-c000.snappy.parquet`); any other name belongs to
/// no batch.
pub fn stream_file_batch(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    if !name.starts_with("part-") {
        return None;
    }
    name.match_indices("-sc").find_map(|(at, _)| {
        let rest = &name[at + 3..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let boundary = rest[end..]
            .chars()
            .next()
            .is_none_or(|c| c == '.' || c == '-');
        (end > 0 && boundary)
            .then(|| rest[..end].parse().ok())
            .flatten()
    })
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

/// A job on a store nobody listens on, for unit tests of what sends no request.
#[cfg(test)]
pub(crate) fn offline_job(extra: &[(&str, &str)]) -> Job {
    let conf: Conf = [
        ("fs.s3a.endpoint", "http://127.0.0.1:9"),
        ("fs.s3a.access.key", "a"),
        ("fs.s3a.secret.key", "s"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    crate::runtime::block_on(Job::open(&conf, "s3a://b/t", "j"))
        .and_then(|r| r)
        .expect("an offline job")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::EncryptionSummary;

    fn set(attempt: &str, keys: &[&str]) -> PendingSet {
        PendingSet {
            version: PENDINGSET_VERSION,
            job_id: "j".into(),
            task_attempt: attempt.into(),
            uploads: keys.iter().map(|k| upload(k)).collect(),
            requests: BTreeMap::new(),
            buffer_peak: 0,
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

    fn upload(key: &str) -> PendingUpload {
        PendingUpload {
            bucket: "b".into(),
            key: key.into(),
            upload_id: "u".into(),
            parts: vec![],
            size: 0,
            encryption: Arc::new(EncryptionSummary {
                algorithm: "none".into(),
                kms_key_id: None,
                sse_c_key_md5: None,
            }),
            created_with: None,
        }
    }

    #[test]
    fn a_spooled_document_is_the_json_and_goes_away() {
        let doc = serde_json::json!({"files": ["a", "b"]});
        let s = Spooled::write(&doc, false).unwrap();
        let path = s.path.clone();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), doc.to_string());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(s);
        assert!(!path.exists());
    }

    #[test]
    fn stream_file_batch_reads_the_batch_from_the_name_only() {
        assert_eq!(
            stream_file_batch("t/p=1/part-00003-5b2f-sc12.c000.snappy.parquet"),
            Some(12)
        );
        assert_eq!(stream_file_batch("t/part-00000-abc-sc0"), Some(0));
        assert_eq!(
            stream_file_batch("t/part-00000-a03d-4926-sc12-c000.snappy.parquet"),
            Some(12)
        );
        assert_eq!(stream_file_batch("t/part-00000-x-scy-sc3.parquet"), Some(3));
        assert_eq!(stream_file_batch("t/-sc9/part-00000-x.parquet"), None);
        assert_eq!(stream_file_batch("t/part-00000-x-scX.parquet"), None);
        assert_eq!(stream_file_batch("t/data-sc3.parquet"), None);
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
