//! A task attempt's closed files, finishing their uploads in the background. Both modes hand a
//! file over when the task closes it: magic mode the rest of its streaming upload (module
//! `magic`), staging mode the upload of its local file (`Job::close_staged`). The
//! attempt lets a bounded number finish at once (a close past the bound waits for one), keeps
//! what finished, and ends in exactly one way: its task commit waits for every file and takes
//! the uploads (still pending) into the pendingset; a failed file fails the attempt, stops the
//! others and aborts every upload of it; a task abort, or an attempt dropped without either,
//! stops and aborts everything. A file closed after the attempt ended is refused.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::model::PendingUpload;
use crate::store::Store;

/// A closed file whose upload finished: still pending, for the task's pendingset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedFile {
    pub upload: PendingUpload,
    /// Magic mode: the most bytes this file's part buffers held at once (0 in staging mode).
    pub buffer_peak: u64,
}

/// How long a task attempt's uploads and its task commit took (ms), for its pendingset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTimes {
    /// From the first upload started (magic mode: the first file opened; staging mode: the
    /// first file closed, or the task commit's own uploads) to the last upload finished.
    pub upload_ms: u64,
    /// From the start of task commit (its first wait for the files still finishing) until the
    /// pendingset is made.
    pub commit_ms: u64,
}

/// When an attempt's uploads ran, for [`TaskTimes`].
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// When the first upload started (see [`TaskAttempt::started`]).
    pub first: Option<Instant>,
    /// When the last finish ended.
    pub last: Option<Instant>,
    /// When task commit started waiting for the files.
    pub committing: Instant,
}

impl Phases {
    /// The times, with the task commit's own uploads (if any) from `own.0` to `own.1`.
    pub fn times(&self, own: Option<(Instant, Instant)>) -> TaskTimes {
        let first = match (self.first, own) {
            (Some(a), Some((b, _))) => Some(a.min(b)),
            (a, o) => a.or(o.map(|o| o.0)),
        };
        let last = self.last.max(own.map(|o| o.1));
        let upload_ms = match (first, last) {
            (Some(first), Some(last)) => millis(last.saturating_duration_since(first)),
            _ => 0,
        };
        TaskTimes {
            upload_ms,
            commit_ms: millis(self.committing.elapsed()),
        }
    }
}

