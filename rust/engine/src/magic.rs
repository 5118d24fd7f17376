//! Magic mode (`sealcommit.mode=magic`): a task's output goes straight into the multipart
//! upload of its final key while the task is still writing. Each part is uploaded as soon as it
//! fills, up to `sealcommit.magic.parts-in-flight` at once; a writer that gets ahead waits for
//! a slot. At close the upload is left pending, exactly like a staging upload after task
//! commit, and the driver completes it at job commit. No local disk is used, and the memory a
//! file holds is bounded by `part size × (parts in flight + 1)`, which every writer accounts
//! for and reports (`buffer_peak`).
//!
//! Closing a file does not wait for its upload: the rest of it (creating the upload if no part
//! was full yet, the last part, waiting for every part) goes on in the background, owned by the
//! file's task attempt ([`MagicTask`]), which lets at most `sealcommit.magic.files-in-flight`
//! files finish at once, holding together at most what one open file may hold. Task commit
//! waits for all of them; if one failed, the task fails and every upload of the attempt is
//! aborted.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::encryption::EncryptionSpec;
use crate::error::{Error, Result};
use crate::model::PendingUpload;
use crate::store::Store;
use crate::target::Target;
use crate::uri::S3Path;

/// S3's limit on the number of parts of one upload.
const MAX_PARTS: i32 = 10_000;

/// The first allocation of a file's buffer (it doubles from there up to the part size).
const FIRST_BUFFER: usize = 64 << 10;

/// A file written in magic mode, handed from the task's writer to its task commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagicFile {
    pub upload: PendingUpload,
    /// The most bytes this file's part buffers held at once.
    pub buffer_peak: u64,
}

/// Bytes held by part buffers: the one filling plus those being uploaded.
#[derive(Default)]
struct Held {
    now: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
}

impl Held {
    fn add(&self, n: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(n, SeqCst) + n;
        self.peak.fetch_max(now, SeqCst);
    }

