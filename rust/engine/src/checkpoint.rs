//! Streaming checkpoint files without rename.
//!
//! Spark writes every checkpoint file (`offsets/N`, `commits/N`, `metadata`, `sources/…`, a file
//! sink's `_spark_metadata/N`, state store files) through `CheckpointFileManager.createAtomic`:
//! the file must appear whole or not at all, and a metadata-log file must not replace one that
//! another writer created. Here the bytes are buffered (in memory, spilling to a local file past
//! `sealcommit.checkpoint.memory-buffer`) and published at close with ONE request carrying the
//! encryption headers: a PUT with `If-None-Match: *` when the file must not exist yet, a plain
//! PUT otherwise. Files above `sealcommit.checkpoint.multipart-threshold` go through a multipart
//! upload completed at close. No temporary object, no copy, no rename.
//!
//! Whether the store honours `If-None-Match` (on PutObject, and on CompleteMultipartUpload) is
//! found out once per store and bucket with a probe, and logged. Where conditional Complete is
//! ignored (Ceph RGW 16), a create-only file is always written with one conditional PUT (up to
//! the 5 GiB a PUT allows) so the guarantee holds; where even a conditional PUT is ignored,
//! the file is checked with HEAD first and a warning says concurrent writers go undetected.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tempfile::NamedTempFile;
use tokio::sync::{OnceCell, Semaphore};

use crate::config::{parse_size, Conf};
use crate::error::{Error, Result};
use crate::store::{Download, PutOutcome};
use crate::target::{started_uploads, Started, Target};
use crate::uri::S3Path;

/// The most one PUT may carry.
pub const MAX_PUT_BYTES: u64 = 5 << 30;

/// Settings of checkpoint writes.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Bytes kept in memory before the stream spills to a local file.
    pub memory_buffer: u64,
    /// Files larger than this are written as a multipart upload.
    pub multipart_threshold: u64,
    /// Where spilled streams live (`sealcommit.staging.dir`, else the system temp dir).
    pub spill_dir: PathBuf,
}

impl CheckpointConfig {
    pub fn resolve(conf: &Conf, bucket: &str) -> Result<CheckpointConfig> {
        let size = |rest: &str, default: u64, min: u64, max: u64| -> Result<u64> {
            match conf.own(bucket, rest) {
                None => Ok(default),
                Some(v) => {
                    let n = parse_size(&v)?;
                    if n < min || n > max {
                        return Err(Error::config(
                            &v.key,
                            format!("{n} bytes is out of range; use {min} to {max} bytes"),
                        ));
                    }
                    Ok(n)
                }
            }
        };
        let spill_dir = conf
            .own(bucket, "staging.dir")
            .map(|v| PathBuf::from(v.value))
            .unwrap_or_else(std::env::temp_dir);
        Ok(CheckpointConfig {
            memory_buffer: size("checkpoint.memory-buffer", 8 << 20, 0, 1 << 30)?,
            multipart_threshold: size(
                "checkpoint.multipart-threshold",
                128 << 20,
                1,
                MAX_PUT_BYTES,
            )?,
            spill_dir,
        })
    }
}

/// What a store does with `If-None-Match: *`, found by probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditional {
    pub put: bool,
    pub complete: bool,
}

type ProbeCells = Mutex<HashMap<String, Arc<OnceCell<Conditional>>>>;
static PROBES: OnceLock<ProbeCells> = OnceLock::new();

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub size: u64,
    pub modified_ms: u64,
    pub is_dir: bool,
}

/// Checkpoint file operations under one root (the path Spark created the manager for).
pub struct CheckpointFs {
    target: Target,
    cfg: CheckpointConfig,
}

