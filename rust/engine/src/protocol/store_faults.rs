//! Fault scenarios through the protocol code over the in-memory store (`store::memory`): jobs
//! opened, set up, task-committed and job-committed exactly as the JNI layer does it
//! (`Job::open` → `setup` → `commit_task` on an executor's own `Job` → `commit_job`), and
//! checkpoint files written as `CheckpointFs::open` → `create` → `commit`. The store completes,
//! loses, refuses and misreports on a script; each test asserts what a user relies on: which
//! objects are visible, the exact keys, the requests sent, the error's text and fields.
//!
//! The fake answers each call as `aws-sdk-s3` does (see `store::memory`): a scripted fault is
//! one HTTP attempt, retried up to `sealcommit.retry.max-attempts` when the SDK would retry it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::CheckpointFs;
use crate::config::Conf;
use crate::config::StoreConfig;
use crate::encryption::EncryptionSpec;
use crate::encryption::Observed;
use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::model::PendingSet;
use crate::protocol::Job;
use crate::store::memory::{Applied, Fault, MemoryStore, Reports, Rule};
use crate::store::*;
use aws_sdk_s3::primitives::ByteStream;
use std::collections::BTreeMap;

const BUCKET: &str = "b";
const DEST: &str = "s3a://b/dest";

/// A memory store named after the test, and the configuration that reaches it: SSE-KMS with
/// key `k1`, as the CI's Ceph RGW runs.
struct Bed {
    mem: Arc<MemoryStore>,
    pairs: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

fn bed(name: &str, extra: &[(&str, &str)]) -> Bed {
    let mem = MemoryStore::register(name, &[BUCKET]);
    let mut pairs: Vec<(String, String)> = [
        ("fs.s3a.endpoint", mem.endpoint().as_str()),
        ("fs.s3a.access.key", "AKIDEXAMPLE"),
        ("fs.s3a.secret.key", "secret"),
        ("fs.s3a.encryption.algorithm", "SSE-KMS"),
        ("fs.s3a.encryption.key", "k1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Bed {
        mem,
        pairs,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Bed {
    fn conf(&self) -> Conf {
        self.pairs.iter().cloned().collect()
    }

    async fn job(&self, job_id: &str) -> Job {
        Job::open(&self.conf(), DEST, job_id).await.unwrap()
    }

    /// The key of output file `n` of `job` under `dir` (relative to the destination).
    fn key(&self, job: &str, dir: &str, n: u32) -> String {
        format!(
            "dest/{dir}{}",
            crate::naming::output_name("", n, job, ".c000.json")
        )
    }

    /// One task per file, on an executor's own `Job`: local files of `size` bytes, committed.
    async fn tasks(&self, job_id: &str, dir: &str, files: u32, size: usize) -> Vec<PendingSet> {
        let mut sets = Vec::new();
        for n in 0..files {
            let executor = self.job(job_id).await;
            let local: PathBuf = self.dir.path().join(format!("{job_id}-{n}"));
            std::fs::write(&local, vec![b'a' + (n % 26) as u8; size]).unwrap();
            let uri = format!("s3a://{BUCKET}/{}", self.key(job_id, dir, n));
            let set = executor
                .commit_task(&format!("attempt_{n}"), 0, vec![(local, uri)])
                .await
                .unwrap();
            sets.push(set);
        }
        sets
    }

    fn keys(&self) -> Vec<String> {
        self.mem.keys(BUCKET)
    }

    /// Keys of the journal directory (journals, leases).
    fn journal_keys(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|k| k.starts_with("dest/_sealcommit/"))
            .collect()
    }

    fn body(&self, key: &str) -> Option<Vec<u8>> {
        self.mem.object(BUCKET, key).map(|o| o.body.to_vec())
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    crate::runtime::block_on(f).unwrap()
}

fn requests(r: &crate::protocol::CommitReport, op: &str) -> u64 {
    r.requests.get(op).copied().unwrap_or(0)
}

fn store_fields(e: &Error) -> (&'static str, &str, Option<u16>, Option<&str>, bool) {
    match e {
        Error::Store {
            op,
            uri,
            status,
            code,
            retryable,
            ..
        } => (op, uri.as_str(), *status, code.as_deref(), *retryable),
        other => panic!("not a store error: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The fake itself.

fn store_of(b: &Bed) -> Store {
    let cfg = StoreConfig::resolve(&b.conf(), BUCKET).unwrap();
    run(Store::connect(&cfg)).unwrap()
}

#[test]
fn memory_conditional_put_creates_once_and_keeps_the_first_writer() {
    let b = bed("mem-conditional-put", &[]);
    let s = store_of(&b);
    let enc = EncryptionSpec::none();
    run(async {
        let first = s.put(BUCKET, "k", b"one".to_vec(), &enc, Some("w1")).await;
        assert!(matches!(
            first,
            Ok(PutOutcome::Written { etag: Some(_), .. })
        ));
        let second = s.put(BUCKET, "k", b"two".to_vec(), &enc, Some("w2")).await;
        assert!(matches!(second, Ok(PutOutcome::Exists)), "{second:?}");
        let h = s.head(BUCKET, "k", &enc).await.unwrap().unwrap();
        assert_eq!((h.size, h.writer.as_deref()), (3, Some("w1")));
        // A plain PUT replaces, and carries no writer.
        s.put(BUCKET, "k", b"three!".to_vec(), &enc, None)
            .await
            .unwrap();
        let h = s.head(BUCKET, "k", &enc).await.unwrap().unwrap();
        assert_eq!((h.size, h.writer), (6, None));
        assert!(s.head(BUCKET, "nope", &enc).await.unwrap().is_none());
        let e = s.get(BUCKET, "nope", &enc).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    });
    assert_eq!(b.body("k").unwrap(), b"three!");
}

#[test]
fn memory_multipart_lifecycle() {
    let b = bed("mem-multipart", &[]);
    let s = store_of(&b);
    let enc = EncryptionSpec::none();
    run(async {
        let (id, _) = s.create_upload(BUCKET, "d/k", &enc).await.unwrap();
        assert!(s.is_pending(BUCKET, "d/k", &id).await.unwrap());
        assert!(
            s.head(BUCKET, "d/k", &enc).await.unwrap().is_none(),
            "invisible"
        );
        let listed = s.list_uploads_under(BUCKET, "d/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].key.as_str(), listed[0].upload_id.as_str()),
            ("d/k", id.as_str())
        );
        let p1 = s
            .upload_part(BUCKET, "d/k", &id, 1, ByteStream::from_static(b"ab"), &enc)
            .await
            .unwrap();
        let p2 = s
            .upload_part(BUCKET, "d/k", &id, 2, ByteStream::from_static(b"cd"), &enc)
            .await
            .unwrap();
        // A wrong part ETag is refused and leaves the upload pending.
        let bad = [(1, p1.clone()), (2, "nope".to_string())];
        let e = s
            .complete_upload(BUCKET, "d/k", &id, &bad, &enc, false)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidPart"));
        let parts = [(1, p1), (2, p2)];
        let (etag, _) = s
            .complete_upload(BUCKET, "d/k", &id, &parts, &enc, false)
            .await
            .unwrap();
        assert!(etag.unwrap().ends_with("-2"));
        assert!(!s.is_pending(BUCKET, "d/k", &id).await.unwrap());
        // Completed once: a second Complete finds no upload; an abort of it counts as done.
        let e = s
            .complete_upload(BUCKET, "d/k", &id, &parts, &enc, false)
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.is_retryable()), (Some("NoSuchUpload"), false));
        s.abort_upload(BUCKET, "d/k", &id).await.unwrap();
        // Conditional Complete over an existing object: 412, AlreadyExists.
        let (id2, _) = s.create_upload(BUCKET, "d/k", &enc).await.unwrap();
        let p = s
            .upload_part(BUCKET, "d/k", &id2, 1, ByteStream::from_static(b"x"), &enc)
            .await
            .unwrap();
        let e = s
            .complete_upload(BUCKET, "d/k", &id2, &[(1, p)], &enc, true)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        s.abort_upload(BUCKET, "d/k", &id2).await.unwrap();
    });
    assert_eq!(b.body("d/k").unwrap(), b"abcd");
    assert!(b.mem.pending().is_empty());
}

#[test]
fn memory_listing_pages_through_objects_directories_and_uploads() {
    let b = bed("mem-listing", &[]);
    b.mem.set_page_size(2);
    let enc = EncryptionSpec::none();
    for k in ["r/a", "r/b", "r/d1/x", "r/d1/y", "r/d2/z", "r/e", "s/other"] {
        b.mem.insert(BUCKET, k, b"12345", &enc);
    }
    let s = store_of(&b);
    run(async {
        let all: Vec<String> = s
            .list(BUCKET, "r/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(all, ["r/a", "r/b", "r/d1/x", "r/d1/y", "r/d2/z", "r/e"]);
        assert_eq!(s.counters.snapshot()["ListObjectsV2"], 3, "3 pages of 2");
        let dir = s.list_dir(BUCKET, "r/", None).await.unwrap();
        let objects: Vec<&str> = dir.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objects, ["r/a", "r/b", "r/e"]);
        assert_eq!(dir.dirs, ["r/d1/", "r/d2/"]);
        assert_eq!(dir.objects[0].size, 5);
        let one = s.list_dir(BUCKET, "r/", Some(1)).await.unwrap();
        assert_eq!(one.objects.len() + one.dirs.len(), 1);
        let (_, date) = s.list_dir_dated(BUCKET, "r/").await.unwrap();
        assert_eq!(
            date,
            Some(b.mem.now()),
            "the store's clock, from the listing"
        );
        for k in ["r/u1", "r/u2", "r/u3"] {
            s.create_upload(BUCKET, k, &enc).await.unwrap();
        }
        s.create_upload(BUCKET, "s/u", &enc).await.unwrap();
        let ups = s.list_uploads(BUCKET, "r/").await.unwrap();
        let keys: Vec<&str> = ups.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["r/u1", "r/u2", "r/u3"]);
    });
}

#[test]
fn memory_faults_are_attempts_retried_as_the_sdk_retries_them() {
    let b = bed("mem-retries", &[("sealcommit.retry.max-attempts", "3")]);
    let s = store_of(&b);
    let enc = EncryptionSpec::none();
    b.mem.insert(BUCKET, "k", b"x", &enc);
    // Two 503s: the third attempt answers; the engine counts one request.
    b.mem
        .script(Rule::on("HeadObject", Fault::slow_down()).key("k").times(2));
    run(async { s.head(BUCKET, "k", &enc).await.unwrap().unwrap() });
    assert_eq!(b.mem.attempts_of("HeadObject"), 3);
    assert_eq!(s.counters.snapshot()["HeadObject"], 1);
    // Three: the SDK gives up and the engine sees the last answer.
    b.mem
        .script(Rule::on("HeadObject", Fault::slow_down()).times(3));
    let e = run(async { s.head(BUCKET, "k", &enc).await.unwrap_err() });
    assert_eq!(
        store_fields(&e),
        ("HeadObject", "s3a://b/k", Some(503), Some("SlowDown"), true)
    );
    assert!(e.is_retryable());
    assert!(
        e.to_string()
            .contains("HTTP 503 SlowDown: Please reduce your request rate."),
        "{e}"
    );
    // A 404 is an answer: never retried.
    b.mem.script(
        Rule::on(
            "GetObject",
            Fault::status(403, "AccessDenied", "Access Denied"),
        )
        .times(5),
    );
    let e = run(async { s.get(BUCKET, "k", &enc).await.unwrap_err() });
    assert_eq!(store_fields(&e).2, Some(403));
    assert_eq!(b.mem.attempts_of("GetObject"), 1);
    assert!(
        e.to_string()
            .contains("check that these credentials may write to bucket 'b'"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Batch jobs.

/// Ceph RGW's answers (Create reports the encryption, Complete is silent, PUT reports it) cost
/// 3 requests per small file: Create, UploadPart, Complete; no HEAD. The whole job's requests
/// are those ARCHITECTURE.md lists (the report, like `_SUCCESS`, is made before the journal
/// and the lease are deleted).
#[test]
fn a_small_file_costs_three_requests() {
    let b = bed("small-file-cost", &[]);
    let report = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 4, 10).await;
        driver.commit_job(sets, vec![], false).await.unwrap()
    });
    let want: BTreeMap<String, u64> = [
        ("CreateMultipartUpload", 4),
        ("UploadPart", 4),
        ("CompleteMultipartUpload", 4),
        // setup's journal, the lease, the committing journal, _SUCCESS
        ("PutObject", 4),
        // setup's listing of _sealcommit/
        ("ListObjectsV2", 1),
        ("ListMultipartUploads", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(report.requests, want);
    // After the report: the journal and the lease are deleted.
    assert_eq!(b.mem.attempts_of("DeleteObject"), 2);
    assert_eq!(b.mem.attempts().len(), 20, "no retry, no extra request");
    assert_eq!(report.files, 4);
    assert!(b.journal_keys().is_empty());
}

/// A Complete the store applied but whose response was lost: the SDK retries it, the retry
/// answers `NoSuchUpload`, a HEAD finds the object with the recorded size, and the commit goes
/// on. The object exists once, `_SUCCESS` lists it, nothing is left pending.
#[test]
fn a_lost_complete_response_is_recognised_as_done() {
    let b = bed("lost-complete", &[]);
    let k0 = b.key("job_1", "", 0);
    b.mem
        .script(Rule::on("CompleteMultipartUpload", Fault::LoseResponse).key(&k0));
    let report = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 100).await;
        driver.commit_job(sets, vec![], false).await.unwrap()
    });
    let k1 = b.key("job_1", "", 1);
    assert_eq!(b.keys(), vec!["dest/_SUCCESS".to_string(), k0.clone(), k1]);
    assert_eq!(b.body(&k0).unwrap(), vec![b'a'; 100]);
    // Sent twice (one retry inside the call), counted once; the NoSuchUpload cost one HEAD.
    assert_eq!(b.mem.attempts_of("CompleteMultipartUpload"), 3);
    assert_eq!(requests(&report, "CompleteMultipartUpload"), 2);
    assert_eq!(requests(&report, "HeadObject"), 1);
    assert!(b.mem.pending().is_empty());
    assert!(b.mem.unused_script().is_empty());
    let success = String::from_utf8(b.body("dest/_SUCCESS").unwrap()).unwrap();
    assert!(success.contains(&k0), "{success}");
}

/// The same lost response with no retry left (`sealcommit.retry.max-attempts=1`): the caller
/// sees a connection failure, cannot know the Complete happened, and fails phase 1. The
/// rollback deletes what became visible — including the object this Complete did make — and
/// aborts the rest: nothing of the job stays, and the error is retryable.
#[test]
fn a_lost_complete_response_without_a_retry_rolls_the_job_back() {
    let b = bed(
        "lost-complete-no-retry",
        &[("sealcommit.retry.max-attempts", "1")],
    );
    let k0 = b.key("job_1", "", 0);
    b.mem
        .script(Rule::on("CompleteMultipartUpload", Fault::LoseResponse).key(&k0));
    let e = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 100).await;
        driver.commit_job(sets, vec![], false).await.unwrap_err()
    });
    let (op, uri, status, _, retryable) = store_fields(&e);
    assert_eq!(
        (op, status, retryable),
        ("CompleteMultipartUpload", None, true)
    );
    assert_eq!(uri, format!("s3a://b/{k0}"));
    assert!(e.to_string().contains("connection closed"), "{e}");
    assert!(b.keys().is_empty(), "nothing visible: {:?}", b.keys());
    assert!(b.mem.pending().is_empty());
}

