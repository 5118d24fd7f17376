//! The documents job commit writes: the journal and `_SUCCESS`, serialized into a local
//! temporary file that the PUT streams from (never built in memory where a file can be made).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;

use crate::config::{Mode, VerifyMode};
use crate::encryption::Observed;
use crate::error::{Error, Result};
use crate::model::*;
use crate::uri::S3Path;

use super::Job;

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
    pub(super) fn journal<'a>(
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
    pub(super) async fn put_document(
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

    pub(super) fn success_data<'a>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
