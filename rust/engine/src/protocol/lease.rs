//! The committing driver's lease. From state `committing` on, the journal names its owner
//! (host, pid, a random driver id) and a lease: the small object
//! `<dest>/_sealcommit/<job id>.lease`, which the committing driver re-PUTs every third of
//! `sealcommit.journal.lease` until its commit ends. The commit is live while the store's clock
//! (the `Date` of the listing that found the journal) is before the lease object's Last-Modified
//! (also the store's clock) plus the lease: no local clock takes part in the decision. A journal
//! without a lease (earlier releases) or whose lease object is gone counts as expired.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;

use crate::error::{Error, Result};
use crate::model::{Journal, LeaseBody, LeaseTerms, Owner};
use crate::uri::S3Path;

use super::{Job, JOURNAL_DIR};

/// Where a journal's commit stands with its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The journal records no lease: an earlier release's journal, or state `started`.
    None,
    /// The journal records a lease but its object is gone: the driver gave it up (its commit
    /// failed and kept the journal) or someone removed it.
    Released,
    /// Not renewed in time (store clock, ms since the epoch): the driver is dead or cut off.
    Expired { at_ms: u64 },
    /// Renewed recently: the commit is running, until at least `until_ms` (store clock).
    Live { until_ms: u64 },
}

impl LeaseState {
    pub fn is_live(&self) -> bool {
        matches!(self, LeaseState::Live { .. })
    }

    pub(super) fn word(&self) -> &'static str {
        match self {
            LeaseState::None => "none",
            LeaseState::Released => "released",
            LeaseState::Expired { .. } => "expired",
            LeaseState::Live { .. } => "live",
        }
    }
}

/// The lease decision: `renewed_ms` is the lease object's Last-Modified (absent: no such
/// object), `now_ms` the store's clock when it was listed, both ms since the epoch. Live while
/// `now < renewed + lease`; at the boundary it has expired.
pub fn lease_state(terms: Option<&LeaseTerms>, renewed_ms: Option<u64>, now_ms: u64) -> LeaseState {
    let Some(terms) = terms else {
        return LeaseState::None;
    };
    let Some(renewed) = renewed_ms.filter(|&r| r > 0) else {
        return LeaseState::Released;
    };
    let until = renewed.saturating_add(terms.lease_ms);
    if now_ms < until {
        LeaseState::Live { until_ms: until }
    } else {
        LeaseState::Expired { at_ms: until }
    }
}

/// "now" for lease decisions: the store's clock if the listing carried a `Date`, else this
/// machine's (then skew between the two adds to or takes from the lease; logged).
pub fn decision_clock(store_date: Option<SystemTime>) -> (u64, &'static str) {
    match store_date {
        Some(t) => (epoch_ms(t), "the store's clock"),
        None => (epoch_ms(SystemTime::now()), "this machine's clock"),
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Who holds a journal's commit, for messages: job id, driver and lease expiry.
pub fn holder(journal: &Journal, lease: LeaseState, clock: &str) -> String {
    let driver = match &journal.owner {
        Some(o) => format!(
            "driver on host {} (pid {}, driver id {}, started {})",
            o.host, o.pid, o.driver_id, o.started
        ),
        None => "driver unknown".to_string(),
    };
    match lease {
        LeaseState::Live { until_ms } => format!(
            "job {} ({driver}; lease renewed, valid until {} by {clock})",
            journal.job_id,
            rfc3339_ms(until_ms)
        ),
        LeaseState::Expired { at_ms } => format!(
            "job {} ({driver}; lease expired at {} by {clock})",
            journal.job_id,
            rfc3339_ms(at_ms)
        ),
        _ => format!("job {} ({driver})", journal.job_id),
    }
}

/// This driver process: a random id (tells two drivers with the same host and pid apart).
fn driver_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(epoch_ms(SystemTime::now()) as u128);
        h.write_u32(std::process::id());
        format!("{:016x}", h.finish())
    })
}

/// A committing driver's hold on its commit: a task re-PUTs the lease object every third of
/// the lease until [`release`](LeaseGuard::release) (or drop) stops it.
pub(crate) struct LeaseGuard {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// When the last renewal that succeeded was sent, in ms after `base`.
    renewed: Arc<AtomicU64>,
    base: Instant,
    lease: Duration,
    path: S3Path,
}

