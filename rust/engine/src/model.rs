//! The documents sealcommit exchanges and stores: pendingsets (task → driver, inside Spark's
//! `TaskCommitMessage`), the job journal (on the store during job commit) and `_SUCCESS`.
//! All are JSON and carry no secrets (an SSE-C key appears only as its MD5).
//!
//! A job commit holds one record per file, so these stay small in memory: the encryption of
//! the uploads is one shared value, not a copy per file (`share_encryption`), the journal and
//! `_SUCCESS` borrow the commit's lists instead of copying them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::encryption::EncryptionSummary;
use crate::error::{Error, Result};

pub const PENDINGSET_VERSION: u32 = 1;
pub const JOURNAL_VERSION: u32 = 1;

/// One uploaded-but-not-completed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// `(part number, ETag)` in part order.
    pub parts: Vec<(i32, String)>,
    pub size: u64,
    pub encryption: Arc<EncryptionSummary>,
    /// The encryption the store reported when it created the upload, when that matched the
    /// request. A multipart object's encryption is fixed at creation, so job commit needs no
    /// HEAD to verify it when the Complete response is silent (as Ceph RGW's is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_with: Option<Arc<EncryptionSummary>>,
}

impl PendingUpload {
    pub fn uri(&self) -> String {
        format!("s3a://{}/{}", self.bucket, self.key)
    }
}

/// Makes equal encryption summaries of `uploads` one shared value (a job's uploads nearly
/// always have the same), so a commit of many files holds it once. `seen` carries the distinct
/// values across calls.
pub fn share_encryption(uploads: &mut [PendingUpload], seen: &mut Vec<Arc<EncryptionSummary>>) {
    fn share(e: &mut Arc<EncryptionSummary>, seen: &mut Vec<Arc<EncryptionSummary>>) {
        match seen.iter().find(|s| **s == *e) {
            Some(s) => *e = s.clone(),
            None => seen.push(e.clone()),
        }
    }
    for u in uploads {
        share(&mut u.encryption, seen);
        if let Some(c) = u.created_with.as_mut() {
            share(c, seen);
        }
    }
}

/// What one task attempt left pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSet {
    pub version: u32,
    pub job_id: String,
    pub task_attempt: String,
    pub uploads: Vec<PendingUpload>,
    /// Requests the task commit sent, by S3 operation.
    #[serde(default)]
    pub requests: BTreeMap<String, u64>,
    /// Magic mode: the most bytes one file's part buffers held at once in this task.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub buffer_peak: u64,
    /// How long the task's uploads took (ms), while it wrote: staging mode, from its first file
    /// closed to its last upload finished (MapReduce: the uploads inside task commit); magic
    /// mode, from its first file opened to its last upload finished. 0 in pendingsets of
    /// earlier releases.
    #[serde(default)]
    pub upload_ms: u64,
    /// How long the task commit took (ms), from its first wait for the uploads still running
    /// (before Spark's coordinator is asked) to the pendingset (MapReduce: the uploads
    /// included).
    #[serde(default)]
    pub commit_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PendingSet {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::serialize("pendingset", e))
    }

    pub fn from_json(s: &str) -> Result<PendingSet> {
        Self::from_slice(s.as_bytes())
    }

    /// A pendingset read back from the store.
    pub fn from_slice(b: &[u8]) -> Result<PendingSet> {
        let mut p: PendingSet =
            serde_json::from_slice(b).map_err(|e| Error::document("pendingset", e))?;
        share_encryption(&mut p.uploads, &mut Vec::new());
        // A driver holds every task's list until the commit gathers them: not what the parser's
        // growth left spare.
        p.uploads.shrink_to_fit();
        if p.version != PENDINGSET_VERSION {
            return Err(Error::document(
                "pendingset",
                format!(
                    "version {} is not supported (this sealcommit reads version {PENDINGSET_VERSION}); \
                     use the same sealcommit jar and library on the driver and the executors",
                    p.version
                ),
            ));
        }
        Ok(p)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalState {
    /// Written at job setup: the job runs; no upload is known yet.
    Started,
    /// Written before the first Complete: every upload of the job, and what it replaces.
    Committing,
    /// Written when every upload is complete and old objects are about to be replaced (only
    /// for jobs that replace something): from here the commit can only be rolled forward.
    Publishing,
}

impl Journal<'static> {
    /// A journal read back from the store.
    pub fn from_slice(b: &[u8]) -> Result<Journal<'static>> {
        let mut j: Journal =
            serde_json::from_slice(b).map_err(|e| Error::document("journal", e))?;
        share_encryption(j.uploads.to_mut(), &mut Vec::new());
        Ok(j)
    }
}