/// Another driver (a `recover --force`) completed an upload before this commit got to it: the
/// Complete answers `NoSuchUpload`, HEAD shows the recorded size, the upload counts as done.
#[test]
fn no_such_upload_with_a_matching_head_counts_as_completed() {
    let b = bed("nosuchupload-match", &[]);
    let (report, k0) = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 100).await;
        let u = &sets[0].uploads[0];
        driver
            .target
            .store
            .complete_upload(
                &u.bucket,
                &u.key,
                &u.upload_id,
                &u.parts,
                driver.target.enc(),
                false,
            )
            .await
            .unwrap();
        let k0 = u.key.clone();
        (driver.commit_job(sets, vec![], false).await.unwrap(), k0)
    });
    assert_eq!(report.files, 2);
    assert_eq!(b.body(&k0).unwrap(), vec![b'a'; 100]);
    assert!(b.keys().contains(&"dest/_SUCCESS".to_string()));
    assert!(b.journal_keys().is_empty());
    assert!(b.mem.pending().is_empty());
}

/// The upload was aborted by hand and the key holds nothing (HEAD 404), or another object of
/// another size: the Complete's `NoSuchUpload` stands, the commit fails in phase 1 with an
/// error naming the key, is not retryable, and nothing of this job stays visible (the journal
/// is removed: there is nothing to roll forward).
#[test]
fn no_such_upload_with_no_object_fails_the_commit_and_leaves_nothing() {
    let b = bed("nosuchupload-gone", &[]);
    let (e, k0) = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 100).await;
        let u = &sets[0].uploads[0];
        driver
            .target
            .store
            .abort_upload(&u.bucket, &u.key, &u.upload_id)
            .await
            .unwrap();
        let k0 = u.key.clone();
        (
            driver.commit_job(sets, vec![], false).await.unwrap_err(),
            k0,
        )
    });
    let (op, uri, status, code, _) = store_fields(&e);
    assert_eq!(
        (op, uri, status, code),
        (
            "CompleteMultipartUpload",
            format!("s3a://b/{k0}").as_str(),
            Some(404),
            Some("NoSuchUpload")
        )
    );
    assert!(!e.is_retryable());
    assert!(b.keys().is_empty(), "{:?}", b.keys());
    assert!(b.mem.pending().is_empty());
}