impl LeaseGuard {
    /// Whether this driver still certainly holds its lease: a renewal sent less than three
    /// quarters of a lease ago succeeded (its Last-Modified is later than its sending, so
    /// others see the lease live for at least the rest of it).
    pub(crate) fn held(&self) -> bool {
        let last = Duration::from_millis(self.renewed.load(Ordering::SeqCst));
        self.base.elapsed().saturating_sub(last) < self.lease - self.lease / 4
    }

    /// The error of a commit that lost its lease: it must not go on, nor undo anything.
    pub(crate) fn lost(&self, job: &Job) -> Error {
        Error::config(
            "sealcommit.journal.lease",
            format!(
                "job {} on {} could not renew its lease ({}) for {:?}: another job's setup or \
                 `sealcommit recover` may be finishing this commit, so this driver stops here \
                 and keeps the journal {}; the next job on the destination (or `sealcommit \
                 recover {}`) finishes it. Raise sealcommit.journal.lease if the store or this \
                 driver stalls for that long",
                job.job_id,
                job.target.dest,
                self.path,
                humantime::format_duration(self.lease),
                job.journal_path(),
                job.target.dest
            ),
        )
    }

    /// Stops renewing (waiting for a renewal in flight) and deletes the lease object.
    pub(crate) async fn release(mut self, job: &Job) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Err(e) = job
            .target
            .store
            .delete(&self.path.bucket, &self.path.key)
            .await
        {
            log::warn!(
                "job {} could not delete its lease {} (it expires by itself): {e}",
                job.job_id,
                self.path
            );
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Never renew a lease for a commit nobody drives any more.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Job {
    /// `<dest>/_sealcommit/<job id>.lease`: the object a committing driver keeps renewing.
    pub(crate) fn lease_path(&self) -> S3Path {
        self.target
            .dest
            .child(&format!("{JOURNAL_DIR}/{}.lease", self.job_id))
    }

    /// This driver, as journals record it.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            host: super::documents::hostname(),
            pid: std::process::id(),
            driver_id: driver_id().to_string(),
            started: humantime::format_rfc3339_millis(self.opened).to_string(),
        }
    }

