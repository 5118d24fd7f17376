//! Finishing (or undoing) job commits whose driver died.
//!
//! A job commit writes `<dest>/_sealcommit/<job id>.journal` in state `committing`, listing every
//! upload and the prefixes it replaces, before its first Complete, and deletes it last. A
//! journal left behind therefore says exactly what is left to do:
//! * `committing` — some uploads may be complete and visible, others still pending: rolling
//!   forward completes the rest (a Complete that already happened answers `NoSuchUpload`, and
//!   the object is then checked by size), replaces what the job replaces, writes `_SUCCESS`;
//!   rolling back aborts the pending uploads and deletes the completed ones;
//! * `publishing` — every upload is complete and old objects are being replaced: only rolling
//!   forward is possible (undoing would lose the replaced data);
//! * `started` — the job is running, or died before its commit: nothing of it is visible.
//!
//! Every job's setup rolls forward the interrupted commits it finds on its destination
//! (`Job::setup`); `sealcommit recover` does the same on demand, or rolls back with `--abort`.

use serde::Serialize;

use crate::commit::{Job, JOURNAL_DIR};
use crate::config::{Conf, Sourced};
use crate::encryption::{Algorithm, EncryptionSpec, EncryptionSummary};
use crate::error::{Error, Result};
use crate::model::{Journal, JournalState};
use crate::uri::S3Path;

/// What recovery found and did for one journal.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub job_id: String,
    pub journal: String,
    pub state: JournalState,
    /// `completed`, `rolled back`, or `left` (a job that may still be running).
    pub action: &'static str,
    pub files: usize,
}

impl Job {
    /// The journals under the destination other than this job's own, oldest first.
    async fn journals(&self) -> Result<Vec<(S3Path, Journal<'static>)>> {
        let dir = self.dest.child(JOURNAL_DIR).dir_prefix();
        let mut found = Vec::new();
        for o in self
            .store
            .list_dir(&self.dest.bucket, &dir, None)
            .await?
            .objects
        {
            let Some(name) = o.key.strip_prefix(&dir) else {
                continue;
            };
            if !name.ends_with(".journal") || name == format!("{}.journal", self.job_id) {
                continue;
            }
            let path = S3Path {
                bucket: self.dest.bucket.clone(),
                key: o.key.clone(),
            };
            let body = self.store.get(&path.bucket, &path.key, self.enc()).await?;
            let journal = Journal::from_slice(&body)?;
            found.push((path, journal));
        }
        found.sort_by(|a, b| a.1.created.cmp(&b.1.created));
        Ok(found)
    }

    /// The job a journal belongs to, on this destination, with the encryption it was written
    /// with (a later job may use another key; the objects must match the journal's).
    fn job_of(&self, journal: &Journal) -> Result<Job> {
        let mut settings = self.settings.clone();
        settings.encryption = journal_encryption(self.enc(), journal)?;
        Ok(self.with_identity(journal.job_id.clone(), settings))
    }