/// Tells a finishing file that its attempt has ended: stop and abort what it started.
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Returns once the attempt says stop (or is gone).
    pub async fn stopped(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// The closed files of one task attempt. The engine job a task attempt opens holds one
/// (`Job::task`); a magic writer holds a clone too, so a closed file always has an owner,
/// whichever handle Java frees first.
#[derive(Clone)]
pub struct TaskAttempt {
    files: Arc<Files>,
}

/// A running finish: the file's URI, how it went, when it ended.
type Finish = (String, Result<ClosedFile>, Instant);

struct Files {
    store: Store,
    /// Files finishing at once (`sealcommit.magic.files-in-flight`, staging mode
    /// `sealcommit.upload.parallelism`).
    in_flight: Arc<Semaphore>,
    /// Magic mode: KiB of part buffers the finishing files may hold together, and its size.
    memory: Option<(Arc<Semaphore>, u32)>,
    /// Tells the finishing files to stop (task abort, a failed file, the attempt dropped).
    stop: watch::Sender<bool>,
    state: Mutex<State>,
    /// When the attempt's first upload started.
    first: OnceLock<Instant>,
    /// When the attempt's task commit started waiting for its files.
    committing: OnceLock<Instant>,
}

#[derive(Default)]
struct State {
    ended: Option<Ended>,
    finishing: JoinSet<Finish>,
    finished: Vec<ClosedFile>,
    /// When the last finish ended.
    last: Option<Instant>,
    /// The first failure, until task commit (or a wait) reports it.
    failure: Option<Error>,
}

/// Why an attempt takes no more files.
#[derive(Debug, Clone)]
enum Ended {
    Committed,
    Aborted,
    /// A file failed (its message): the attempt fails, every upload of it is aborted.
    Failed(String),
}

impl State {
    /// The error a file closed now gets, if the attempt has ended.
    fn refusal(&self, uri: &str) -> Option<Error> {
        let reason = match self.ended.as_ref()? {
            Ended::Committed => "its task attempt has already committed".to_string(),
            Ended::Aborted => "its task attempt was aborted".to_string(),
            Ended::Failed(m) => format!("another file of its task attempt failed: {m}"),
        };
        Some(Error::TaskEnded {
            uri: uri.to_string(),
            reason,
        })
    }

    /// Takes in the finishes that have ended, without waiting.
    fn reap(&mut self) {
        while let Some(done) = self.finishing.try_join_next() {
            self.record(done);
        }
    }

    fn record(&mut self, done: std::result::Result<Finish, tokio::task::JoinError>) {
        let (uri, result, end) = match done {
            Ok(f) => f,
            Err(e) => (
                "a task output file".to_string(),
                Err(Error::io(
                    "finish the upload of",
                    "a task output file",
                    std::io::Error::other(e),
                )),
                Instant::now(),
            ),
        };
        self.last = self.last.max(Some(end));
        match result {
            Ok(file) => self.finished.push(file),
            Err(e) if self.ended.is_none() => {
                self.ended = Some(Ended::Failed(e.to_string()));
                self.failure = Some(e);
            }
            Err(e) => log::debug!("upload of {uri} ended: {e}"),
        }
    }
}

impl Files {
    fn state(&self) -> MutexGuard<'_, State> {
        // Each update is a push, a take or a field set: a panic elsewhere cannot leave the
        // state half-changed, so a poisoned lock is still right to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot among the files finishing, and (magic mode) room for `held` bytes of buffers.
    async fn permits(
        &self,
        held: u64,
    ) -> Result<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)> {
        let closed = |e| Error::io("finish", "a task output file", std::io::Error::other(e));
        let file = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        let memory = match &self.memory {
            None => None,
            Some((memory, most)) => {
                let kib = u32::try_from(held.div_ceil(1024))
                    .unwrap_or(u32::MAX)
                    .clamp(1, *most);
                Some(
                    memory
                        .clone()
                        .acquire_many_owned(kib)
                        .await
                        .map_err(closed)?,
                )
            }
        };
        Ok((file, memory))
    }

    /// Waits until no file is finishing. If one failed, the attempt fails: the others are
    /// stopped, every finished upload is aborted, and the first failure is returned.
    async fn settle(&self) -> Result<()> {
        loop {
            let mut set = std::mem::take(&mut self.state().finishing);
            if set.is_empty() {
                break;
            }
            while let Some(done) = set.join_next().await {
                let mut state = self.state();
                state.record(done);
                if state.failure.is_some() {
                    // Whatever else is finishing is of no use now.
                    self.stop.send_replace(true);
                }
            }
        }
        let (failure, ended, finished) = {
            let mut state = self.state();
            let failure = state.failure.take();
            let finished = match (&failure, &state.ended) {
                (Some(_), _) | (_, Some(Ended::Failed(_))) => std::mem::take(&mut state.finished),
                _ => Vec::new(),
            };
            (failure, state.ended.clone(), finished)
        };
        if failure.is_some() || matches!(ended, Some(Ended::Failed(_))) {
            self.stop.send_replace(true);
            self.abort_files(finished).await;
        }
        match (failure, ended) {
            (Some(e), _) => Err(e),
            (None, Some(Ended::Failed(m))) => Err(Error::TaskEnded {
                uri: "the task attempt's files".into(),
                reason: format!("one of them failed earlier: {m}"),
            }),
            _ => Ok(()),
        }
    }

    async fn abort_files(&self, files: Vec<ClosedFile>) {
        stream::iter(files)
            .for_each_concurrent(16, |f| async move {
                let u = &f.upload;
                if let Err(e) = self
                    .store
                    .abort_upload(&u.bucket, &u.key, &u.upload_id)
                    .await
                {
                    log::warn!("could not abort upload {} of {}: {e}", u.upload_id, u.uri());
                }
            })
            .await;
    }
}

impl Drop for Files {
    /// An attempt dropped before it committed or aborted (its job freed with files still
    /// finishing): they are stopped and every upload of it aborted, in the background.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if state.finishing.is_empty() && state.finished.is_empty() {
            return;
        }
        self.stop.send_replace(true);
        let mut set = std::mem::take(&mut state.finishing);
        let finished = std::mem::take(&mut state.finished);
        let store = self.store.clone();
        let Ok(rt) = crate::runtime::runtime() else {
            return;
        };
        rt.spawn(async move {
            let mut files = finished;
            while let Some(done) = set.join_next().await {
                if let Ok((_, Ok(f), _)) = done {
                    files.push(f);
                }
            }
            for f in files {
                let u = &f.upload;
                if let Err(e) = store.abort_upload(&u.bucket, &u.key, &u.upload_id).await {
                    log::warn!("could not abort upload {} of {}: {e}", u.upload_id, u.uri());
                }
            }
        });
    }
}

impl TaskAttempt {
    /// The files of a new task attempt on `store`: at most `in_flight` finishing at once and,
    /// if `memory` is given, holding at most that many bytes of buffers together.
    pub fn new(store: Store, in_flight: usize, memory: Option<u64>) -> TaskAttempt {
        let memory = memory.map(|bytes| {
            let kib = u32::try_from(bytes.div_ceil(1024))
                .unwrap_or(u32::MAX)
                .max(1);
            (Arc::new(Semaphore::new(kib as usize)), kib)
        });
        TaskAttempt {
            files: Arc::new(Files {
                store,
                in_flight: Arc::new(Semaphore::new(in_flight.max(1))),
                memory,
                stop: watch::channel(false).0,
                state: Mutex::default(),
                first: OnceLock::new(),
                committing: OnceLock::new(),
            }),
        }
    }

