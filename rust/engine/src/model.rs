//! The documents sealcommit exchanges and stores: pendingsets (task → driver, inside Spark's
//! `TaskCommitMessage`), the job journal (on the store during job commit) and `_SUCCESS`.
//! All are JSON and carry no secrets (an SSE-C key appears only as its MD5).

use std::collections::BTreeMap;

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
    pub encryption: EncryptionSummary,
    /// The encryption the store reported when it created the upload, when that matched the
    /// request. A multipart object's encryption is fixed at creation, so job commit needs no
    /// HEAD to verify it when the Complete response is silent (as Ceph RGW's is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_with: Option<EncryptionSummary>,
}

impl PendingUpload {
    pub fn uri(&self) -> String {
        format!("s3a://{}/{}", self.bucket, self.key)
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
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PendingSet {
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<PendingSet> {
        Self::from_slice(s.as_bytes())
    }

    /// A pendingset read back from the store.
    pub fn from_slice(b: &[u8]) -> Result<PendingSet> {
        let p: PendingSet =
            serde_json::from_slice(b).map_err(|e| Error::document("pendingset", e))?;
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

impl Journal {
    /// A journal read back from the store.
    pub fn from_slice(b: &[u8]) -> Result<Journal> {
        serde_json::from_slice(b).map_err(|e| Error::document("journal", e))
    }
}

/// `<dest>/_sealcommit/<jobId>.journal`: lets a later run (or `sealcommit recover`) finish or
/// undo a commit whose driver died, and marks a job in flight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub job_id: String,
    pub destination: String,
    pub state: JournalState,
    pub created: String,
    pub encryption: EncryptionSummary,
    #[serde(default)]
    pub uploads: Vec<PendingUpload>,
    /// Key prefixes whose old objects the commit replaces (static overwrite).
    #[serde(default)]
    pub replace_prefixes: Vec<String>,
}

/// One committed file as recorded in `_SUCCESS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommittedFile {
    pub key: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub encryption: EncryptionSummary,
}

/// sealcommit's own section of `_SUCCESS`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealSection {
    pub version: String,
    pub destination: String,
    pub requested_encryption: EncryptionSummary,
    /// Whether every file's encryption was checked against the store.
    pub verified: bool,
    pub files: Vec<CommittedFile>,
    /// Requests sent by the job (setup, task commits and job commit, the `_SUCCESS` PUT
    /// included), by S3 operation.
    pub requests: BTreeMap<String, u64>,
    pub replaced_objects: u64,
    pub commit_millis: u64,
    /// Magic mode: the most bytes one file's part buffers held at once, over all tasks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub buffer_peak: u64,
}

/// `_SUCCESS`: the fields of Hadoop S3A's `SuccessData`, plus `sealcommit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessData {
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
    pub sealcommit: SealSection,
}

/// Shaped like Hadoop's `IOStatisticsSnapshot` so S3A tooling can read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
            },
            created_with: None,
        }
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
        };
        let json = p.to_json();
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
        };
        let err = PendingSet::from_json(&p.to_json()).unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
        p.version = PENDINGSET_VERSION;
        assert!(PendingSet::from_json(&p.to_json()).is_ok());
    }

    #[test]
    fn sse_c_pendingset_holds_only_the_md5() {
        let mut u = upload();
        u.encryption = EncryptionSummary {
            algorithm: "SSE-C".into(),
            kms_key_id: None,
            sse_c_key_md5: Some("bWQ1".into()),
        };
        let json = serde_json::to_string(&u).unwrap();
        assert!(!json.contains("kms_key_id"), "{json}");
        assert!(json.contains("sse_c_key_md5"));
    }
}