#[test]
fn no_such_upload_with_another_size_fails_the_commit() {
    let b = bed("nosuchupload-mismatch", &[]);
    let (e, k0, k1) = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 100).await;
        let u = &sets[0].uploads[0];
        driver
            .target
            .store
            .abort_upload(&u.bucket, &u.key, &u.upload_id)
            .await
            .unwrap();
        b.mem.insert(
            BUCKET,
            &u.key,
            b"someone else's 31 bytes of data",
            driver.target.enc(),
        );
        let (k0, k1) = (u.key.clone(), sets[1].uploads[0].key.clone());
        (
            driver.commit_job(sets, vec![], false).await.unwrap_err(),
            k0,
            k1,
        )
    });
    assert_eq!(e.code(), Some("NoSuchUpload"));
    assert!(e.to_string().contains(&k0), "{e}");
    assert!(b.body(&k1).is_none(), "the job's other file is not visible");
    assert!(!b.keys().contains(&"dest/_SUCCESS".to_string()));
    assert!(b.journal_keys().is_empty());
    assert!(b.mem.pending().is_empty());
}

/// A failed phase 1 touches nothing old: its rollback deletes only the keys whose Complete was
/// sent and not refused. Here one upload was aborted by hand and another writer put an object
/// of another size at its key; the Complete answers `NoSuchUpload`, the HEAD finds that object,
/// the commit fails and rolls back — and the other writer's object stays.
#[test]
fn a_failed_phase_one_leaves_another_writers_object_at_a_key_alone() {
    let b = bed("nosuchupload-foreign", &[]);
    let k0 = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 100).await;
        let u = &sets[0].uploads[0];
        driver
            .target
            .store
            .abort_upload(&u.bucket, &u.key, &u.upload_id)
            .await
            .unwrap();
        b.mem
            .insert(BUCKET, &u.key, b"someone else's", driver.target.enc());
        let k0 = u.key.clone();
        driver.commit_job(sets, vec![], false).await.unwrap_err();
        k0
    });
    assert_eq!(b.body(&k0).as_deref(), Some(&b"someone else's"[..]));
}

/// Dynamic partition overwrite whose DeleteObjects leaves keys: the commit fails after
/// publishing (not retryable, says so), the error names the key not deleted and the store's
/// code, the new file and the journal stay, the refused old object stays and the deletable one
/// is gone. `sealcommit recover` then finishes the job.
#[test]
fn a_partial_delete_objects_names_the_keys_and_keeps_the_journal() {
    let b = bed("partial-delete", &[]);
    let enc = crate::settings::BucketSettings::resolve(&b.conf(), BUCKET)
        .unwrap()
        .encryption;
    for k in [
        "dest/p=1/old-a.json",
        "dest/p=1/old-b.json",
        "dest/p=2/old-c.json",
    ] {
        b.mem.insert(BUCKET, k, b"old", &enc);
    }
    b.mem
        .refuse_delete(BUCKET, "dest/p=1/old-b.json", "AccessDenied");
    let new = b.key("job_1", "p=1/", 0);
    let e = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "p=1/", 1, 10).await;
        driver.commit_job(sets, vec![], true).await.unwrap_err()
    });
    let text = e.to_string();
    assert!(
        text.contains("1 of 2 keys were not deleted: s3a://b/dest/p=1/old-b.json (AccessDenied: Access Denied)"),
        "{text}"
    );
    assert!(text.contains("The new files are visible"), "{text}");
    assert!(!e.is_retryable());
    let Error::Published { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        store_fields(source),
        (
            "DeleteObjects",
            "s3a://b/dest/p=1/old-b.json",
            None,
            Some("AccessDenied"),
            true
        )
    );
    assert!(b.body(&new).is_some(), "published");
    assert!(b.body("dest/p=1/old-a.json").is_none());
    assert!(b.body("dest/p=1/old-b.json").is_some());
    assert!(
        b.body("dest/p=2/old-c.json").is_some(),
        "another partition is untouched"
    );
    assert!(b.body("dest/_SUCCESS").is_none());
    let journal = String::from_utf8(b.body("dest/_sealcommit/job_1.journal").unwrap()).unwrap();
    assert!(journal.contains("\"publishing\""), "{journal}");

    b.mem.allow_deletes();
    let done = run(crate::protocol::recover::recover(
        &b.conf(),
        DEST,
        false,
        false,
    ))
    .unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].action, "completed");
    assert!(b.body("dest/p=1/old-b.json").is_none());
    assert!(b.body(&new).is_some());
    assert!(b.body("dest/_SUCCESS").is_some());
    assert!(b.journal_keys().is_empty());
}

