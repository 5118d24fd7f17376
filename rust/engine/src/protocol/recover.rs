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
//!
//! A commit that is still running is never touched: see `lease`.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::{Conf, Sourced};
use crate::encryption::{Algorithm, EncryptionSpec, EncryptionSummary};
use crate::error::{Error, Result};
use crate::model::{Journal, JournalState};
use crate::uri::S3Path;

use super::abort::MaybeCompleted;
use super::job_commit::committed_files;
use super::lease::{decision_clock, holder, lease_state, LeaseState};
use super::{Job, JOURNAL_DIR};

/// What recovery found and did for one journal.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub job_id: String,
    pub journal: String,
    pub state: JournalState,
    /// `completed`, `rolled back`, `left` (a job that may still be running: state `started`)
    /// or `live` (a commit whose driver holds its lease: left alone).
    pub action: &'static str,
    pub files: usize,
    /// `none` (no lease recorded), `released`, `expired` or `live`.
    pub lease: &'static str,
    /// Job, driver and lease, in words.
    pub holder: String,
}

/// One journal found on the destination.
pub(crate) struct Found {
    path: S3Path,
    journal: Journal<'static>,
    lease: LeaseState,
}

impl Job {
    /// The journals under the destination other than this job's own, oldest first, each with
    /// its lease as of the listing; and the clock that decided the leases.
    async fn journals(&self) -> Result<(Vec<Found>, &'static str)> {
        let dir = self.target.dest.child(JOURNAL_DIR).dir_prefix();
        let (listing, date) = self
            .target
            .store
            .list_dir_dated(&self.target.dest.bucket, &dir)
            .await?;
        let (now_ms, clock) = decision_clock(date);
        if date.is_none() {
            log::info!(
                "the store sent no Date with its listing of {dir}; leases are judged \
                 by this machine's clock"
            );
        }
        let leases: HashMap<&str, u64> = listing
            .objects
            .iter()
            .filter(|o| o.key.ends_with(".lease"))
            .map(|o| (o.key.as_str(), o.modified_ms))
            .collect();
        let mut found = Vec::new();
        for o in &listing.objects {
            let Some(name) = o.key.strip_prefix(&dir) else {
                continue;
            };
            if !name.ends_with(".journal") || name == format!("{}.journal", self.job_id) {
                continue;
            }
            let path = S3Path {
                bucket: self.target.dest.bucket.clone(),
                key: o.key.clone(),
            };
            let body = self
                .target
                .store
                .get(&path.bucket, &path.key, self.target.enc())
                .await?;
            let journal = Journal::from_slice(&body)?;
            let terms = journal.lease.as_ref();
            let renewed = terms.and_then(|t| leases.get(t.key.as_str()).copied());
            let lease = lease_state(terms, renewed, now_ms);
            found.push(Found {
                path,
                journal,
                lease,
            });
        }
        found.sort_by(|a, b| a.journal.created.cmp(&b.journal.created));
        Ok((found, clock))
    }

    /// The job a journal belongs to, on this destination, with the encryption it was written
    /// with (a later job may use another key; the objects must match the journal's).
    fn job_of(&self, journal: &Journal) -> Result<Job> {
        let mut settings = self.target.settings.clone();
        settings.encryption = journal_encryption(self.target.enc(), journal)?;
        Ok(self.with_identity(journal.job_id.clone(), settings))
    }

    /// Job setup's part: roll forward every interrupted commit on this destination. A journal
    /// in state `started` is left alone: its job may be running right now.
    ///
    /// A commit whose driver holds its lease is running: it is left alone (logged, naming the
    /// job that holds it) and this job proceeds without waiting; should that driver die, the
    /// next job after the lease expires (or `sealcommit recover`) finishes its commit.
    pub(crate) async fn finish_interrupted_commits(&self) -> Result<()> {
        let (found, clock) = self.journals().await?;
        for Found {
            path,
            journal,
            lease,
        } in found
        {
            if journal.state == JournalState::Started {
                continue;
            }
            if lease.is_live() {
                log::warn!(
                    "the commit of {} on {} is running ({path}); left alone, job {} \
                     proceeds. If that driver dies, the first job after its lease \
                     (sealcommit.journal.lease) expires, or `sealcommit recover {}`, finishes it",
                    holder(&journal, lease, clock),
                    self.target.dest,
                    self.job_id,
                    self.target.dest
                );
                continue;
            }
            log::warn!(
                "the commit of job {} on {} was interrupted ({:?}); finishing it before \
                 job {} starts",
                journal.job_id,
                self.target.dest,
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
                        journal.job_id, self.target.dest, self.target.dest
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
        let done = self
            .complete_all(
                &journal.uploads,
                &MaybeCompleted::new(journal.uploads.len()),
            )
            .await?;
        let files = committed_files(journal.uploads.iter().map(|u| u.key.clone()), done);
        let n = files.len();
        self.publish(files, &journal.replace_prefixes, t0, 0)
            .await?;
        let j = self.journal_path();
        self.target.store.delete(&j.bucket, &j.key).await?;
        self.drop_lease_of(journal).await;
        log::info!(
            "rolled job {} on {} forward: {n} files",
            self.job_id,
            self.target.dest
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
        self.target.abort_uploads(&journal.uploads).await?;
        let keys: Vec<String> = journal.uploads.iter().map(|u| u.key.clone()).collect();
        self.target
            .store
            .delete_many(&self.target.dest.bucket, &keys)
            .await?;
        // Uploads of failed attempts that never reached the journal.
        self.target
            .abort_uploads_where(|key, _| crate::naming::is_job_output(key, &self.job_id))
            .await?;
        let j = self.journal_path();
        self.target.store.delete(&j.bucket, &j.key).await?;
        self.drop_lease_of(journal).await;
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
/// A commit whose driver holds its lease is left alone (action `live`) unless `force`.
pub async fn recover(conf: &Conf, uri: &str, abort: bool, force: bool) -> Result<Vec<Recovered>> {
    let me = Job::open(conf, uri, "sealcommit-recover").await?;
    let mut out = Vec::new();
    let (found, clock) = me.journals().await?;
    for Found {
        path,
        journal,
        lease,
    } in found
    {
        let job = me.job_of(&journal)?;
        let live = lease.is_live() && journal.state != JournalState::Started;
        if live && force {
            log::warn!(
                "--force: acting on the live commit of {}",
                holder(&journal, lease, clock)
            );
        }
        let (action, files) = match (journal.state, abort) {
            _ if live && !force => ("live", 0),
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
            lease: lease.word(),
            holder: holder(&journal, lease, clock),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::lease::tests::{journal, kms};
    use super::*;

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
