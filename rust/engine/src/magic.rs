//! Magic mode (`sealcommit.mode=magic`): a task's output goes straight into the multipart
//! upload of its final key while the task is still writing. Each part is uploaded as soon as it
//! fills, up to `sealcommit.magic.parts-in-flight` at once; a writer that gets ahead waits for
//! a slot. At close the upload is left pending, exactly like a staging upload, and the driver
//! completes it at job commit. No local disk is used, and the memory a
//! file holds is bounded by `part size × (parts in flight + 1)`, which every writer accounts
//! for and reports (`buffer_peak`).
//!
//! Closing a file does not wait for its upload: the rest of it (creating the upload if no part
//! was full yet, the last part, waiting for every part) goes on in the background, owned by the
//! file's task attempt ([`TaskAttempt`], shared with staging mode), which lets at most
//! `sealcommit.magic.files-in-flight` files finish at once, holding together at most what one
//! open file may hold. Task commit waits for all of them; if one failed, the task fails and
//! every upload of the attempt is aborted.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::attempt::{ClosedFile, Stop, TaskAttempt};
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
    task: Option<TaskAttempt>,
}

impl MagicWriter {
    /// A magic-mode writer for `uri`, which must be in the target's bucket, owned by `task`.
    /// Sends no request: the upload is created when the first part is full (or at close).
    pub fn open(target: &Target, task: &TaskAttempt, uri: &str) -> Result<MagicWriter> {
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
        task.started();
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
            task: Some(task.clone()),
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
        let held = self.held.now();
        match task
            .hand_over(&uri, held, self, |w, stop| w.finish_unless(stop))
            .await
        {
            Ok(()) => Ok(()),
            Err((e, w)) => {
                w.abort().await;
                Err(e)
            }
        }
    }

    /// Uploads the last part, waits for every part and returns the upload, still pending.
    /// On failure the upload is aborted.
    pub async fn finish(mut self) -> Result<ClosedFile> {
        let result = match self.send_last().await {
            Ok(()) => self.join_parts().await,
            Err(e) => Err(e),
        };
        self.finished(result).await
    }

    /// [`finish`](Self::finish), unless the task attempt says stop while the parts travel: then
    /// the part uploads are dropped and the upload aborted. A Create or the last part's send
    /// is not interrupted, so an upload that exists is always known and can be aborted.
    async fn finish_unless(mut self, stop: Stop) -> Result<ClosedFile> {
        let result = match self.send_last().await {
            Ok(()) => tokio::select! {
                r = self.join_parts() => r,
                _ = stop.stopped() => Err(Error::TaskEnded {
                    uri: self.uri(),
                    reason: "its task attempt ended first".into(),
                }),
            },
            Err(e) => Err(e),
        };
        self.finished(result).await
    }

    async fn finished(mut self, result: Result<()>) -> Result<ClosedFile> {
        if let Err(e) = result {
            self.abort().await;
            return Err(e);
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.0);
        let file = ClosedFile {
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

/// The task attempt of a magic-mode job: at most `sealcommit.magic.files-in-flight` closed files
/// finishing at once, holding together at most what one open file may hold
/// (`part size × (parts in flight + 1)`).
pub fn task_attempt(target: &Target) -> TaskAttempt {
    let c = &target.settings.commit;
    let one_file = c
        .magic_part_size
        .saturating_mul(c.magic_parts_in_flight as u64 + 1);
    TaskAttempt::new(
        target.store.clone(),
        c.magic_files_in_flight,
        Some(one_file),
    )
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
        let task = task_attempt(&target);
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