/// `<dest>/_sealcommit/<jobId>.journal`: lets a later run (or `sealcommit recover`) finish or
/// undo a commit whose driver died, and marks a job in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal<'a> {
    pub version: u32,
    pub job_id: String,
    pub destination: String,
    pub state: JournalState,
    pub created: String,
    pub encryption: EncryptionSummary,
    /// Borrowed from the commit when written; owned when read back.
    #[serde(default)]
    pub uploads: Cow<'a, [PendingUpload]>,
    /// Key prefixes whose old objects the commit replaces (static overwrite).
    #[serde(default)]
    pub replace_prefixes: Vec<String>,
    /// The driver that wrote the journal (absent in journals of earlier releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The lease the committing driver holds on this commit (from state `committing` on).
    /// A journal without one (earlier releases, state `started`) is treated as expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseTerms>,
}

/// Who wrote a journal: enough for an operator to find the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// Random per driver process: tells two drivers with the same host and pid apart.
    pub driver_id: String,
    /// When the driver opened the job (its own clock, RFC 3339).
    pub started: String,
}

/// The lease of a committing driver: it re-PUTs the small object `key` (next to the journal)
/// every `renew_ms`; the commit is live while the store's clock is before that object's
/// Last-Modified plus `lease_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTerms {
    pub key: String,
    pub lease_ms: u64,
    pub renew_ms: u64,
}

/// The body of a lease object: informational (the decision uses the store's Last-Modified of
/// the object, not these times, which are the driver's clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseBody {
    pub job_id: String,
    pub owner: Owner,
    pub renewed: String,
    pub lease_ms: u64,
}

/// One committed file as recorded in `_SUCCESS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommittedFile {
    pub key: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub encryption: Arc<EncryptionSummary>,
}

/// What the Complete of one upload established, without the upload's key (the commit holds
/// that once, in its list of uploads): becomes a [`CommittedFile`] with it.
#[derive(Debug, Clone)]
pub struct Completed {
    pub size: u64,
    pub etag: Option<String>,
    pub encryption: Arc<EncryptionSummary>,
}

impl Completed {
    pub fn file(self, key: String) -> CommittedFile {
        CommittedFile {
            key,
            size: self.size,
            etag: self.etag,
            encryption: self.encryption,
        }
    }
}

/// sealcommit's own section of `_SUCCESS`.
#[derive(Debug, Clone, Serialize)]
pub struct SealSection<'a> {
    pub version: String,
    /// The git revision the committing engine was built from.
    pub revision: String,
    pub destination: String,
    pub requested_encryption: EncryptionSummary,
    /// Whether every file's encryption was checked against the store.
    pub verified: bool,
    /// Every committed file (S3A's `filenames` lists at most [`SUCCESS_FILENAMES`]).
    pub files: &'a [CommittedFile],
    /// Requests sent by the job (setup, task commits and job commit, the `_SUCCESS` PUT
    /// included), by S3 operation.
    pub requests: BTreeMap<String, u64>,
    pub replaced_objects: u64,
    pub commit_millis: u64,
    /// Magic mode: the most bytes one file's part buffers held at once, over all tasks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub buffer_peak: u64,
}

