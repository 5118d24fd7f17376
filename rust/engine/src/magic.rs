//! Magic mode (`sealcommit.mode=magic`): a task's output goes straight into the multipart
//! upload of its final key while the task is still writing. Each part is uploaded as soon as it
//! fills, up to `sealcommit.magic.parts-in-flight` at once; a writer that gets ahead waits for
//! a slot. At close the upload is left pending, exactly like a staging upload after task
//! commit, and the driver completes it at job commit. No local disk is used, and the memory a
//! file holds is bounded by `part size × (parts in flight + 1)`, which every writer accounts
//! for and reports (`buffer_peak`).

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
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

impl MagicFile {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::serialize("magic file", e))
    }

    pub fn from_json(s: &str) -> Result<MagicFile> {
        serde_json::from_str(s).map_err(|e| Error::document("magic file", e))
    }
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
}

impl MagicWriter {
    /// A magic-mode writer for `uri`, which must be in the target's bucket. Sends no request: the
    /// upload is created when the first part is full (or at close).
    pub fn open(target: &Target, uri: &str) -> Result<MagicWriter> {
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

    /// Uploads the last part, waits for every part and returns the upload, still pending.
    /// On failure the upload is aborted.
    pub async fn finish(mut self) -> Result<MagicFile> {
        match self.finish_parts().await {
            Ok(()) => {
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
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn finish_parts(&mut self) -> Result<()> {
        // An empty file is one empty part, as in staging mode.
        if !self.buf.is_empty() || self.next_part == 1 {
            self.send_part().await?;
        }
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
        MagicWriter::open(&target, "s3a://b/t/part-0").unwrap()
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

    #[test]
    fn magic_file_round_trips() {
        let f = MagicFile {
            upload: PendingUpload {
                bucket: "b".into(),
                key: "t/part-0".into(),
                upload_id: "u".into(),
                parts: vec![(1, "e".into())],
                size: 3,
                encryption: crate::encryption::EncryptionSummary {
                    algorithm: "SSE-KMS".into(),
                    kms_key_id: Some("k".into()),
                    sse_c_key_md5: None,
                }
                .into(),
                created_with: None,
            },
            buffer_peak: 7,
        };
        assert_eq!(MagicFile::from_json(&f.to_json().unwrap()).unwrap(), f);
        assert!(MagicFile::from_json("{").is_err());
    }
}