/// A checkpoint directory whose delete leaves a key: the error names it, no silent success.
#[test]
fn a_partial_delete_of_a_checkpoint_directory_names_the_key() {
    let b = bed("partial-delete-checkpoint", &[]);
    let enc = EncryptionSpec::none();
    for k in ["cp/state/1.delta", "cp/state/2.delta"] {
        b.mem.insert(BUCKET, k, b"d", &enc);
    }
    b.mem
        .refuse_delete(BUCKET, "cp/state/2.delta", "AccessDenied");
    let e = run(async {
        let fs = CheckpointFs::open(&b.conf(), "s3a://b/cp").await.unwrap();
        fs.delete("s3a://b/cp/state").await.unwrap_err()
    });
    assert!(
        e.to_string()
            .contains("s3a://b/cp/state/2.delta (AccessDenied"),
        "{e}"
    );
    assert!(b.body("cp/state/2.delta").is_some());
}

/// A 503 storm on CompleteMultipartUpload shorter than the SDK's attempts is absorbed below the
/// engine: the job commits, and `_SUCCESS` counts one Complete per file. One that outlasts
/// them fails the job commit in phase 1 with a retryable error naming the operation, bucket,
/// key, status and code; the rollback (which the storm spares) leaves nothing visible and
/// nothing pending.
#[test]
fn a_short_503_storm_is_absorbed_by_the_sdk_retries() {
    let b = bed("storm-short", &[]);
    b.mem
        .script(Rule::on("CompleteMultipartUpload", Fault::slow_down()).times(4));
    let report = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 10).await;
        driver.commit_job(sets, vec![], false).await.unwrap()
    });
    assert_eq!(report.files, 2);
    assert_eq!(requests(&report, "CompleteMultipartUpload"), 2);
    assert_eq!(b.mem.attempts_of("CompleteMultipartUpload"), 6);
    assert!(b.keys().contains(&"dest/_SUCCESS".to_string()));
}

#[test]
fn a_503_storm_longer_than_the_retries_fails_the_commit_retryably_and_leaves_nothing() {
    let b = bed("storm-complete", &[]);
    let e = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 10).await;
        b.mem
            .script(Rule::on("CompleteMultipartUpload", Fault::slow_down()).times(1000));
        driver.commit_job(sets, vec![], false).await.unwrap_err()
    });
    let (op, uri, status, code, retryable) = store_fields(&e);
    assert_eq!(
        (op, status, code, retryable),
        ("CompleteMultipartUpload", Some(503), Some("SlowDown"), true)
    );
    assert!(uri.starts_with("s3a://b/dest/part-0000"), "{uri}");
    assert!(e.is_retryable());
    assert_eq!(e.kind(), ErrorKind::Other, "SealCommitException");
    assert!(b.keys().is_empty(), "{:?}", b.keys());
    assert!(b.mem.pending().is_empty());
}

/// A storm that also outlasts the rollback (Completes, aborts and deletes all answer 503): the
/// commit fails retryably, the rollback cannot finish, so the journal stays with the uploads
/// still pending, and nothing is visible. After the storm, once the lease has expired by the
/// store's clock, `sealcommit recover` rolls the commit forward from the journal.
#[test]
fn a_storm_through_the_rollback_leaves_the_commit_to_the_journal() {
    let b = bed("storm-everything", &[]);
    let e = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 2, 10).await;
        for op in [
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "DeleteObjects",
            "DeleteObject",
        ] {
            b.mem.script(Rule::on(op, Fault::slow_down()).times(1000));
        }
        driver.commit_job(sets, vec![], false).await.unwrap_err()
    });
    assert_eq!(store_fields(&e).3, Some("SlowDown"));
    assert!(e.is_retryable());
    assert_eq!(
        b.journal_keys(),
        [
            "dest/_sealcommit/job_1.journal",
            "dest/_sealcommit/job_1.lease"
        ]
    );
    assert_eq!(b.mem.pending().len(), 2);
    assert!(b.body("dest/_SUCCESS").is_none());

    b.mem.clear_script();
    // The lease still runs by the store's clock: recover leaves it to its driver.
    let live = run(crate::protocol::recover::recover(
        &b.conf(),
        DEST,
        false,
        false,
    ))
    .unwrap();
    assert_eq!(live[0].action, "live");
    b.mem.advance(Duration::from_secs(61));
    let done = run(crate::protocol::recover::recover(
        &b.conf(),
        DEST,
        false,
        false,
    ))
    .unwrap();
    assert_eq!((done[0].action, done[0].files), ("completed", 2));
    assert_eq!(
        b.keys(),
        [
            "dest/_SUCCESS".to_string(),
            b.key("job_1", "", 0),
            b.key("job_1", "", 1)
        ]
    );
    assert!(b.mem.pending().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Adaptive commit parallelism (`crate::limiter`): Completes that take a while (a latency on the
// fake), so that they overlap as over a network and the fake can count them in flight.

const COMPLETE: &str = "CompleteMultipartUpload";

/// The sorted keys of the uploads in `sets`: the order the job commit sends their Completes.
fn sorted_keys(sets: &[PendingSet]) -> Vec<String> {
    let mut keys: Vec<String> = sets
        .iter()
        .flat_map(|s| s.uploads.iter().map(|u| u.key.clone()))
        .collect();
    keys.sort();
    keys
}

/// A store that answers every Complete in 30 ms whatever the load: the rate grows with every
/// level, so the Completes in flight go from 16 (the start) to 32 (the first window always
/// grows) to 64 (it doubled the rate), the cap, and stay there. Every file once, 3 requests
/// per file as always.
#[test]
fn without_throttling_the_completes_in_flight_grow_from_16_to_the_cap() {
    let b = bed("adaptive-grows", &[("sealcommit.commit.parallelism", "64")]);
    b.mem.set_latency(COMPLETE, Duration::from_millis(30));
    let (report, keys) = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 256, 10).await;
        let keys = sorted_keys(&sets);
        (driver.commit_job(sets, vec![], false).await.unwrap(), keys)
    });
    let arrivals = b.mem.in_flight_at_arrival(COMPLETE);
    assert_eq!(arrivals.len(), 256, "one attempt per file");
    assert_eq!(arrivals[..16], (1..=16).collect::<Vec<_>>(), "16 at first");
    assert_eq!(b.mem.most_in_flight(COMPLETE), 64);
    assert_eq!(
        (
            report.complete.peak_parallelism,
            report.complete.throttle_cuts
        ),
        (64, 0)
    );
    assert_eq!((report.files, report.complete.completes), (256, 256));
    assert_eq!(requests(&report, COMPLETE), 256);
    assert_eq!(requests(&report, "CreateMultipartUpload"), 256);
    assert_eq!(requests(&report, "UploadPart"), 256);
    assert_eq!(requests(&report, "HeadObject"), 0);
    let mut want = keys;
    want.insert(0, "dest/_SUCCESS".to_string());
    assert_eq!(b.keys(), want);
    assert!(b.mem.pending().is_empty());
}