    /// Takes the lease on this job's commit: writes the lease object (verified like every
    /// object sealcommit writes) and starts renewing it every third of
    /// `sealcommit.journal.lease`. Renewals are single PUTs; one that fails is logged and tried
    /// again at the next period.
    pub(crate) async fn take_lease(&self) -> Result<(LeaseGuard, LeaseTerms)> {
        let lease = self.target.settings.commit.lease;
        let renew = lease / 3;
        let path = self.lease_path();
        let owner = self.owner();
        let job_id = self.job_id.clone();
        let lease_ms = lease.as_millis() as u64;
        let body = move || -> Result<Vec<u8>> {
            serde_json::to_vec(&LeaseBody {
                job_id: job_id.clone(),
                owner: owner.clone(),
                renewed: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                lease_ms,
            })
            .map_err(|e| Error::document("lease", e))
        };
        let base = Instant::now();
        self.target
            .put_verified_stream(&path, ByteStream::from(body()?), None)
            .await?;
        let renewed = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (store, enc, shown, job_id) = (
            self.target.store.clone(),
            self.target.enc().clone(),
            path.clone(),
            self.job_id.clone(),
        );
        let last = renewed.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(renew) => {}
                }
                let sent = base.elapsed();
                let result = match body() {
                    Ok(b) => store
                        .put(&shown.bucket, &shown.key, b, &enc, None)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => last.store(sent.as_millis() as u64, Ordering::SeqCst),
                    Err(e) => log::warn!(
                        "job {job_id} could not renew its lease {shown} (tried again \
                         in {}): {e}",
                        humantime::format_duration(renew)
                    ),
                }
            }
        });
        let terms = LeaseTerms {
            key: path.key.clone(),
            lease_ms,
            renew_ms: renew.as_millis() as u64,
        };
        Ok((
            LeaseGuard {
                stop: Some(stop),
                task: Some(task),
                renewed,
                base,
                lease,
                path,
            },
            terms,
        ))
    }

    /// Deletes the lease object a recovered journal names (best effort: it expires anyway).
    pub(super) async fn drop_lease_of(&self, journal: &Journal<'_>) {
        if let Some(t) = &journal.lease {
            if let Err(e) = self
                .target
                .store
                .delete(&self.target.dest.bucket, &t.key)
                .await
            {
                log::warn!(
                    "could not delete the lease s3a://{}/{} of job {}: {e}",
                    self.target.dest.bucket,
                    t.key,
                    journal.job_id
                );
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::encryption::EncryptionSummary;
    use crate::model::JournalState;
    use crate::model::JOURNAL_VERSION;

    pub(in crate::protocol) fn journal(encryption: EncryptionSummary) -> Journal<'static> {
        Journal {
            version: JOURNAL_VERSION,
            job_id: "j1".into(),
            destination: "s3a://b/t".into(),
            state: JournalState::Committing,
            created: "2026-11-24T00:00:00Z".into(),
            encryption,
            uploads: vec![].into(),
            replace_prefixes: vec![],
            owner: None,
            lease: None,
        }
    }

    pub(in crate::protocol) fn kms(key: &str) -> EncryptionSummary {
        EncryptionSummary {
            algorithm: "SSE-KMS".into(),
            kms_key_id: Some(key.into()),
            sse_c_key_md5: None,
        }
    }

    fn terms(lease_ms: u64) -> LeaseTerms {
        LeaseTerms {
            key: "t/_sealcommit/j1.lease".into(),
            lease_ms,
            renew_ms: lease_ms / 3,
        }
    }

    #[test]
    fn a_lease_is_live_until_its_last_renewal_plus_the_lease_by_the_stores_clock() {
        let t = terms(60_000);
        let renewed = 1_000_000;
        assert_eq!(
            lease_state(Some(&t), Some(renewed), renewed),
            LeaseState::Live {
                until_ms: 1_060_000
            }
        );
        assert!(lease_state(Some(&t), Some(renewed), 1_059_999).is_live());
        assert_eq!(
            lease_state(Some(&t), Some(renewed), 1_060_000),
            LeaseState::Expired { at_ms: 1_060_000 }
        );
        assert!(!lease_state(Some(&t), Some(renewed), 2_000_000).is_live());
        // A store clock behind the renewal's own Last-Modified (two store nodes): still live.
        assert!(lease_state(Some(&t), Some(renewed), renewed - 5_000).is_live());
    }

    #[test]
    fn journals_without_a_lease_or_its_object_are_not_live() {
        // An earlier release's journal: no lease recorded, treated as expired.
        assert_eq!(lease_state(None, Some(1), 0), LeaseState::None);
        assert!(!lease_state(None, None, 0).is_live());
        // The lease object is gone (released by a failed commit, or removed by hand).
        assert_eq!(
            lease_state(Some(&terms(60_000)), None, 0),
            LeaseState::Released
        );
        // A listing without Last-Modified cannot prove a renewal.
        assert_eq!(
            lease_state(Some(&terms(60_000)), Some(0), 0),
            LeaseState::Released
        );
    }

    #[test]
    fn the_decision_clock_is_the_stores_when_it_says() {
        let store = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            decision_clock(Some(store)),
            (1_000_000, "the store's clock")
        );
        let (local, which) = decision_clock(None);
        assert_eq!(which, "this machine's clock");
        assert!(local > 1_000_000);
    }

    #[test]
    fn the_holder_of_a_live_commit_is_named() {
        let mut j = journal(kms("k1"));
        j.owner = Some(Owner {
            host: "driver-7".into(),
            pid: 4242,
            driver_id: "abc".into(),
            started: "2026-11-29T18:00:00Z".into(),
        });
        let lease = LeaseState::Live {
            until_ms: 1_795_000_000_000,
        };
        let h = holder(&j, lease, "the store's clock");
        assert!(
            h.contains("job j1")
                && h.contains("host driver-7")
                && h.contains("pid 4242")
                && h.contains("valid until 2026-11-18T11:06:40Z")
                && h.contains("by the store's clock"),
            "{h}"
        );
        assert_eq!(
            holder(&journal(kms("k1")), LeaseState::None, "x"),
            "job j1 (driver unknown)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_guard_is_held_while_renewals_succeed_and_stops_on_drop() {
        let renewed = Arc::new(AtomicU64::new(0));
        let mut g = LeaseGuard {
            stop: None,
            task: None,
            renewed: renewed.clone(),
            base: Instant::now() - Duration::from_secs(50),
            lease: Duration::from_secs(60),
            path: S3Path::parse("s3a://b/t/_sealcommit/j.lease").unwrap(),
        };
        // The last renewal was sent at the start, 50 s ago: past three quarters of 60 s.
        assert!(!g.held());
        renewed.store(40_000, Ordering::SeqCst);
        assert!(g.held());
        g.task = Some(tokio::spawn(std::future::pending::<()>()));
        let task = g.task.as_ref().map(|t| t.abort_handle()).unwrap();
        drop(g);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(task.is_finished());
    }
}
