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

use crate::commit::Job;
use crate::encryption::EncryptionSpec;
use crate::error::{Error, Result};
use crate::model::PendingUpload;
use crate::store::Store;
use crate::uri::S3Path;

/// S3's limit on the number of parts of one upload.
const MAX_PARTS: i32 = 10_000;

/// A file written in magic mode, handed from the task's writer to its task commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagicFile {
    pub upload: PendingUpload,
    /// The most bytes this file's part buffers held at once.
    pub buffer_peak: u64,
}

impl MagicFile {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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
    /// The part being filled: `part_size` bytes once allocated, the first `filled` written.
    buf: Vec<u8>,
    filled: usize,
    next_part: i32,
    size: u64,
    slots: Arc<Semaphore>,
    running: JoinSet<Result<(i32, String)>>,
    parts: Vec<(i32, String)>,
    held: Arc<Held>,
}

impl Job {
    /// A magic-mode writer for `uri`, which must be in the job's bucket. Sends no request: the
    /// upload is created when the first part is full (or at close).
    pub fn magic_writer(&self, uri: &str) -> Result<MagicWriter> {
        let dest = S3Path::parse(uri)?;
        if dest.bucket != self.dest.bucket {
            return Err(Error::config(
                "path",
                format!(
                    "{uri} is outside the job's bucket {}; sealcommit writes one bucket per job",
                    self.dest.bucket
                ),
            ));
        }
        let c = &self.settings.commit;
        Ok(MagicWriter {
            store: self.store.clone(),
            dest,
            enc: self.settings.encryption.clone(),
            part_size: c.magic_part_size as usize,
            upload_id: None,
            created_with: None,
            buf: Vec::new(),
            filled: 0,
            next_part: 1,
            size: 0,
            slots: Arc::new(Semaphore::new(c.magic_parts_in_flight)),
            running: JoinSet::new(),
            parts: Vec::new(),
            held: Arc::default(),
        })
    }
}

impl MagicWriter {
    pub fn uri(&self) -> String {
        self.dest.to_string()
    }

    /// Appends bytes; every full part is handed to an upload, waiting for a free slot first.
    /// Must run inside the runtime (the uploads are spawned on it).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = self.room();
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            data = &data[n..];
            self.advance(n).await?;
        }
        Ok(())
    }

    /// The unwritten rest of the part being filled (never empty), for a caller that copies
    /// bytes in itself (the JNI bridge, straight from the Java array) and then calls
    /// [`advance`](Self::advance).
    pub fn room(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            // Zeroed: for part-sized allocations the allocator hands out fresh zero pages.
            self.buf = vec![0; self.part_size];
            self.held.add(self.buf.capacity() as u64);
        }
        &mut self.buf[self.filled..]
    }

    /// Records `n` more bytes written into [`room`](Self::room); a full part is sent.
    pub async fn advance(&mut self, n: usize) -> Result<()> {
        self.filled += n;
        self.size += n as u64;
        if self.filled == self.part_size {
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
        let mut body = std::mem::take(&mut self.buf);
        body.truncate(self.filled);
        self.filled = 0;
        let held_bytes = body.capacity() as u64;
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
                        encryption: self.enc.summary(),
                        created_with: self.created_with.take(),
                    },
                    buffer_peak: self.held.peak(),
                };
                log::info!(
                    "sealcommit: magic upload of {} ({} bytes, {} parts) pending until job commit; \
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
        if self.filled > 0 || self.next_part == 1 {
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
                log::warn!(
                    "sealcommit: could not abort upload {id} of {}: {e}",
                    self.dest
                );
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
                },
                created_with: None,
            },
            buffer_peak: 7,
        };
        assert_eq!(MagicFile::from_json(&f.to_json()).unwrap(), f);
        assert!(MagicFile::from_json("{").is_err());
    }
}