/// `_SUCCESS`: the fields of Hadoop S3A's `SuccessData`, plus `sealcommit`. Written only.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessData<'a> {
    pub name: String,
    pub timestamp: u64,
    pub date: String,
    pub hostname: String,
    pub committer: String,
    pub description: String,
    pub job_id: String,
    pub job_id_source: String,
    pub metrics: BTreeMap<String, u64>,
    pub diagnostics: BTreeMap<String, String>,
    pub filenames: Vec<String>,
    pub iostatistics: IoStatistics,
    pub sealcommit: SealSection<'a>,
}

/// How many committed files `_SUCCESS` lists in `filenames`: the first 100, as S3A's committers
/// do (its `SUCCESS_MARKER_FILE_LIMIT`); the `sealcommit` section lists all of them.
pub const SUCCESS_FILENAMES: usize = 100;

/// Shaped like Hadoop's `IOStatisticsSnapshot` so S3A tooling can read it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IoStatistics {
    pub counters: BTreeMap<String, u64>,
    pub gauges: BTreeMap<String, u64>,
    pub minimums: BTreeMap<String, u64>,
    pub maximums: BTreeMap<String, u64>,
    pub meanstatistics: BTreeMap<String, serde_json::Value>,
}

/// S3A's name for the success-data schema, so tools that check it accept ours.
pub const SUCCESS_NAME: &str = "org.apache.hadoop.fs.s3a.commit.files.SuccessData/1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pendingset_of_an_earlier_release_has_no_task_times() {
        let p = PendingSet::from_json(
            r#"{"version":1,"job_id":"j","task_attempt":"a","uploads":[],"requests":{}}"#,
        )
        .unwrap();
        assert_eq!((p.upload_ms, p.commit_ms, p.buffer_peak), (0, 0, 0));
        let json = PendingSet {
            upload_ms: 7,
            commit_ms: 3,
            ..p
        }
        .to_json()
        .unwrap();
        assert!(json.contains(r#""upload_ms":7,"commit_ms":3"#), "{json}");
    }

    #[test]
    fn pending_uploads_without_created_with_still_read() {
        let mut u = upload();
        let old = serde_json::to_string(&u).unwrap();
        assert!(!old.contains("created_with"));
        assert_eq!(serde_json::from_str::<PendingUpload>(&old).unwrap(), u);
        u.created_with = Some(u.encryption.clone());
        let new = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<PendingUpload>(&new).unwrap(), u);
    }

    fn upload() -> PendingUpload {
        PendingUpload {
            bucket: "b".into(),
            key: "t/part-00000-j.parquet".into(),
            upload_id: "2~abc".into(),
            parts: vec![(1, "e1".into()), (2, "e2".into())],
            size: 70 << 20,
            encryption: EncryptionSummary {
                algorithm: "SSE-KMS".into(),
                kms_key_id: Some("k1".into()),
                sse_c_key_md5: None,
            }
            .into(),
            created_with: None,
        }
    }

    #[test]
    fn equal_encryptions_are_held_once() {
        let other = Arc::new(EncryptionSummary {
            algorithm: "SSE-S3".into(),
            kms_key_id: None,
            sse_c_key_md5: None,
        });
        let mut ups = vec![upload(), upload(), upload()];
        ups[1].created_with = Some(Arc::new((*ups[1].encryption).clone()));
        ups[2].encryption = other.clone();
        let json = serde_json::to_string(&ups).unwrap();
        let mut seen = Vec::new();
        share_encryption(&mut ups, &mut seen);
        assert_eq!(seen.len(), 2);
        assert!(Arc::ptr_eq(&ups[0].encryption, &ups[1].encryption));
        assert!(Arc::ptr_eq(
            &ups[0].encryption,
            ups[1].created_with.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(&ups[2].encryption, &seen[1]));
        // Sharing changes nothing that is written.
        assert_eq!(serde_json::to_string(&ups).unwrap(), json);
        // A pendingset read back shares within itself.
        let p = PendingSet {
            version: PENDINGSET_VERSION,
            job_id: "j".into(),
            task_attempt: "a".into(),
            uploads: vec![upload(), upload()],
            requests: BTreeMap::new(),
            buffer_peak: 0,
            upload_ms: 0,
            commit_ms: 0,
        };
        let back = PendingSet::from_json(&p.to_json().unwrap()).unwrap();
        assert!(Arc::ptr_eq(
            &back.uploads[0].encryption,
            &back.uploads[1].encryption
        ));
    }

    #[test]
    fn a_journal_borrows_what_it_writes_and_owns_what_it_reads() {
        let ups = vec![upload(), upload()];
        let j = Journal {
            version: JOURNAL_VERSION,
            job_id: "j".into(),
            destination: "s3a://b/t".into(),
            state: JournalState::Committing,
            created: "now".into(),
            encryption: (*ups[0].encryption).clone(),
            uploads: Cow::Borrowed(&ups),
            replace_prefixes: vec!["t/p=1/".into()],
            owner: None,
            lease: None,
        };
        let body = serde_json::to_vec(&j).unwrap();
        let back = Journal::from_slice(&body).unwrap();
        assert_eq!(back.uploads.as_ref(), ups.as_slice());
        assert_eq!(back.state, JournalState::Committing);
        assert!(Arc::ptr_eq(
            &back.uploads[0].encryption,
            &back.uploads[1].encryption
        ));
    }

    #[test]
    fn journals_without_owner_or_lease_still_read_and_new_ones_round_trip() {
        let old = r#"{"version":1,"job_id":"j","destination":"s3a://b/t","state":"committing",
            "created":"2026-11-24T00:00:00Z","encryption":{"algorithm":"none"},"uploads":[]}"#;
        let j = Journal::from_slice(old.as_bytes()).unwrap();
        assert!(j.owner.is_none() && j.lease.is_none());
        let mut j = j;
        j.owner = Some(Owner {
            host: "h".into(),
            pid: 7,
            driver_id: "d".into(),
            started: "2026-11-24T00:00:00Z".into(),
        });
        j.lease = Some(LeaseTerms {
            key: "t/_sealcommit/j.lease".into(),
            lease_ms: 60_000,
            renew_ms: 20_000,
        });
        let back = Journal::from_slice(&serde_json::to_vec(&j).unwrap()).unwrap();
        assert_eq!(back.owner, j.owner);
        assert_eq!(back.lease, j.lease);
    }

    #[test]
    fn pendingset_round_trips() {
        let p = PendingSet {
            version: PENDINGSET_VERSION,
            job_id: "j".into(),
            task_attempt: "attempt_1_0001_m_000000_0".into(),
            uploads: vec![upload()],
            requests: [("UploadPart".to_string(), 2)].into_iter().collect(),
            buffer_peak: 0,
            upload_ms: 0,
            commit_ms: 0,
        };
        let json = p.to_json().unwrap();
        assert_eq!(PendingSet::from_json(&json).unwrap(), p);
        assert!(json.contains("\"upload_id\":\"2~abc\""), "{json}");
    }

    #[test]
    fn pendingset_errors_are_clear() {
        let err = PendingSet::from_json("{").unwrap_err().to_string();
        assert!(err.starts_with("cannot read pendingset"), "{err}");
        let mut p = PendingSet {
            version: 99,
            job_id: "j".into(),
            task_attempt: "a".into(),
            uploads: vec![],
            requests: BTreeMap::new(),
            buffer_peak: 0,
            upload_ms: 0,
            commit_ms: 0,
        };
        let err = PendingSet::from_json(&p.to_json().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 99"), "{err}");
        p.version = PENDINGSET_VERSION;
        assert!(PendingSet::from_json(&p.to_json().unwrap()).is_ok());
    }

    #[test]
    fn sse_c_pendingset_holds_only_the_md5() {
        let mut u = upload();
        u.encryption = EncryptionSummary {
            algorithm: "SSE-C".into(),
            kms_key_id: None,
            sse_c_key_md5: Some("bWQ1".into()),
        }
        .into();
        let json = serde_json::to_string(&u).unwrap();
        assert!(!json.contains("kms_key_id"), "{json}");
        assert!(json.contains("sse_c_key_md5"));
    }
}