    /// Job setup's part: roll forward every interrupted commit on this destination. A journal
    /// in state `started` is left alone: its job may be running right now.
    pub(crate) async fn finish_interrupted_commits(&self) -> Result<()> {
        for (path, journal) in self.journals().await? {
            if journal.state == JournalState::Started {
                continue;
            }
            log::warn!(
                "sealcommit: the commit of job {} on {} was interrupted ({:?}); finishing it before \
                 job {} starts",
                journal.job_id,
                self.dest,
                journal.state,
                self.job_id
            );
            let other = self.job_of(&journal)?;
            other.roll_forward(&journal).await.map_err(|e| {
                Error::config(
                    "journal",
                    format!(
                        "the commit of job {} on {} was interrupted and cannot be finished: {e}. \
                         Nothing can be written there until it is resolved: run `sealcommit \
                         recover {} --abort` to undo it (or remove {path})",
                        journal.job_id, self.dest, self.dest
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Finishes a commit from its journal: complete what is pending, verify every object,
    /// replace what the job replaces, write `_SUCCESS`, delete the journal.
    async fn roll_forward(&self, journal: &Journal<'_>) -> Result<usize> {
        let t0 = std::time::Instant::now();
        let files = self.complete_all(&journal.uploads).await?;
        let n = files.len();
        self.publish(files, &journal.replace_prefixes, t0, 0)
            .await?;
        let j = self.journal_path();
        self.store.delete(&j.bucket, &j.key).await?;
        log::info!(
            "sealcommit: rolled job {} on {} forward: {n} files",
            self.job_id,
            self.dest
        );
        Ok(n)
    }

    /// Undoes a commit from its journal: aborts what is pending, deletes what was completed.
    async fn roll_back_journal(&self, journal: &Journal<'_>) -> Result<usize> {
        if journal.state == JournalState::Publishing {
            return Err(Error::config(
                "--abort",
                format!(
                    "job {} had completed every upload and was replacing old objects; undoing it \
                     would lose data. Roll it forward instead (sealcommit recover without --abort)",
                    self.job_id
                ),
            ));
        }
        self.abort_uploads(&journal.uploads).await?;
        let keys: Vec<String> = journal.uploads.iter().map(|u| u.key.clone()).collect();
        self.store.delete_many(&self.dest.bucket, &keys).await?;
        // Uploads of failed attempts that never reached the journal.
        self.abort_uploads_where(|key| key.contains(&self.job_id))
            .await?;
        let j = self.journal_path();
        self.store.delete(&j.bucket, &j.key).await?;
        Ok(keys.len())
    }
}

/// The encryption to finish a journal's commit with: the journal's own (its KMS key may differ
/// from today's settings). An SSE-C commit needs its customer key in the settings.
fn journal_encryption(current: &EncryptionSpec, journal: &Journal) -> Result<EncryptionSpec> {
    let wanted: &EncryptionSummary = &journal.encryption;
    if current.summary() == *wanted {
        return Ok(current.clone());
    }
    let algorithm =
        Algorithm::parse(&wanted.algorithm).map_err(|m| Error::document("journal", m))?;
    if algorithm == Algorithm::SseC {
        return Err(Error::config(
            "fs.s3a.encryption.key",
            format!(
                "job {} wrote SSE-C objects with a customer key (MD5 {}) these settings do not \
                 have; set fs.s3a.encryption.algorithm=SSE-C and fs.s3a.encryption.key to that key",
                journal.job_id,
                wanted.sse_c_key_md5.as_deref().unwrap_or("?")
            ),
        ));
    }
    let key = wanted.kms_key_id.clone().map(|value| Sourced {
        value,
        key: format!("the journal of job {}", journal.job_id),
    });
    EncryptionSpec::new(algorithm, Some("the journal".into()), key, None)
}

/// `sealcommit recover <uri>`: finishes (or with `abort`, undoes) every interrupted commit on
/// the destination. Journals of jobs that had not started committing are reported and left,
/// unless `abort`: then their uploads are aborted too (run it only when no job is writing).
pub async fn recover(conf: &Conf, uri: &str, abort: bool) -> Result<Vec<Recovered>> {
    let me = Job::open(conf, uri, "sealcommit-recover").await?;
    let mut out = Vec::new();
    for (path, journal) in me.journals().await? {
        let job = me.job_of(&journal)?;
        let (action, files) = match (journal.state, abort) {
            (JournalState::Started, false) => ("left", 0),
            (_, true) => ("rolled back", job.roll_back_journal(&journal).await?),
            (_, false) => ("completed", job.roll_forward(&journal).await?),
        };
        out.push(Recovered {
            job_id: journal.job_id.clone(),
            journal: path.to_string(),
            state: journal.state,
            action,
            files,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JOURNAL_VERSION;

    fn journal(encryption: EncryptionSummary) -> Journal<'static> {
        Journal {
            version: JOURNAL_VERSION,
            job_id: "j1".into(),
            destination: "s3a://b/t".into(),
            state: JournalState::Committing,
            created: "2026-11-24T00:00:00Z".into(),
            encryption,
            uploads: vec![].into(),
            replace_prefixes: vec![],
        }
    }

    fn kms(key: &str) -> EncryptionSummary {
        EncryptionSummary {
            algorithm: "SSE-KMS".into(),
            kms_key_id: Some(key.into()),
            sse_c_key_md5: None,
        }
    }

    #[test]
    fn a_journal_is_finished_with_its_own_kms_key() {
        let today = Conf::from_iter([
            ("fs.s3a.encryption.algorithm", "SSE-KMS"),
            ("fs.s3a.encryption.key", "k2"),
        ])
        .encryption("b")
        .unwrap();
        let spec = journal_encryption(&today, &journal(kms("k1"))).unwrap();
        assert_eq!(spec.summary(), kms("k1"));
        let none = Conf::default().encryption("b").unwrap();
        assert_eq!(
            journal_encryption(&none, &journal(kms("k1")))
                .unwrap()
                .summary(),
            kms("k1")
        );
    }

    #[test]
    fn an_sse_c_journal_needs_its_customer_key() {
        let sse_c = EncryptionSummary {
            algorithm: "SSE-C".into(),
            kms_key_id: None,
            sse_c_key_md5: Some("bWQ1".into()),
        };
        let err = journal_encryption(&Conf::default().encryption("b").unwrap(), &journal(sse_c))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fs.s3a.encryption.key") && err.contains("bWQ1"),
            "{err}"
        );
    }
}