    fn sub(&self, n: u64) {
        self.now.fetch_sub(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn now(&self) -> u64 {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One task output file streaming into its multipart upload.
pub struct MagicWriter {
    store: Store,
    dest: S3Path,
    enc: EncryptionSpec,
    part_size: usize,
    upload_id: Option<String>,
    /// What the store said it applies to the upload, when that matched the request.
    created_with: Option<crate::encryption::EncryptionSummary>,
    /// The part being filled. A file's first part grows with what is written (a small file
    /// holds a small buffer); later parts are allocated whole.
    buf: Vec<u8>,
    next_part: i32,
    size: u64,
    slots: Arc<Semaphore>,
    running: JoinSet<Result<(i32, String)>>,
    parts: Vec<(i32, String)>,
    held: Arc<Held>,
    /// The task attempt that finishes this file once it is closed; taken at close.
    task: Option<Arc<TaskFiles>>,
}

impl MagicWriter {
    /// A magic-mode writer for `uri`, which must be in the target's bucket, owned by `task`.
    /// Sends no request: the upload is created when the first part is full (or at close).
    pub fn open(target: &Target, task: &MagicTask, uri: &str) -> Result<MagicWriter> {
        let dest = S3Path::parse(uri)?;
        if dest.bucket != target.dest.bucket {
            return Err(Error::config(
                "path",
                format!(
                    "{uri} is outside the job's bucket {}; sealcommit writes one bucket per job",
                    target.dest.bucket
                ),
            ));
        }
        let c = &target.settings.commit;
        task.files.opened.get_or_init(Instant::now);
        Ok(MagicWriter {
            store: target.store.clone(),
            dest,
            enc: target.settings.encryption.clone(),
            part_size: c.magic_part_size as usize,
            upload_id: None,
            created_with: None,
            buf: Vec::new(),
            next_part: 1,
            size: 0,
            slots: Arc::new(Semaphore::new(c.magic_parts_in_flight)),
            running: JoinSet::new(),
            parts: Vec::new(),
            held: Arc::default(),
            task: Some(task.files.clone()),
        })
    }

    pub fn uri(&self) -> String {
        self.dest.to_string()
    }

    /// Appends bytes; every full part is handed to an upload, waiting for a free slot first.
    /// Must run inside the runtime (the uploads are spawned on it).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.reserve(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.advance().await?;
        }
        Ok(())
    }

    /// Up to `want` more bytes of the part being filled (never empty), for a caller that
    /// copies bytes in itself (the JNI bridge, straight from the Java array) and then calls
    /// [`advance`](Self::advance). The slice is already counted as written.
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        let n = self.reserve(want.max(1));
        let at = self.buf.len();
        self.buf.resize(at + n, 0);
        &mut self.buf[at..]
    }

    /// Makes room for up to `want` more bytes in the part being filled and returns how many
    /// fit. The first part grows by doubling (a small file never holds a whole part); once a
    /// file has a second part, each part is allocated whole.
    fn reserve(&mut self, want: usize) -> usize {
        let len = self.buf.len();
        let n = want.min(self.part_size - len);
        let cap = self.buf.capacity();
        if len + n > cap {
            let target = if self.next_part > 1 {
                self.part_size
            } else {
                (len + n).max(cap * 2).max(FIRST_BUFFER).min(self.part_size)
            };
            self.buf.reserve_exact(target - len);
            self.held.add((self.buf.capacity() - cap) as u64);
        }
        n
    }

    /// Sends the part being filled once it is full.
    pub async fn advance(&mut self) -> Result<()> {
        if self.buf.len() == self.part_size {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let (id, created) = self
            .store
            .create_upload(&self.dest.bucket, &self.dest.key, &self.enc)
            .await?;
        self.upload_id = Some(id.clone());
        self.created_with = created.confirms(&self.enc);
        Ok(id)
    }

    /// Collects finished part uploads, surfacing the first failure.
    fn reap(&mut self) -> Result<()> {
        while let Some(done) = self.running.try_join_next() {
            self.parts.push(joined(done, &self.dest)??);
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<()> {
        let number = self.next_part;
        if number > MAX_PARTS {
            return Err(Error::config(
                "sealcommit.part-size",
                format!(
                    "{} needs more than {MAX_PARTS} parts of {} bytes, the most S3 allows in one \
                     upload; raise sealcommit.part-size",
                    self.dest, self.part_size
                ),
            ));
        }
        let upload_id = self.upload_id().await?;
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::io("upload", &self.dest, std::io::Error::other(e)))?;
        self.reap()?;
        self.next_part += 1;
        let body = std::mem::take(&mut self.buf);
        let held_bytes = body.capacity() as u64;
        self.size += body.len() as u64;
        let (store, dest, enc, held) = (
            self.store.clone(),
            self.dest.clone(),
            self.enc.clone(),
            self.held.clone(),
        );
        self.running.spawn(async move {
            let r = store
                .upload_part(
                    &dest.bucket,
                    &dest.key,
                    &upload_id,
                    number,
                    ByteStream::from(body),
                    &enc,
                )
                .await;
            // The body has been dropped by now (the request owned it).
            held.sub(held_bytes);
            drop(slot);
            r.map(|etag| (number, etag))
        });
        Ok(())
    }

    /// Closes the file: hands the rest of its upload (the last part, every part's answer) to
    /// its task attempt, which finishes it in the background, and returns at once — unless as
    /// many files as the attempt lets finish at once are finishing, or their buffers hold as
    /// much as one open file may: then it waits for one of them. The upload stays pending;
    /// task commit reports how it went. If the attempt has ended (aborted, committed, failed),
    /// the upload is aborted and the close fails.
    pub async fn close(mut self) -> Result<()> {
        let Some(task) = self.task.take() else {
            return self.finish().await.map(|_| ());
        };
        let uri = self.uri();
        let refused = task.state().refusal(&uri);
        if let Some(e) = refused {
            self.abort().await;
            return Err(e);
        }
        let permits = match task.permits(self.held.now()).await {
            Ok(p) => p,
            Err(e) => {
                self.abort().await;
                return Err(e);
            }
        };
        let stop = task.stop.subscribe();
        // Checked and handed over under one lock: an attempt that ends meanwhile either sees
        // this file finishing or refuses it, never neither.
        let mut writer = Some(self);
        let refused = {
            let mut state = task.state();
            // A file that failed meanwhile fails the attempt: this one is refused too.
            state.reap();
            match state.refusal(&uri) {
                Some(e) => {
                    if state.failure.is_some() {
                        task.stop.send_replace(true);
                    }
                    drop(permits);
                    Some(e)
                }
                None => {
                    if let Some(w) = writer.take() {
                        state.finishing.spawn(async move {
                            let result = w.finish_unless(stop).await;
                            drop(permits);
                            (uri, result, Instant::now())
                        });
                    }
                    None
                }
            }
        };
        match (refused, writer) {
            (Some(e), Some(w)) => {
                w.abort().await;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Uploads the last part, waits for every part and returns the upload, still pending.
    /// On failure the upload is aborted.
    pub async fn finish(mut self) -> Result<MagicFile> {
        let result = match self.send_last().await {
            Ok(()) => self.join_parts().await,
            Err(e) => Err(e),
        };
        self.finished(result).await
    }

    /// [`finish`](Self::finish), unless the task attempt says stop while the parts travel: then
    /// the part uploads are dropped and the upload aborted. A Create or the last part's send
    /// is not interrupted, so an upload that exists is always known and can be aborted.
    async fn finish_unless(mut self, stop: watch::Receiver<bool>) -> Result<MagicFile> {
        let result = match self.send_last().await {
            Ok(()) => tokio::select! {
                r = self.join_parts() => r,
                _ = stopped(stop) => Err(Error::TaskEnded {
                    uri: self.uri(),
                    reason: "its task attempt ended first".into(),
                }),
            },
            Err(e) => Err(e),
        };
        self.finished(result).await
    }

    async fn finished(mut self, result: Result<()>) -> Result<MagicFile> {
        if let Err(e) = result {
            self.abort().await;
            return Err(e);
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.0);
        let file = MagicFile {
            upload: PendingUpload {
                bucket: self.dest.bucket.clone(),
                key: self.dest.key.clone(),
                upload_id: self.upload_id.clone().unwrap_or_default(),
                parts,
                size: self.size,
                encryption: self.enc.summary().into(),
                created_with: self.created_with.take().map(Arc::new),
            },
            buffer_peak: self.held.peak(),
        };
        log::info!(
            "magic upload of {} ({} bytes, {} parts) pending until job commit; \
             part buffers peaked at {} bytes",
            self.dest,
            self.size,
            file.upload.parts.len(),
            file.buffer_peak
        );
        Ok(file)
    }

    /// Sends what is left as the last part (creating the upload first if no part was full).
    async fn send_last(&mut self) -> Result<()> {
        // An empty file is one empty part, as in staging mode.
        if !self.buf.is_empty() || self.next_part == 1 {
            self.send_part().await?;
        }
        Ok(())
    }

    /// Waits for every part upload in flight.
    async fn join_parts(&mut self) -> Result<()> {
        while let Some(done) = self.running.join_next().await {
            self.parts.push(joined(done, &self.dest)??);
        }
        Ok(())
    }

    /// Stops the part uploads and aborts the upload: nothing of this file remains.
    pub async fn abort(mut self) {
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
        if let Some(id) = self.upload_id.take() {
            if let Err(e) = self
                .store
                .abort_upload(&self.dest.bucket, &self.dest.key, &id)
                .await
            {
                log::warn!("could not abort upload {id} of {}: {e}", self.dest);
            }
        }
    }
}

fn joined<T>(done: std::result::Result<T, tokio::task::JoinError>, dest: &S3Path) -> Result<T> {
    done.map_err(|e| Error::io("upload a part of", dest, std::io::Error::other(e)))
}

/// Returns once `stop` says stop (or its sender is gone: the attempt that owned it is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How long a task attempt's uploads and its task commit took (ms), for its pendingset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTimes {
    /// From the first file opened to the last upload finished (magic mode: it overlaps the
    /// writing); staging mode: the uploads inside task commit.
    pub upload_ms: u64,
    /// From the start of task commit (magic mode: its first wait for the files still
    /// finishing) until the pendingset is made.
    pub commit_ms: u64,
}

/// The magic-mode files of one task attempt: those closed and still finishing their upload in
/// the background, and those finished, until the attempt commits or aborts. The engine job a
/// task attempt opens (the JNI job handle of `SealOutputCommitter`) holds one; each writer it
/// opens holds it too, so a closed file always has an owner, whichever handle Java frees first.
pub struct MagicTask {
    files: Arc<TaskFiles>,
}

/// A running finish: the file's URI, how it went, when it ended.
type Finish = (String, Result<MagicFile>, Instant);

struct TaskFiles {
    store: crate::store::Store,
    /// `sealcommit.magic.files-in-flight`: files finishing at once.
    in_flight: Arc<Semaphore>,
    /// KiB of part buffers the finishing files may hold together: as much as one open file may
    /// hold (`part size × (parts in flight + 1)`).
    memory: Arc<Semaphore>,
    memory_kib: u32,
    /// Tells the finishing files to stop (task abort, a failed file, the attempt dropped).
    stop: watch::Sender<bool>,
    state: Mutex<TaskState>,
    /// When the attempt's first file was opened.
    opened: OnceLock<Instant>,
    /// When the attempt's task commit started waiting for its files.
    committing: OnceLock<Instant>,
}

#[derive(Default)]
struct TaskState {
    ended: Option<Ended>,
    finishing: JoinSet<Finish>,
    finished: Vec<MagicFile>,
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

impl TaskState {
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
                "a magic-mode file".to_string(),
                Err(Error::io(
                    "finish the upload of",
                    "a magic-mode file",
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

impl TaskFiles {
    fn state(&self) -> MutexGuard<'_, TaskState> {
        // Each update is a push, a take or a field set: a panic elsewhere cannot leave the
        // state half-changed, so a poisoned lock is still right to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot among the files finishing, and room for `held` bytes of buffers among theirs.
    async fn permits(&self, held: u64) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let closed = |e| Error::io("finish", "a magic-mode file", std::io::Error::other(e));
        let kib = u32::try_from(held.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.memory_kib);
        let file = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        let memory = self
            .memory
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(closed)?;
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

    async fn abort_files(&self, files: Vec<MagicFile>) {
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

impl Drop for TaskFiles {
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

impl MagicTask {
    /// The files of a new task attempt writing to `target`.
    pub fn new(target: &Target) -> MagicTask {
        let c = &target.settings.commit;
        let one_file = c
            .magic_part_size
            .saturating_mul(c.magic_parts_in_flight as u64 + 1)
            .div_ceil(1024);
        let memory_kib = u32::try_from(one_file).unwrap_or(u32::MAX).max(1);
        MagicTask {
            files: Arc::new(TaskFiles {
                store: target.store.clone(),
                in_flight: Arc::new(Semaphore::new(c.magic_files_in_flight.max(1))),
                memory: Arc::new(Semaphore::new(memory_kib as usize)),
                memory_kib,
                stop: watch::channel(false).0,
                state: Mutex::default(),
                opened: OnceLock::new(),
                committing: OnceLock::new(),
            }),
        }
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
    /// uploads still pending) and the attempt's times. Fails as [`wait`](Self::wait) does;
    /// after it the attempt takes no more files.
    pub async fn commit(&self) -> Result<(Vec<MagicFile>, TaskTimes)> {
        let started = *self.files.committing.get_or_init(Instant::now);
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
                let upload_ms = match (self.files.opened.get(), state.last) {
                    (Some(first), Some(last)) => millis(last.saturating_duration_since(*first)),
                    _ => 0,
                };
                let times = TaskTimes {
                    upload_ms,
                    commit_ms: millis(started.elapsed()),
                };
                return Ok((files, times));
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
    fn held_bytes_track_the_peak() {
        let h = Held::default();
        h.add(10);
        h.add(5);
        h.sub(10);
        h.add(3);
        assert_eq!(h.peak(), 15);
        assert_eq!(h.now.load(std::sync::atomic::Ordering::SeqCst), 8);
    }

    fn writer(part_mib: u64) -> MagicWriter {
        let part = format!("{part_mib}M");
        let target = crate::target::offline_target(&[
            ("sealcommit.mode", "magic"),
            ("sealcommit.part-size", &part),
        ]);
        let task = MagicTask::new(&target);
        MagicWriter::open(&target, &task, "s3a://b/t/part-0").unwrap()
    }

    #[test]
    fn a_small_file_holds_a_small_buffer() {
        let mut w = writer(16);
        assert_eq!(w.room(100).len(), 100);
        assert_eq!(w.buf.capacity(), FIRST_BUFFER);
        assert_eq!(w.held.peak(), FIRST_BUFFER as u64);
        // Growth doubles; a request larger than what is left of the part is cut to the part.
        assert_eq!(w.room(FIRST_BUFFER).len(), FIRST_BUFFER);
        assert_eq!(w.buf.capacity(), 2 * FIRST_BUFFER);
        let left = (16 << 20) - w.buf.len();
        assert_eq!(w.room(64 << 20).len(), left);
        assert_eq!(w.buf.capacity(), 16 << 20);
        assert_eq!(w.held.peak(), 16 << 20);
    }
}