/// A third of the way through the commit the store starts throttling: from the 65th upload
/// on, every Complete is answered 503 SlowDown once (the SDK's retry gets through). The level,
/// 32 (the cap) before the storm, halves at the first throttled answer and again at the first
/// one of a request sent after that cut — 16, 8, 4, 2, 1 — so the last Completes go one at a
/// time; every file is still committed exactly once, nothing is left pending, and the requests
/// are 3 per file (the retries are attempts of the same request).
#[test]
fn a_503_storm_halves_the_completes_in_flight_down_to_one_and_commits_every_file_once() {
    let b = bed("adaptive-storm", &[("sealcommit.commit.parallelism", "32")]);
    b.mem.set_latency(COMPLETE, Duration::from_millis(10));
    let (report, keys) = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 192, 10).await;
        let keys = sorted_keys(&sets);
        for k in &keys[64..] {
            b.mem.script(Rule::on(COMPLETE, Fault::slow_down()).key(k));
        }
        (driver.commit_job(sets, vec![], false).await.unwrap(), keys)
    });
    let arrivals = b.mem.in_flight_at_arrival(COMPLETE);
    assert_eq!(arrivals.len(), 192, "the retries are attempts, not calls");
    assert_eq!(arrivals[..64].iter().max(), Some(&32), "at the cap before");
    assert_eq!(arrivals[176..], [1; 16], "one at a time at the end");
    assert_eq!(
        (
            report.complete.peak_parallelism,
            report.complete.throttle_cuts
        ),
        (32, 5)
    );
    assert_eq!(b.mem.attempts_of(COMPLETE), 192 + 128);
    assert!(b.mem.unused_script().is_empty());
    assert_eq!((report.files, requests(&report, COMPLETE)), (192, 192));
    let mut want = keys;
    want.insert(0, "dest/_SUCCESS".to_string());
    assert_eq!(b.keys(), want, "every file once");
    assert!(b.mem.pending().is_empty());
}

/// `sealcommit.commit.parallelism.adaptive=false` pins the level at the cap: 24 in flight from
/// the first Complete, and still 24 after a throttled one.
#[test]
fn pinned_commit_parallelism_stays_at_its_value_through_a_storm() {
    let b = bed(
        "adaptive-pinned",
        &[
            ("sealcommit.commit.parallelism", "24"),
            ("sealcommit.commit.parallelism.adaptive", "false"),
        ],
    );
    b.mem.set_latency(COMPLETE, Duration::from_millis(20));
    let report = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 48, 10).await;
        // Four 503s for the first Complete: its fifth attempt (the last) gets through.
        b.mem
            .script(Rule::on(COMPLETE, Fault::slow_down()).times(4));
        driver.commit_job(sets, vec![], false).await.unwrap()
    });
    let arrivals = b.mem.in_flight_at_arrival(COMPLETE);
    assert_eq!(arrivals[..24], (1..=24).collect::<Vec<_>>());
    assert_eq!(b.mem.most_in_flight(COMPLETE), 24);
    assert_eq!(
        (
            report.complete.peak_parallelism,
            report.complete.throttle_cuts
        ),
        (24, 0)
    );
    assert_eq!((report.files, requests(&report, COMPLETE)), (48, 48));
    assert_eq!(b.mem.attempts_of(COMPLETE), 48 + 4);
}