    /// Records that the attempt's uploads have started (the first call counts): magic mode
    /// when a file is opened; a hand-over counts too.
    pub fn started(&self) {
        self.files.first.get_or_init(Instant::now);
    }

    /// Hands a closed file over: `finish(file, stop)` runs in the background, owned by the
    /// attempt, and must abort whatever it started if it fails or is told to stop. Returns at
    /// once, unless as many files as the attempt lets finish at once are finishing (or, with
    /// a memory bound, their buffers and the `held` bytes of this one would exceed it): then
    /// it waits for one. If the attempt has ended (aborted, committed, failed), the file is
    /// refused and given back with the error, for the caller to discard.
    pub async fn hand_over<W, F, Fut>(
        &self,
        uri: &str,
        held: u64,
        file: W,
        finish: F,
    ) -> std::result::Result<(), (Error, W)>
    where
        F: FnOnce(W, Stop) -> Fut,
        Fut: Future<Output = Result<ClosedFile>> + Send + 'static,
    {
        let files = &self.files;
        self.started();
        if let Some(e) = files.state().refusal(uri) {
            return Err((e, file));
        }
        let permits = match files.permits(held).await {
            Ok(p) => p,
            Err(e) => return Err((e, file)),
        };
        let stop = Stop(files.stop.subscribe());
        // Checked and handed over under one lock: an attempt that ends meanwhile either sees
        // this file finishing or refuses it, never neither.
        let mut state = files.state();
        // A file that failed meanwhile fails the attempt: this one is refused too.
        state.reap();
        if let Some(e) = state.refusal(uri) {
            if state.failure.is_some() {
                files.stop.send_replace(true);
            }
            return Err((e, file));
        }
        let running = finish(file, stop);
        let uri = uri.to_string();
        state.finishing.spawn(async move {
            let result = running.await;
            drop(permits);
            (uri, result, Instant::now())
        });
        Ok(())
    }

    /// Waits for every closed file to finish its upload, before the attempt asks to commit
    /// (so a failed upload fails the attempt while Spark may still retry it). If one failed,
    /// the attempt fails: its uploads are aborted and the first failure (naming the file's
    /// key, the operation and the bucket) is returned.
    pub async fn wait(&self) -> Result<()> {
        self.files.committing.get_or_init(Instant::now);
        self.files.settle().await
    }

    /// Task commit's part: waits for every closed file, then returns the finished files (their
    /// uploads still pending) and when the uploads ran. Fails as [`wait`](Self::wait) does;
    /// after it the attempt takes no more files.
    pub async fn commit(&self) -> Result<(Vec<ClosedFile>, Phases)> {
        let committing = *self.files.committing.get_or_init(Instant::now);
        loop {
            self.files.settle().await?;
            let mut state = self.files.state();
            if let Some(e) = state.refusal("the task attempt's files") {
                return Err(e);
            }
            // A file closed while the others were awaited is awaited too.
            if state.finishing.is_empty() {
                state.ended = Some(Ended::Committed);
                let files = std::mem::take(&mut state.finished);
                let phases = Phases {
                    first: self.files.first.get().copied(),
                    last: state.last,
                    committing,
                };
                return Ok((files, phases));
            }
        }
    }

    /// Task abort: stops the files still finishing and aborts every upload of the attempt
    /// (those finished too). The attempt takes no more files.
    pub async fn abort(&self) {
        self.files.state().ended = Some(Ended::Aborted);
        self.files.stop.send_replace(true);
        loop {
            let mut set = std::mem::take(&mut self.files.state().finishing);
            if set.is_empty() {
                break;
            }
            while let Some(done) = set.join_next().await {
                self.files.state().record(done);
            }
        }
        let finished = {
            let mut state = self.files.state();
            state.failure = None;
            std::mem::take(&mut state.finished)
        };
        self.files.abort_files(finished).await;
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_time_spans_the_attempts_and_the_commits_own_uploads() {
        let t0 = Instant::now();
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let p = Phases {
            first: Some(at(10)),
            last: Some(at(50)),
            committing: t0,
        };
        assert_eq!(p.times(None).upload_ms, 40);
        assert_eq!(p.times(Some((at(60), at(90)))).upload_ms, 80);
        let none = Phases {
            first: None,
            last: None,
            committing: t0,
        };
        assert_eq!(none.times(None).upload_ms, 0);
        assert_eq!(none.times(Some((at(60), at(90)))).upload_ms, 30);
    }
}