fn unique() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl CheckpointFs {
    /// Validates the settings for `root` and gets a client. Sends no request.
    pub async fn open(conf: &Conf, root: &str) -> Result<CheckpointFs> {
        let target = Target::open(conf, root).await?;
        log::debug!(
            "checkpoint {}: endpoint {}, encryption {}",
            target.dest,
            target.settings.store.endpoint.as_deref().unwrap_or("(AWS)"),
            target.settings.encryption.summary()
        );
        let cfg = CheckpointConfig::resolve(conf, &target.dest.bucket)?;
        Ok(CheckpointFs { target, cfg })
    }

    pub fn root(&self) -> &S3Path {
        &self.target.dest
    }

    fn path(&self, uri: &str) -> Result<S3Path> {
        let p = S3Path::parse(uri)?;
        if p.bucket != self.target.dest.bucket {
            return Err(Error::config(
                "path",
                format!(
                    "{uri} is outside the checkpoint's bucket {}; a checkpoint lives in one bucket",
                    self.target.dest.bucket
                ),
            ));
        }
        Ok(p)
    }

    /// The files and directories directly under `dir`; an empty list if there are none (S3 has
    /// no directories: one exists while something is under it).
    pub async fn list(&self, dir: &str) -> Result<Vec<Entry>> {
        let dir = self.path(dir)?;
        let prefix = dir.dir_prefix();
        let listing = self
            .target
            .store
            .list_dir(&dir.bucket, &prefix, None)
            .await?;
        let mut out = Vec::with_capacity(listing.objects.len() + listing.dirs.len());
        for o in listing.objects {
            // A zero-byte `dir/` marker (written by other tools) is the directory itself.
            if o.key == prefix {
                continue;
            }
            out.push(Entry {
                uri: format!("s3a://{}/{}", dir.bucket, o.key),
                size: o.size,
                modified_ms: o.modified_ms,
                is_dir: false,
            });
        }
        for d in listing.dirs {
            out.push(Entry {
                uri: format!("s3a://{}/{}", dir.bucket, d.trim_end_matches('/')),
                size: 0,
                modified_ms: 0,
                is_dir: true,
            });
        }
        Ok(out)
    }

    /// A file exists, or a directory with something under it.
    pub async fn exists(&self, uri: &str) -> Result<bool> {
        let p = self.path(uri)?;
        if !p.key.is_empty()
            && self
                .target
                .store
                .head(&p.bucket, &p.key, &self.target.settings.encryption)
                .await?
                .is_some()
        {
            return Ok(true);
        }
        let under = self
            .target
            .store
            .list_dir(&p.bucket, &p.dir_prefix(), Some(1))
            .await?;
        Ok(!under.objects.is_empty() || !under.dirs.is_empty())
    }

    /// Deletes a file, or a directory and everything under it; nothing there is not an error.
    pub async fn delete(&self, uri: &str) -> Result<()> {
        let p = self.path(uri)?;
        if p.key.is_empty() {
            return Err(Error::config(
                "path",
                format!("refusing to delete the whole bucket {uri}"),
            ));
        }
        self.target.store.delete(&p.bucket, &p.key).await?;
        let under: Vec<String> = self
            .target
            .store
            .list(&p.bucket, &p.dir_prefix())
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        if !under.is_empty() {
            self.target.store.delete_many(&p.bucket, &under).await?;
        }
        Ok(())
    }

    /// Opens a file for reading (one GET; the body streams as it is read).
    pub async fn open_read(self: &Arc<Self>, uri: &str) -> Result<Reader> {
        let path = self.path(uri)?;
        let d = self
            .target
            .store
            .open_read(
                &path.bucket,
                &path.key,
                &self.target.settings.encryption,
                0,
                None,
            )
            .await?;
        Ok(Reader {
            fs: self.clone(),
            path,
            size: d.total,
            etag: d.etag.clone(),
            pos: 0,
            body: Some(d.body),
            pending: Bytes::new(),
        })
    }

    /// Starts an atomic write of `uri`. Nothing is sent before [`AtomicWriter::commit`].
    pub fn create(self: &Arc<Self>, uri: &str, overwrite: bool) -> Result<AtomicWriter> {
        Ok(AtomicWriter {
            fs: self.clone(),
            path: self.path(uri)?,
            overwrite,
            mem: Vec::new(),
            spill: None,
            len: 0,
        })
    }

    /// How the store treats conditional writes: probed once per process, store and bucket.
    pub async fn conditional(&self) -> Result<Conditional> {
        let id = format!(
            "{}|{}",
            self.target
                .settings
                .store
                .endpoint
                .as_deref()
                .unwrap_or("aws"),
            self.target.dest.bucket
        );
        let cell = {
            let mut cells = PROBES
                .get_or_init(Default::default)
                .lock()
                .map_err(|_| Error::document("probe cache", "poisoned lock"))?;
            cells.entry(id).or_default().clone()
        };
        cell.get_or_try_init(|| self.probe()).await.copied()
    }

    /// Writes a probe object, then tries to create it again with a conditional PUT and with a
    /// conditional CompleteMultipartUpload; a store that honours `If-None-Match` refuses both.
    async fn probe(&self) -> Result<Conditional> {
        let probe = self
            .target
            .dest
            .child(&format!("_sealcommit/probe-{}", unique()));
        let result = self.probe_at(&probe).await;
        if let Err(e) = self.target.store.delete(&probe.bucket, &probe.key).await {
            log::warn!("could not delete the probe object {probe}: {e}");
        }
        let c = result?;
        let store = self
            .target
            .settings
            .store
            .endpoint
            .as_deref()
            .unwrap_or("AWS S3");
        let bucket = &self.target.dest.bucket;
        match (c.put, c.complete) {
            (true, true) => log::info!(
                "{store} bucket {bucket} honours If-None-Match on PutObject and \
                 CompleteMultipartUpload: checkpoint files are created atomically"
            ),
            (true, false) => log::info!(
                "{store} bucket {bucket} honours If-None-Match on PutObject but \
                 ignores it on CompleteMultipartUpload: create-only checkpoint files are \
                 written with one conditional PUT (up to 5 GiB)"
            ),
            (false, _) => log::warn!(
                "{store} bucket {bucket} ignores If-None-Match: checkpoint files \
                 are checked with HEAD before they are written, so two queries writing the same \
                 checkpoint at once are not detected. Run one query per checkpoint"
            ),
        }
        Ok(c)
    }

    async fn probe_at(&self, probe: &S3Path) -> Result<Conditional> {
        let store = &self.target.store;
        let enc = &self.target.settings.encryption;
        let (b, k) = (&probe.bucket, &probe.key);
        self.target
            .put_verified_stream(probe, ByteStream::from_static(b"sealcommit probe"), None)
            .await?;
        let put = matches!(
            store
                .put(b, k, b"again".to_vec(), enc, Some("probe"))
                .await?,
            PutOutcome::Exists
        );
        let (id, _) = store.create_upload(b, k, enc).await?;
        let part = store
            .upload_part(b, k, &id, 1, ByteStream::from_static(b"again"), enc)
            .await;
        let complete = match part {
            Ok(etag) => {
                match store
                    .complete_upload(b, k, &id, &[(1, etag)], enc, true)
                    .await
                {
                    Ok(_) => false,
                    Err(Error::AlreadyExists { .. }) => true,
                    Err(e) => {
                        let _ = store.abort_upload(b, k, &id).await;
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                let _ = store.abort_upload(b, k, &id).await;
                return Err(e);
            }
        };
        if complete {
            store.abort_upload(b, k, &id).await?;
        }
        Ok(Conditional { put, complete })
    }
}

/// A checkpoint file being written: buffered until [`AtomicWriter::commit`] publishes it with
/// one request, or [`AtomicWriter::cancel`] (or drop) discards it.
pub struct AtomicWriter {
    fs: Arc<CheckpointFs>,
    path: S3Path,
    overwrite: bool,
    mem: Vec<u8>,
    /// The local file past the memory buffer; removed when dropped.
    spill: Option<NamedTempFile>,
    len: u64,
}

impl AtomicWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.len += data.len() as u64;
        if self.spill.is_none() && self.len > self.fs.cfg.memory_buffer {
            self.spill_to_disk()?;
        }
        match &mut self.spill {
            Some(file) => file
                .write_all(data)
                .map_err(|e| Error::io("write checkpoint spill file", file.path().display(), e)),
            None => {
                self.mem.extend_from_slice(data);
                Ok(())
            }
        }
    }

    fn spill_to_disk(&mut self) -> Result<()> {
        let dir = &self.fs.cfg.spill_dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                "create the spill directory (set sealcommit.staging.dir)",
                dir.display(),
                e,
            )
        })?;
        let mut file = spill_file(dir)?;
        file.write_all(&self.mem)
            .map_err(|e| Error::io("write checkpoint spill file", file.path().display(), e))?;
        self.mem = Vec::new();
        self.spill = Some(file);
        Ok(())
    }

    /// Publishes the file. With `overwrite` false an existing file is `AlreadyExists` and is
    /// left untouched. The writer is consumed either way; its spill file is removed.
    pub async fn commit(mut self) -> Result<()> {
        let threshold = self.fs.cfg.multipart_threshold;
        let cond = if self.overwrite {
            None
        } else {
            Some(self.fs.conditional().await?)
        };
        let multipart = self.len > threshold
            && match cond {
                None => true,
                Some(c) if c.complete => true,
                // Conditional Complete is ignored here: stay with one conditional PUT.
                Some(_) if self.len <= MAX_PUT_BYTES => false,
                Some(_) => {
                    return Err(Error::config(
                        "sealcommit.checkpoint.multipart-threshold",
                        format!(
                            "{} is {} bytes, more than one PUT can carry, and the store ignores \
                             If-None-Match on CompleteMultipartUpload, so it cannot be created \
                             without risking to replace another writer's file",
                            self.path, self.len
                        ),
                    ))
                }
            };
        if let Some(file) = &mut self.spill {
            file.flush()
                .map_err(|e| Error::io("write checkpoint spill file", file.path().display(), e))?;
        }
        if multipart {
            return self.commit_multipart().await;
        }
        let conditional_put = cond.is_some_and(|c| c.put);
        if cond.is_some() && !conditional_put {
            let store = &self.fs.target.store;
            if store
                .head(
                    &self.path.bucket,
                    &self.path.key,
                    &self.fs.target.settings.encryption,
                )
                .await?
                .is_some()
            {
                return Err(Error::AlreadyExists {
                    uri: self.path.to_string(),
                });
            }
        }
        let body = match &self.spill {
            None => ByteStream::from(std::mem::take(&mut self.mem)),
            Some(file) => ByteStream::from_path(file.path()).await.map_err(|e| {
                Error::io(
                    "read checkpoint spill file",
                    file.path().display(),
                    std::io::Error::other(e),
                )
            })?,
        };
        let target = &self.fs.target;
        let writer = unique();
        match target
            .put_verified_stream(&self.path, body, conditional_put.then_some(writer.as_str()))
            .await
        {
            // A PUT applied by the store whose response was lost is retried, and the retry
            // finds the file there: if this writer's id is on it, it is this write.
            Err(Error::AlreadyExists { .. }) if conditional_put => {
                let head = target
                    .store
                    .head(
                        &self.path.bucket,
                        &self.path.key,
                        &target.settings.encryption,
                    )
                    .await?;
                let Some(h) = head.filter(|h| h.writer.as_deref() == Some(writer.as_str())) else {
                    return Err(Error::AlreadyExists {
                        uri: self.path.to_string(),
                    });
                };
                log::info!(
                    "{} was created by this write already (a retried PUT whose first \
                     response was lost)",
                    self.path
                );
                // That HEAD's answer is the object's encryption: in `auto` mode it is checked
                // without another HEAD (`head` mode still asks once more).
                target
                    .verified_observation(&self.path, h.etag.is_some(), h.observed)
                    .await
                    .map(|_| ())
            }
            r => r.map(|_| ()),
        }
    }

    async fn commit_multipart(mut self) -> Result<()> {
        if self.spill.is_none() {
            self.spill_to_disk()?;
        }
        let Some(local) = self.spill.as_ref().map(|f| f.path().to_path_buf()) else {
            return Err(Error::document("checkpoint write", "spill file missing"));
        };
        let target = &self.fs.target;
        let started: Started = Arc::default();
        let permits = Arc::new(Semaphore::new(target.settings.commit.upload_parallelism));
        let upload = target
            .upload_file(
                local,
                self.path.clone(),
                permits,
                &started,
                std::future::pending(),
            )
            .await;
        let result = match &upload {
            Ok(u) => target.complete_one(u, !self.overwrite).await.map(|_| ()),
            Err(_) => Ok(()),
        };
        let failed = upload.is_err() || result.is_err();
        if failed {
            for (bucket, key, id) in started_uploads(&started) {
                if let Err(e) = target.store.abort_upload(&bucket, &key, &id).await {
                    log::warn!("could not abort upload {id} of s3a://{bucket}/{key}: {e}");
                }
            }
        }
        upload?;
        result
    }

    /// Discards the write: nothing was sent, so nothing is left on the store.
    pub fn cancel(self) {}
}