/// The store applies another KMS key to one file (and Complete is silent, Create reports it):
/// the HEAD after Complete shows it, the commit fails naming the key, the requested and the
/// actual encryption; everything the job completed is deleted and what it had not completed
/// yet is aborted (Completes one at a time here, so the third upload was never completed).
#[test]
fn a_failed_verify_rolls_back_and_names_key_requested_and_actual() {
    let b = bed("verify-rollback", &[("sealcommit.commit.parallelism", "1")]);
    let (k0, k1) = (b.key("job_1", "", 0), b.key("job_1", "", 1));
    b.mem.set_applied_to(
        &k1,
        Observed {
            algorithm: Some("aws:kms".into()),
            kms_key_id: Some("other-key".into()),
            sse_c_md5: None,
        },
    );
    let e = run(async {
        let driver = b.job("job_1").await;
        driver.setup().await.unwrap();
        let sets = b.tasks("job_1", "", 3, 10).await;
        driver.commit_job(sets, vec![], false).await.unwrap_err()
    });
    let Error::EncryptionNotApplied {
        uri,
        op,
        requested,
        actual,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(uri, &format!("s3a://b/{k1}"));
    assert_eq!(*op, "CompleteMultipartUpload");
    assert_eq!(requested, "SSE-KMS with KMS key 'k1'");
    assert_eq!(actual, "SSE-KMS with KMS key 'other-key'");
    assert!(!e.is_retryable());
    assert!(b.keys().is_empty(), "nothing visible: {:?}", b.keys());
    assert!(b.mem.pending().is_empty(), "the third upload was aborted");
    assert_eq!(b.mem.attempts_of("CompleteMultipartUpload"), 2);
    assert!(b.body(&k0).is_none());
}

/// A store that applies no encryption at all (Ceph RGW with SSE-S3) fails the job at setup,
/// before any task runs, naming what was asked and what the object has; the probe journal is
/// removed.
#[test]
fn a_store_that_applies_no_encryption_fails_the_setup() {
    let b = bed("verify-setup", &[]);
    b.mem.set_applied(Applied::Always(Observed::default()));
    b.mem.set_reports(Reports {
        put: false,
        ..Reports::default()
    });
    let e = run(async { b.job("job_1").await.setup().await.unwrap_err() });
    let text = e.to_string();
    assert!(
        text.contains("requested SSE-KMS with KMS key 'k1', the object has none"),
        "{text}"
    );
    assert!(
        text.contains("s3a://b/dest/_sealcommit/job_1.journal"),
        "{text}"
    );
    assert!(b.keys().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Checkpoint files.

async fn create_only(fs: &Arc<CheckpointFs>, uri: &str, data: &[u8]) -> Result<()> {
    let mut w = fs.create(uri, false)?;
    w.write(data)?;
    w.commit().await
}

/// A create-only checkpoint PUT applied by the store whose response was lost: the SDK's retry
/// answers 412, the object carries this writer's id, so the write succeeded.
#[test]
fn a_lost_create_only_put_response_is_recognised_by_the_writer_id() {
    let b = bed("cp-lost-put", &[]);
    b.mem
        .script(Rule::on("PutObject", Fault::LoseResponse).key("cp/offsets/0"));
    run(async {
        let fs = Arc::new(CheckpointFs::open(&b.conf(), "s3a://b/cp").await.unwrap());
        create_only(&fs, "s3a://b/cp/offsets/0", b"v1")
            .await
            .unwrap();
    });
    assert!(b.mem.unused_script().is_empty());
    let o = b.mem.object(BUCKET, "cp/offsets/0").unwrap();
    assert_eq!(&o.body[..], b"v1");
    assert!(o.metadata.contains_key(WRITER_META));
    let puts = b
        .mem
        .attempts()
        .into_iter()
        .filter(|a| a.op == "PutObject" && a.key == "cp/offsets/0")
        .count();
    assert_eq!(puts, 2);
}

/// Another writer's file — also with the very same bytes — is `AlreadyExists`
/// (`FileAlreadyExistsException`), and stays as it was.
#[test]
fn a_create_only_put_over_another_writers_file_is_already_exists() {
    let b = bed("cp-other-writer", &[]);
    run(async {
        let fs = Arc::new(CheckpointFs::open(&b.conf(), "s3a://b/cp").await.unwrap());
        create_only(&fs, "s3a://b/cp/commits/1", b"same")
            .await
            .unwrap();
        let first = b.mem.object(BUCKET, "cp/commits/1").unwrap();
        let other = Arc::new(CheckpointFs::open(&b.conf(), "s3a://b/cp").await.unwrap());
        for data in [&b"same"[..], b"different"] {
            let e = create_only(&other, "s3a://b/cp/commits/1", data)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e:?}");
            assert_eq!(
                e.to_string(),
                "s3a://b/cp/commits/1 already exists (another writer created it first)"
            );
        }
        // And when that writer's own PUT response was lost too: still not ours.
        b.mem
            .script(Rule::on("PutObject", Fault::LoseResponse).key("cp/commits/1"));
        let e = create_only(&other, "s3a://b/cp/commits/1", b"x")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let now = b.mem.object(BUCKET, "cp/commits/1").unwrap();
        assert_eq!((&now.body, &now.metadata), (&first.body, &first.metadata));
    });
}

// ---------------------------------------------------------------------------------------------
// Magic mode: a closed file finishes its upload in the background, owned by its task attempt
// (`crate::attempt::TaskAttempt`); task commit waits for every one of them.

const CREATE: &str = "CreateMultipartUpload";
const PART: &str = "UploadPart";

/// Small files committed through a task attempt's background uploads (either mode): at most
/// the limit (4) of Creates, and 2 to 4 UploadParts, in flight at once; requests per file
/// unchanged (Create + UploadPart at the task, Complete at job commit); nothing pending; every
/// file of the pendingset and `_SUCCESS` visible under their keys, and nothing else; the report
/// sums the task's times.
fn assert_small_files_committed(
    b: &Bed,
    set: &crate::model::PendingSet,
    report: &crate::protocol::CommitReport,
    files: u32,
) {
    assert_eq!(
        b.mem.most_in_flight(CREATE),
        4,
        "the limit, reached at once"
    );
    let parts = b.mem.most_in_flight(PART);
    assert!(
        (2..=4).contains(&parts),
        "{parts} UploadParts in flight at most"
    );
    assert_eq!(set.requests.get(CREATE), Some(&u64::from(files)));
    assert_eq!(set.requests.get(PART), Some(&u64::from(files)));
    assert_eq!(set.requests.get(COMPLETE), None);
    assert_eq!(requests(report, COMPLETE), u64::from(files));
    assert_eq!(requests(report, CREATE), u64::from(files));
    assert_eq!(requests(report, PART), u64::from(files));
    assert!(b.mem.pending().is_empty());
    assert_eq!(set.uploads.len(), files as usize);
    let mut want: Vec<String> = set.uploads.iter().map(|u| u.key.clone()).collect();
    want.push("dest/_SUCCESS".to_string());
    want.sort();
    let mut visible = b.keys();
    visible.sort();
    assert_eq!(visible, want, "every file and _SUCCESS, under their keys");
    assert_eq!(
        (
            report.tasks.tasks,
            report.tasks.upload_ms,
            report.tasks.commit_ms
        ),
        (1, set.upload_ms, set.commit_ms)
    );
}

/// Task commit failed, twice, because one file's UploadPart (of `bad`) was refused: the error
/// names the operation, the object, its bucket and the store's answer; every upload of the
/// attempt is aborted and nothing of the task is visible.
fn assert_refused_part_left_nothing(b: &Bed, first: &Error, second: &Error, bad: &str) {
    let (op, uri, status, code, _) = store_fields(first);
    assert_eq!(
        (op, uri, status, code),
        (
            PART,
            format!("s3a://{BUCKET}/{bad}").as_str(),
            Some(403),
            Some("AccessDenied")
        )
    );
    assert_eq!(first.bucket(), Some(BUCKET));
    assert!(first.to_string().contains(bad), "{first}");
    assert!(second.to_string().contains("AccessDenied"), "{second}");
    assert!(b.mem.unused_script().is_empty());
    assert_eq!(
        b.mem.pending(),
        vec![],
        "every upload of the attempt aborted"
    );
    assert_eq!(
        b.keys(),
        Vec::<String>::new(),
        "nothing of the task visible"
    );
}

/// A magic-mode bed: `files` closed files finish at once per task attempt.
fn magic_bed(name: &str, files: usize) -> Bed {
    bed(
        name,
        &[
            ("sealcommit.mode", "magic"),
            ("sealcommit.magic.files-in-flight", &files.to_string()),
        ],
    )
}

/// Writes small files `range` of job `job_id` through the executor's job `exec` and closes
/// each; their keys. A close may only fail because another file of the attempt failed first.
async fn magic_files(
    b: &Bed,
    exec: &Job,
    job_id: &str,
    range: std::ops::Range<u32>,
) -> Vec<String> {
    let mut keys = Vec::new();
    for n in range {
        let key = b.key(job_id, "", n);
        let mut w = exec.magic_writer(&format!("s3a://{BUCKET}/{key}")).unwrap();
        w.write(format!("file {n}\n").as_bytes()).await.unwrap();
        if let Err(e) = w.close().await {
            assert!(
                e.to_string()
                    .contains("another file of its task attempt failed"),
                "{e}"
            );
        }
        keys.push(key);
    }
    keys
}

/// With 30 ms per Create and per UploadPart, a close returns before its upload is even
/// created, 4 files (the limit) finish at once, the task commit gathers every file, and each
/// small file still costs one Create and one UploadPart (its Complete comes at job commit).
#[test]
fn closing_magic_files_returns_without_waiting_for_their_uploads() {
    let b = magic_bed("magic-close-overlaps", 4);
    // The first four Creates take 2 s: long enough that no pause of a loaded machine between
    // their closes and the check below can let one finish.
    b.mem.set_latency(CREATE, Duration::from_secs(2));
    b.mem.set_latency(PART, Duration::from_millis(30));
    let files = 24u32;
    let (set, report) = run(async {
        let driver = b.job("job_m").await;
        driver.setup().await.unwrap();
        let exec = b.job("job_m").await;
        let mut keys = magic_files(&b, &exec, "job_m", 0..4).await;
        // Four files closed, and not one of their uploads exists yet: no close waited.
        assert!(b.mem.pending().is_empty(), "{:?}", b.mem.pending());
        b.mem.set_latency(CREATE, Duration::from_millis(30));
        keys.extend(magic_files(&b, &exec, "job_m", 4..files).await);
        let set = exec.commit_magic_task("attempt_m", 0).await.unwrap();
        let mut got: Vec<String> = set.uploads.iter().map(|u| u.key.clone()).collect();
        got.sort();
        keys.sort();
        assert_eq!(got, keys);
        let report = driver
            .commit_job(vec![set.clone()], vec![], false)
            .await
            .unwrap();
        (set, report)
    });
    // How much sooner the closes return is a benchmark's question (tests/bench); here, that
    // they overlap up to the limit.
    assert_eq!(b.mem.in_flight_at_arrival(CREATE).len(), files as usize);
    assert_small_files_committed(&b, &set, &report, files);
    // The uploads took at least one Create and one UploadPart.
    assert!(set.upload_ms >= 60, "{set:?}");
}

/// One file's UploadPart is refused: its close returned, so task commit is where the task
/// learns it; the commit fails with the store's error naming the key, the operation and the
/// bucket, and leaves no upload and no object of the task. A second commit does not succeed
/// with the files that are left.
#[test]
fn a_failed_background_upload_fails_the_task_commit_and_leaves_nothing() {
    let b = magic_bed("magic-part-refused", 4);
    b.mem.set_latency(CREATE, Duration::from_millis(10));
    b.mem.set_latency(PART, Duration::from_millis(10));
    let bad = b.key("job_f", "", 5);
    b.mem
        .script(Rule::on(PART, Fault::status(403, "AccessDenied", "Access Denied")).key(&bad));
    let (first, second) = run(async {
        let exec = b.job("job_f").await;
        magic_files(&b, &exec, "job_f", 0..12).await;
        let first = exec.commit_magic_task("attempt_f", 0).await.unwrap_err();
        let second = exec.commit_magic_task("attempt_f", 0).await.unwrap_err();
        (first, second)
    });
    assert_refused_part_left_nothing(&b, &first, &second, &bad);
}

/// The wait before asking to commit fails the same way, and the task's abort after it leaves
/// nothing either.
#[test]
fn the_wait_before_task_commit_reports_a_failed_upload() {
    let b = magic_bed("magic-wait-fails", 2);
    let bad = b.key("job_w", "", 0);
    b.mem
        .script(Rule::on(CREATE, Fault::status(403, "AccessDenied", "Access Denied")).key(&bad));
    let e = run(async {
        let exec = b.job("job_w").await;
        magic_files(&b, &exec, "job_w", 0..3).await;
        let e = exec.task.wait().await.unwrap_err();
        exec.task.abort().await;
        e
    });
    assert_eq!(store_fields(&e).0, CREATE);
    assert!(e.to_string().contains(&bad), "{e}");
    assert_eq!(b.mem.pending(), vec![]);
    assert_eq!(b.keys(), Vec::<String>::new());
}

/// Task abort while files are still finishing: they are stopped or awaited, every upload of
/// the attempt is aborted, and a file closed afterwards is refused (its upload aborted too).
#[test]
fn a_task_abort_with_uploads_in_flight_leaves_nothing() {
    let b = magic_bed("magic-abort-in-flight", 4);
    b.mem.set_latency(CREATE, Duration::from_millis(30));
    b.mem.set_latency(PART, Duration::from_millis(30));
    let (late, commit) = run(async {
        let exec = b.job("job_a").await;
        magic_files(&b, &exec, "job_a", 0..8).await;
        exec.task.abort().await;
        let key = b.key("job_a", "", 8);
        let mut w = exec.magic_writer(&format!("s3a://{BUCKET}/{key}")).unwrap();
        w.write(&[b'x'; 6 << 20]).await.unwrap();
        let late = w.close().await.unwrap_err();
        let commit = exec.commit_magic_task("attempt_a", 0).await.unwrap_err();
        (late, commit)
    });
    assert!(
        late.to_string().contains("its task attempt was aborted"),
        "{late}"
    );
    assert!(commit.to_string().contains("aborted"), "{commit}");
    assert_eq!(b.mem.pending(), vec![], "every upload aborted");
    assert_eq!(b.keys(), Vec::<String>::new());
    assert!(b.mem.attempts_of("AbortMultipartUpload") >= 8);
}

/// The job a task attempt opened is freed with files still finishing (no commit, no abort):
/// they are stopped and their uploads aborted in the background.
#[test]
fn a_dropped_task_attempt_aborts_its_uploads() {
    let b = magic_bed("magic-dropped", 4);
    b.mem.set_latency(CREATE, Duration::from_millis(20));
    b.mem.set_latency(PART, Duration::from_millis(20));
    run(async {
        let exec = b.job("job_d").await;
        magic_files(&b, &exec, "job_d", 0..6).await;
        drop(exec);
        for _ in 0..200 {
            if b.mem.pending().is_empty() && b.mem.attempts_of(CREATE) == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(b.mem.attempts_of(CREATE), 6);
    assert_eq!(b.mem.pending(), vec![]);
    assert_eq!(b.keys(), Vec::<String>::new());
}

/// Finishing files hold at most what one open file may (part size × (parts in flight + 1)):
/// a large file's close waits while another large file still holds that much, whatever
/// `sealcommit.magic.files-in-flight` allows.
#[test]
fn finishing_large_files_hold_at_most_one_open_files_memory() {
    let b = bed(
        "magic-memory-bound",
        &[
            ("sealcommit.mode", "magic"),
            ("sealcommit.part-size", "5M"),
            ("sealcommit.magic.parts-in-flight", "1"),
        ],
    );
    b.mem.set_latency(PART, Duration::from_millis(100));
    let (parts_when_closed, set) = run(async {
        let exec = b.job("job_l").await;
        let mut parts_when_closed = Vec::new();
        for n in 0..2 {
            let key = b.key("job_l", "", n);
            let mut w = exec.magic_writer(&format!("s3a://{BUCKET}/{key}")).unwrap();
            // One full part (sent while writing) and one byte: the file holds two parts.
            w.write(&vec![b'a' + n as u8; (5 << 20) + 1]).await.unwrap();
            w.close().await.unwrap();
            parts_when_closed.push(b.mem.attempts_of(PART));
        }
        let set = exec.commit_magic_task("attempt_l", 0).await.unwrap();
        (parts_when_closed, set)
    });
    // The first close returned at once; the second only once the first file's two parts were
    // in, its buffers freed.
    assert_eq!(parts_when_closed[0], 0, "{parts_when_closed:?}");
    assert!(parts_when_closed[1] >= 2, "{parts_when_closed:?}");
    assert_eq!(set.uploads.len(), 2);
    assert!(set
        .uploads
        .iter()
        .all(|u| u.parts.len() == 2 && u.size == (5 << 20) + 1));
    assert!(set.buffer_peak <= 10 << 20, "{}", set.buffer_peak);
}

// ---------------------------------------------------------------------------------------------
// Staging mode: a closed local file's upload starts at its close, in the background, owned by
// its task attempt (`crate::attempt::TaskAttempt`, as magic mode's); task commit waits for every
// one of them.

/// A staging bed: `files` closed files upload at once per task attempt.
fn staging_bed(name: &str, files: usize) -> Bed {
    bed(
        name,
        &[("sealcommit.upload.parallelism", &files.to_string())],
    )
}

/// Writes local files `range` of job `job_id` (small, distinct) and closes each through the
/// executor's job `exec`; each file as `(local file, destination uri)`, for task commit. A
/// close may only fail because another file of the attempt failed first.
async fn staged_files(
    b: &Bed,
    exec: &Job,
    job_id: &str,
    range: std::ops::Range<u32>,
) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for n in range {
        let local = b.dir.path().join(format!("{job_id}-{n}"));
        std::fs::write(&local, format!("file {n}\n")).unwrap();
        let uri = format!("s3a://{BUCKET}/{}", b.key(job_id, "", n));
        if let Err(e) = exec.close_staged(local.clone(), &uri).await {
            assert!(
                e.to_string()
                    .contains("another file of its task attempt failed"),
                "{e}"
            );
        }
        files.push((local, uri));
    }
    files
}

/// Local files left in the bed's staging directory.
fn local_files(b: &Bed) -> Vec<PathBuf> {
    std::fs::read_dir(b.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// With the first four Creates taking 2 s, four closes return before any upload exists (no
/// close waited), four files (`sealcommit.upload.parallelism`) upload at once, task commit
/// gathers every file without uploading any again, each small file still costs one Create and
/// one UploadPart at the task and one Complete at job commit, and no local file is left.
#[test]
fn closing_staged_files_starts_their_uploads_in_the_background() {
    let b = staging_bed("staging-close-overlaps", 4);
    b.mem.set_latency(CREATE, Duration::from_secs(2));
    b.mem.set_latency(PART, Duration::from_millis(30));
    let n = 24u32;
    let (set, report, left) = run(async {
        let driver = b.job("job_s").await;
        driver.setup().await.unwrap();
        let exec = b.job("job_s").await;
        let mut files = staged_files(&b, &exec, "job_s", 0..4).await;
        // Four files closed; their Creates arrive (a staged upload reads the file's size
        // first), and while all four are still on their way, not one upload exists: no close
        // waited for its upload.
        for _ in 0..1000 {
            if b.mem.in_flight_at_arrival(CREATE).len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(b.mem.in_flight_at_arrival(CREATE), vec![1, 2, 3, 4]);
        assert!(b.mem.pending().is_empty(), "{:?}", b.mem.pending());
        assert_eq!(local_files(&b).len(), 4, "kept until uploaded");
        b.mem.set_latency(CREATE, Duration::from_millis(30));
        files.extend(staged_files(&b, &exec, "job_s", 4..n).await);
        exec.task.wait().await.unwrap();
        // Task commit is handed every file the task was asked to write, as the JNI layer does.
        let set = exec
            .commit_task("attempt_s", 0, files.clone())
            .await
            .unwrap();
        let left = local_files(&b);
        let mut got: Vec<String> = set.uploads.iter().map(|u| u.uri()).collect();
        let mut want: Vec<String> = files.into_iter().map(|(_, uri)| uri).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let report = driver
            .commit_job(vec![set.clone()], vec![], false)
            .await
            .unwrap();
        (set, report, left)
    });
    assert_eq!(left, Vec::<PathBuf>::new(), "every local file removed");
    assert_eq!(b.mem.attempts_of(CREATE), n as usize);
    assert_small_files_committed(&b, &set, &report, n);
    // The uploads ran from the first close to the last upload: at least the first Creates.
    assert!(set.upload_ms >= 2000, "{set:?}");
    assert_eq!(set.buffer_peak, 0);
}

/// One staged file's UploadPart is refused: its close returned, so task commit is where the
/// task learns it; the commit fails with the store's error naming the key, the operation and
/// the bucket, and leaves no upload, no object and no local file. A second commit does not
/// succeed with the files that are left.
#[test]
fn a_failed_staged_upload_fails_the_task_commit_and_leaves_nothing() {
    let b = staging_bed("staging-part-refused", 4);
    b.mem.set_latency(CREATE, Duration::from_millis(10));
    b.mem.set_latency(PART, Duration::from_millis(10));
    let bad = b.key("job_f", "", 5);
    b.mem
        .script(Rule::on(PART, Fault::status(403, "AccessDenied", "Access Denied")).key(&bad));
    let (first, second) = run(async {
        let exec = b.job("job_f").await;
        let files = staged_files(&b, &exec, "job_f", 0..12).await;
        let first = exec
            .commit_task("attempt_f", 0, files.clone())
            .await
            .unwrap_err();
        let second = exec.commit_task("attempt_f", 0, files).await.unwrap_err();
        (first, second)
    });
    assert_refused_part_left_nothing(&b, &first, &second, &bad);
    assert_eq!(local_files(&b), Vec::<PathBuf>::new());
}

/// Task abort while staged files are still uploading: they are stopped or awaited, every
/// upload of the attempt is aborted, every local file is removed, and a file closed afterwards
/// is refused (and removed) without a request.
#[test]
fn a_staging_task_abort_with_uploads_in_flight_leaves_nothing() {
    let b = staging_bed("staging-abort-in-flight", 4);
    b.mem.set_latency(CREATE, Duration::from_millis(30));
    b.mem.set_latency(PART, Duration::from_millis(30));
    let (late, commit, creates) = run(async {
        let exec = b.job("job_a").await;
        let files = staged_files(&b, &exec, "job_a", 0..8).await;
        exec.task.abort().await;
        let creates = b.mem.attempts_of(CREATE);
        let local = b.dir.path().join("job_a-8");
        std::fs::write(&local, "file 8\n").unwrap();
        let uri = format!("s3a://{BUCKET}/{}", b.key("job_a", "", 8));
        let e = exec.close_staged(local, &uri).await.unwrap_err();
        let commit = exec.commit_task("attempt_a", 0, files).await.unwrap_err();
        (e, commit, creates)
    });
    assert!(
        late.to_string().contains("its task attempt was aborted"),
        "{late}"
    );
    assert!(commit.to_string().contains("aborted"), "{commit}");
    assert_eq!(
        b.mem.attempts_of(CREATE),
        creates,
        "the late file sent nothing"
    );
    assert_eq!(b.mem.pending(), vec![], "every upload aborted");
    assert_eq!(b.keys(), Vec::<String>::new());
    assert!(b.mem.attempts_of("AbortMultipartUpload") >= 8);
    assert_eq!(
        local_files(&b),
        Vec::<PathBuf>::new(),
        "every local file removed"
    );
}
