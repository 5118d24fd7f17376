//! The commit protocol: jobs on a [`Target`], from setup to commit or abort. Each file is one
//! part of it, and the parts read in the order they run:
//!
//! * `mod.rs` — [`Job`] (a target, a job id and the job's state), `open` and job **setup**
//!   (driver): validate the configuration, write a `started` journal with the requested
//!   encryption and check that the store applied it — a wrong key or an encryption the store
//!   ignores fails the job before any task runs;
//! * [`task`] — a staged file's close (its upload starts in the background, owned by the task
//!   attempt, `crate::attempt`) and **task commit** (executor): wait for the attempt's uploads,
//!   leave them pending and return a pendingset (magic mode: the uploads the task's writers
//!   left pending);
//! * [`job_commit`] — **job commit** (driver), as the steps of the design: journal, complete,
//!   verify, replace, `_SUCCESS`, journal delete; on failure before the point of no return,
//!   undo everything this commit made visible;
//! * [`abort`] — abort exactly the uploads that were started (plus any stray upload of this job
//!   found under the destination), roll back a failed commit;
//! * [`saved`] — Hadoop MapReduce, which has no channel to the driver: pendingsets and task
//!   intents saved on the store;
//! * [`stream`] — a streaming file sink's micro-batches (no journal, no `_SUCCESS`);
//! * [`documents`] — the journal and `_SUCCESS` documents, spooled through a local file;
//! * [`lease`] — the committing driver's lease on its journal;
//! * [`recover`] — finishing or undoing the commits of dead drivers.
//!
//! No object is ever copied or renamed. Log records of this module go to the `commit` logger,
//! those of `lease` and `recover` to the `recover` logger (`crate::log_module`).

pub mod abort;
pub mod documents;
pub mod job_commit;
pub mod lease;
pub mod recover;
pub mod saved;
pub mod stream;
pub mod task;

/// Store faults scripted on the in-memory store, through `Job` and `CheckpointFs`.
#[cfg(test)]
mod store_faults;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Semaphore;

use crate::attempt::TaskAttempt;
use crate::config::Conf;
use crate::config::Mode;
use crate::error::{Error, Result};
use crate::model::JournalState;
use crate::settings::BucketSettings;
use crate::target::Target;
use crate::uri::S3Path;

pub use job_commit::written_partitions;
pub use stream::stream_file_batch;

/// The directory under the destination that holds journals.
pub const JOURNAL_DIR: &str = "_sealcommit";

/// One write job, bound to its destination. Cheap to open: no request is sent.
pub struct Job {
    /// Destination, settings and store, shared with magic writers and staging uploads.
    pub target: Arc<Target>,
    pub job_id: String,
    /// Set once job commit has published new output (or lost its lease): from then on an abort
    /// must not remove the journal, which records what is left to finish.
    published: std::sync::atomic::AtomicBool,
    /// When this job was opened (recorded as the journal owner's start time).
    pub(crate) opened: SystemTime,
    /// How the last Complete phase went (job commit step 2), for the report.
    pub(crate) complete_phase: std::sync::Mutex<CompletePhase>,
    /// The task phases of the pendingsets the last job commit gathered, for the report.
    pub(crate) task_phases: std::sync::Mutex<TaskPhases>,
    /// The closed files of the task attempt this job was opened for (an executor opens one job
    /// per attempt), finishing their uploads in the background (`crate::attempt`): magic
    /// writers' streams, or staged local files.
    pub task: TaskAttempt,
    /// Staging mode: the attempt's part uploads in flight (`sealcommit.upload.parallelism`),
    /// shared by its background uploads and its task commit's.
    pub(crate) part_slots: Arc<Semaphore>,
}

/// The task side of a job, from the pendingsets' times: how many tasks, and how long their
/// uploads and their task commits took in all (task-milliseconds) and at most.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TaskPhases {
    pub tasks: usize,
    pub upload_ms: u64,
    pub upload_ms_max: u64,
    pub commit_ms: u64,
    pub commit_ms_max: u64,
}

impl TaskPhases {
    pub fn add(&mut self, upload_ms: u64, commit_ms: u64) {
        self.tasks += 1;
        self.upload_ms += upload_ms;
        self.upload_ms_max = self.upload_ms_max.max(upload_ms);
        self.commit_ms += commit_ms;
        self.commit_ms_max = self.commit_ms_max.max(commit_ms);
    }
}

/// The Complete phase of a job commit (step 2): how many, how long, how many in flight.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CompletePhase {
    pub completes: usize,
    pub millis: u64,
    /// The most Completes the limiter allowed in flight (`crate::limiter`).
    pub peak_parallelism: usize,
    /// How many times throttling answers halved the Completes in flight.
    pub throttle_cuts: usize,
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
    /// Step 2 alone: its rate is the commit's share of the store's Complete rate.
    pub complete: CompletePhase,
    /// The tasks' uploads and task commits, from their pendingsets.
    pub tasks: TaskPhases,
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
        Job::on(target, job_id)
    }

    /// A job on a target already connected (`Target::over` a store of the caller's own).
    /// Sends no request.
    pub fn on(target: Target, job_id: &str) -> Result<Job> {
        if job_id.is_empty() || job_id.contains('/') {
            return Err(Error::config(
                "job id",
                format!("'{job_id}' is not a usable job id"),
            ));
        }
        Ok(Job::with_target(target, job_id.to_string()))
    }

    fn with_target(target: Target, job_id: String) -> Job {
        let c = &target.settings.commit;
        let task = match c.mode {
            Mode::Magic => crate::magic::task_attempt(&target),
            Mode::Staging => TaskAttempt::new(target.store.clone(), c.upload_parallelism, None),
        };
        Job {
            task,
            part_slots: Arc::new(Semaphore::new(c.upload_parallelism)),
            target: Arc::new(target),
            job_id,
            published: Default::default(),
            opened: SystemTime::now(),
            complete_phase: Default::default(),
            task_phases: Default::default(),
        }
    }

    /// The same destination under another job's identity and settings (recovery), with its
    /// own request counters.
    pub(crate) fn with_identity(&self, job_id: String, settings: BucketSettings) -> Job {
        Job::with_target(self.target.with_settings(settings), job_id)
    }

    pub fn journal_path(&self) -> S3Path {
        self.target
            .dest
            .child(&format!("{JOURNAL_DIR}/{}.journal", self.job_id))
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
}

/// A pending upload of `key` in bucket `b`, unencrypted, for unit tests of the commit's
/// bookkeeping.
#[cfg(test)]
pub(crate) fn test_upload(key: &str) -> crate::model::PendingUpload {
    crate::model::PendingUpload {
        bucket: "b".into(),
        key: key.into(),
        upload_id: "u".into(),
        parts: vec![],
        size: 0,
        encryption: std::sync::Arc::new(crate::encryption::EncryptionSpec::none().summary()),
        created_with: None,
    }
}

/// A job on a store nobody listens on, for unit tests of what sends no request.
#[cfg(test)]
pub(crate) fn offline_job(extra: &[(&str, &str)]) -> Job {
    let conf = crate::target::offline_conf(extra);
    crate::runtime::block_on(Job::open(&conf, "s3a://b/t", "j"))
        .and_then(|r| r)
        .expect("an offline job")
}