/// A new spill file in `dir`: created exclusively (`O_EXCL`, never an existing file or a
/// symlink planted there) with mode 0600 under a random name, and removed when dropped.
/// Checkpoint data is the query's state and may be as confidential as its output.
fn spill_file(dir: &std::path::Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix("sealcommit-checkpoint-")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io(
                "create a spill file (set sealcommit.staging.dir)",
                dir.display(),
                e,
            )
        })
}

/// A checkpoint file being read: one GET whose body streams; a seek elsewhere opens a ranged
/// GET pinned to the same version (`If-Match`).
pub struct Reader {
    fs: Arc<CheckpointFs>,
    path: S3Path,
    size: u64,
    etag: Option<String>,
    pos: u64,
    body: Option<ByteStream>,
    pending: Bytes,
}

/// How far a forward seek reads and drops bytes rather than opening a new GET.
const SKIP_LIMIT: u64 = 1 << 20;

impl Reader {
    pub fn size(&self) -> u64 {
        self.size
    }

    async fn reopen(&mut self, pos: u64) -> Result<()> {
        let Download { body, .. } = self
            .fs
            .target
            .store
            .open_read(
                &self.path.bucket,
                &self.path.key,
                &self.fs.target.settings.encryption,
                pos,
                self.etag.as_deref(),
            )
            .await?;
        self.body = Some(body);
        self.pending = Bytes::new();
        self.pos = pos;
        Ok(())
    }

    /// Reads into `buf` from `pos`; returns how many bytes were read, 0 at the end.
    pub async fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        if pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if pos < self.pos || pos > self.pos + SKIP_LIMIT {
            self.reopen(pos).await?;
        }
        let mut retried = false;
        loop {
            if self.pending.is_empty() {
                let next = match self.body.as_mut() {
                    Some(b) => b.next().await,
                    None => None,
                };
                match next {
                    Some(Ok(chunk)) => self.pending = chunk,
                    Some(Err(e)) if !retried => {
                        log::debug!("reading {} failed, resuming: {e}", self.path);
                        retried = true;
                        let at = self.pos;
                        self.reopen(at).await?;
                        continue;
                    }
                    Some(Err(e)) => {
                        return Err(Error::io("read", &self.path, std::io::Error::other(e)))
                    }
                    None => {
                        return Err(Error::io(
                            "read",
                            &self.path,
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("the object ended at byte {} of {}", self.pos, self.size),
                            ),
                        ))
                    }
                }
                continue;
            }
            if self.pos < pos {
                let skip = ((pos - self.pos) as usize).min(self.pending.len());
                let _ = self.pending.split_to(skip);
                self.pos += skip as u64;
                continue;
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending.split_to(n));
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_sizes_are_read_and_bounded() {
        let c: Conf = [
            ("sealcommit.checkpoint.memory-buffer", "1M"),
            ("sealcommit.checkpoint.multipart-threshold", "16M"),
        ]
        .into_iter()
        .collect();
        let cfg = CheckpointConfig::resolve(&c, "b").unwrap();
        assert_eq!(cfg.memory_buffer, 1 << 20);
        assert_eq!(cfg.multipart_threshold, 16 << 20);
        let c: Conf = [("sealcommit.checkpoint.multipart-threshold", "6G")]
            .into_iter()
            .collect();
        let e = CheckpointConfig::resolve(&c, "b").unwrap_err().to_string();
        assert!(
            e.contains("sealcommit.checkpoint.multipart-threshold"),
            "{e}"
        );
    }

    #[test]
    fn spill_files_are_new_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            spill_file(dir.path()).unwrap(),
            spill_file(dir.path()).unwrap(),
        );
        assert_ne!(a.path(), b.path());
        for f in [&a, &b] {
            assert_eq!(f.path().parent(), Some(dir.path()));
            let name = f.path().file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("sealcommit-checkpoint-"), "{name}");
            let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name} has mode {mode:o}");
        }
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        let e = spill_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sealcommit.staging.dir"), "{e}");
    }
}
