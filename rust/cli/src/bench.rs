//! `sealcommit bench`: measurements without Spark, for docs/BENCHMARKS.md (built only with the
//! `bench` feature; `tests/bench/run.sh` builds it).
//!
//! * `bench commit <uri> --files N`: N small Parquet files (arrow + parquet) are uploaded as
//!   pending multipart uploads through the engine's task path, grouped into pendingsets of
//!   `--per-task` like tasks would report them; then a fresh process (this binary, as the driver)
//!   reads those pendingsets and runs the job commit. Its time and peak memory are the driver's.
//!   With `--simulate`, no store is involved: the N pending uploads are made up (Spark's
//!   file names, RGW-like upload ids and ETags, `--per-task` to a pendingset) and the driver
//!   commits them against a store that answers at once and keeps nothing (`sink.rs`): the
//!   driver's time and memory at any scale, with no store round trip.
//! * `bench ceiling <uri> --uploads N --inflight 8,16,32,64,128`: the store's own Complete rate.
//!   For each in-flight level in turn, N pending multipart uploads of one small part each are
//!   prepared (not timed), then completed with a raw aws-sdk-s3 client on the engine's TLS client
//!   with its encryption headers, that many in flight; one JSON object per level (uploads,
//!   inflight, seconds, completes_per_second, throttled attempts), then the best. The objects
//!   are deleted after each level. `bench commit` reports its job commit's Complete phase
//!   (`driver.complete`, `driver.completes_per_second`): its share of the best is the target.
//! * `bench upload <uri> --mib M`: the same random bytes uploaded three ways — a raw aws-sdk-s3
//!   multipart upload (the ceiling), the engine's magic writer and its staging upload of a local
//!   file — each with the engine's part size, parallelism and encryption headers.
//!
//! Every result is one JSON object on stdout.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use sealcommit_engine::model::PendingUpload;
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::settings::BucketSettings;
use sealcommit_engine::store::Store;
use sealcommit_engine::target::Target;
use sealcommit_engine::uri::S3Path;
use sealcommit_engine::{Conf, Job, PendingSet};

use crate::sink;
use serde_json::json;

type R<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// An aws-sdk-s3 error with its cause chain (its `Display` alone says only "service error").
fn sdk_err(e: impl std::error::Error) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

/// Peak and current resident memory of this process, from /proc (bytes).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds this process has used (user + system, all threads), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// One small Parquet file (`rows` rows of id and name) whose bytes differ per `seed`.
fn parquet_file(seed: u64, rows: usize) -> R<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (0..rows as i64)
        .map(|i| seed as i64 * 1_000_000 + i)
        .collect();
    let names: Vec<String> = ids.iter().map(|i| format!("user-{i:012}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .map_err(err)?;
    let mut w = ArrowWriter::try_new(Vec::new(), schema, None).map_err(err)?;
    w.write(&batch).map_err(err)?;
    w.into_inner().map_err(err)
}

/// What `bench` measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// Many small Parquet files through the task path, then the job commit in a fresh process
    Commit,
    /// The commit's driver process (started by `bench commit`)
    #[value(hide = true)]
    DriverCommit,
    /// One large upload three ways: raw aws-sdk-s3, magic writer, staging upload
    Upload,
    /// The store's CompleteMultipartUpload rate with a raw aws-sdk-s3 client, per in-flight level
    Ceiling,
}

/// `sealcommit bench`: measurements for docs/BENCHMARKS.md (tests/bench/run.sh).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    what: What,
    /// The destination
    #[arg(value_name = "s3a://bucket/prefix")]
    uri: String,
    /// Small files to commit
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Files per task (pendingset)
    #[arg(long, default_value_t = 100)]
    per_task: usize,
    /// `commit`: made-up pending uploads, committed against a store that answers at once and
    /// keeps nothing (no store round trip: the driver's time and memory alone)
    #[arg(long)]
    simulate: bool,
    /// Rows per file
    #[arg(long, default_value_t = 100)]
    rows: usize,
    /// MiB to upload
    #[arg(long, default_value_t = 256)]
    mib: usize,
    #[arg(long, hide = true)]
    pendingsets: Option<String>,
    #[arg(long, hide = true)]
    job: Option<String>,
    /// Which of the three upload paths goes first (0, 1, 2)
    #[arg(long, default_value_t = 0)]
    rotate: usize,
    /// `ceiling`: pending uploads completed at each in-flight level
    #[arg(long, default_value_t = 2000)]
    uploads: usize,
    /// `ceiling`: the in-flight levels, in the order they run
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
    inflight: Vec<usize>,
    #[command(flatten)]
    conf: crate::conf::ConfOpts,
}

impl Args {
    /// The arguments of the driver process: the same destination, sizes and settings.
    fn driver_args(&self) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = vec![self.uri.clone().into()];
        for (name, n) in [
            ("--files", self.files),
            ("--per-task", self.per_task),
            ("--rows", self.rows),
            ("--mib", self.mib),
            ("--rotate", self.rotate),
        ] {
            out.push(name.into());
            out.push(n.to_string().into());
        }
        if self.simulate {
            out.push("--simulate".into());
        }
        out.extend(self.conf.to_args());
        out
    }
}

pub fn run(mut a: Args, out: &mut crate::out::Out) -> R<()> {
    a.per_task = a.per_task.max(1);
    a.rows = a.rows.max(1);
    a.mib = a.mib.max(1);
    let conf = a.conf.load(&a.uri)?;
    let result = match a.what {
        What::Commit if a.simulate => simulate_and_commit(&conf, &a)?,
        What::Commit => block_on(prepare_and_commit(&conf, &a)).map_err(err)??,
        What::DriverCommit => block_on(driver_commit(&conf, &a)).map_err(err)??,
        What::Upload => block_on(upload(&conf, &a)).map_err(err)??,
        What::Ceiling => {
            for line in block_on(ceiling(&conf, &a)).map_err(err)?? {
                out.line(line)?;
            }
            return Ok(());
        }
    };
    out.line(result)
}

/// The task side: `files` pending uploads, written to a local pendingsets file; then the driver
/// side in a fresh process.
async fn prepare_and_commit(conf: &Conf, a: &Args) -> R<serde_json::Value> {
    let job_id = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(err)?
            .as_millis()
    );
    let job = Job::open(conf, &a.uri, &job_id).await.map_err(err)?;
    job.setup().await.map_err(err)?;
    let t0 = Instant::now();
    let dest = a.uri.trim_end_matches('/').to_string();
    let uploads: Vec<_> = stream::iter(0..a.files)
        .map(|i| {
            let (job, dest) = (&job, &dest);
            async move {
                let body = parquet_file(i as u64, a.rows)?;
                let mut w = job
                    .magic_writer(&format!("{dest}/part-{i:06}-{}.parquet", job.job_id))
                    .map_err(err)?;
                w.write(&body).await.map_err(err)?;
                Ok::<_, String>((w.finish().await.map_err(err)?.upload, body.len() as u64))
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let prepare_s = t0.elapsed().as_secs_f64();
    let bytes: u64 = uploads.iter().map(|(_, n)| n).sum();
    let sets: Vec<PendingSet> = uploads
        .chunks(a.per_task)
        .enumerate()
        .map(|(t, chunk)| PendingSet {
            version: sealcommit_engine::model::PENDINGSET_VERSION,
            job_id: job_id.clone(),
            task_attempt: format!("attempt_bench_m_{t:06}_0"),
            uploads: chunk.iter().map(|(u, _)| u.clone()).collect(),
            requests: Default::default(),
            buffer_peak: 0,
            upload_ms: 0,
            commit_ms: 0,
        })
        .collect();
    // One pendingset per line, as the driver receives them: one per task.
    let file = std::env::temp_dir().join(format!("sealcommit-{job_id}.pendingsets.jsonl"));
    let lines: Vec<String> = sets
        .iter()
        .map(PendingSet::to_json)
        .collect::<Result<_, _>>()
        .map_err(err)?;
    std::fs::write(&file, lines.join("\n")).map_err(err)?;
    let (task_peak, _) = memory();
    let (args, job) = (a.clone(), job_id.clone());
    let driver = tokio::task::spawn_blocking(move || run_driver(&args, &job, &file))
        .await
        .map_err(err)??;
    Ok(json!({
        "scenario": "engine-commit",
        "files": a.files,
        "bytes": bytes,
        "tasks": sets.len(),
        "prepare_seconds": prepare_s,
        "prepare_peak_rss_bytes": task_peak,
        "driver": driver,
    }))
}

/// The driver: this binary again (`bench driver-commit`), so its memory is the commit's alone.
/// It reads the pendingsets of `file`, which is removed afterwards; its JSON line is returned.
fn run_driver(a: &Args, job_id: &str, file: &std::path::Path) -> R<serde_json::Value> {
    let exe = std::env::current_exe().map_err(err)?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg("driver-commit")
        .args(a.driver_args())
        .arg("--job")
        .arg(job_id)
        .arg("--pendingsets")
        .arg(file)
        .output();
    let _ = std::fs::remove_file(file);
    let out = out.map_err(err)?;
    if !out.status.success() {
        return Err(format!(
            "the driver process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(err)
}

/// The size of every simulated file: the mean of the 100,000 small Parquet files of the
/// measured run (386 MB).
const SIMULATED_SIZE: u64 = 3862;

/// Deterministic pseudo-random numbers (xorshift64*), for made-up ids.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A UUID-shaped id, as Spark's job ids are.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// `n` characters of `[0-9A-Za-z]`.
    fn alnum(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..n)
            .map(|_| CHARS[(self.next() % CHARS.len() as u64) as usize] as char)
            .collect()
    }
}

/// `bench commit --simulate`: `--files` made-up pending uploads, as Spark's tasks would report
/// them from a partitioned write (`<dest>/p=<n>/part-<task>-<job id>.c000.snappy.parquet`, one
/// part each, RGW's `2~<32 characters>` upload ids, MD5-sized ETags, the job's encryption as
/// CreateMultipartUpload reported it), `--per-task` to a pendingset, written one pendingset a
/// line without holding them all; then the driver process commits them against the sink store.
fn simulate_and_commit(conf: &Conf, a: &Args) -> R<serde_json::Value> {
    let t0 = Instant::now();
    let dest = S3Path::parse(&a.uri).map_err(err)?;
    let settings = BucketSettings::resolve(conf, &dest.bucket).map_err(err)?;
    let requested = Arc::new(settings.encryption.summary());
    let created_with = sink::applied(&settings.encryption)
        .confirms(&settings.encryption)
        .map(Arc::new);
    let mut ids = Ids(0x9E37_79B9_7F4A_7C15 ^ a.files as u64);
    let job_id = ids.uuid();
    let root = dest.dir_prefix();
    let file = std::env::temp_dir().join(format!("sealcommit-{job_id}.pendingsets.jsonl"));
    let written = (|| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).map_err(err)?);
        for (t, first) in (0..a.files).step_by(a.per_task).enumerate() {
            let uploads = (first..(first + a.per_task).min(a.files))
                .map(|i| PendingUpload {
                    bucket: dest.bucket.clone(),
                    key: format!(
                        "{root}p={}/{}",
                        i % a.per_task,
                        sealcommit_engine::naming::output_name(
                            "",
                            t as u32,
                            &job_id,
                            ".c000.snappy.parquet"
                        )
                    ),
                    upload_id: format!("2~{}", ids.alnum(32)),
                    parts: vec![(1, format!("{:016x}{:016x}", ids.next(), ids.next()))],
                    size: SIMULATED_SIZE,
                    encryption: requested.clone(),
                    created_with: created_with.clone(),
                })
                .collect();
            let set = PendingSet {
                version: sealcommit_engine::model::PENDINGSET_VERSION,
                job_id: job_id.clone(),
                task_attempt: format!("attempt_202611241945_0001_m_{t:06}_0"),
                uploads,
                requests: [("CreateMultipartUpload", 1), ("UploadPart", 1)]
                    .into_iter()
                    .map(|(op, n)| (op.to_string(), n * a.per_task as u64))
                    .collect(),
                buffer_peak: 0,
                upload_ms: 0,
                commit_ms: 0,
            };
            let line = set.to_json().map_err(err)?;
            std::io::Write::write_all(&mut w, line.as_bytes()).map_err(err)?;
            std::io::Write::write_all(&mut w, b"\n").map_err(err)?;
        }
        std::io::Write::flush(&mut w).map_err(err)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&file);
        return Err(e);
    }
    let prepare_s = t0.elapsed().as_secs_f64();
    let pendingsets_bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    let (task_peak, _) = memory();
    let driver = run_driver(a, &job_id, &file)?;
    Ok(json!({
        "scenario": "engine-commit",
        "simulated": true,
        "files": a.files,
        "bytes": SIMULATED_SIZE * a.files as u64,
        "tasks": a.files.div_ceil(a.per_task),
        "pendingsets_bytes": pendingsets_bytes,
        "prepare_seconds": prepare_s,
        "prepare_peak_rss_bytes": task_peak,
        "driver": driver,
    }))
}

async fn driver_commit(conf: &Conf, a: &Args) -> R<serde_json::Value> {
    let (_, base_rss) = memory();
    let job_id = a.job.as_deref().ok_or("driver-commit needs --job")?;
    let path = a
        .pendingsets
        .as_deref()
        .ok_or("driver-commit needs --pendingsets")?;
    let t0 = Instant::now();
    let mut sets = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(
        std::fs::File::open(path).map_err(err)?,
    )) {
        sets.push(PendingSet::from_json(&line.map_err(err)?).map_err(err)?);
    }
    let job = if a.simulate {
        let dest = S3Path::parse(&a.uri).map_err(err)?;
        let settings = BucketSettings::resolve(conf, &dest.bucket).map_err(err)?;
        let store = Store::over(Arc::new(sink::Sink {
            size: SIMULATED_SIZE,
        }));
        Job::on(Target::over(dest, settings, store), job_id).map_err(err)?
    } else {
        Job::open(conf, &a.uri, job_id).await.map_err(err)?
    };
    let report = job.commit_job(sets, vec![], false).await.map_err(err)?;
    let seconds = t0.elapsed().as_secs_f64();
    let (peak, _) = memory();
    let complete_s = report.complete.millis as f64 / 1000.0;
    Ok(json!({
        "seconds": seconds,
        "commit_millis": report.millis,
        "complete": report.complete,
        "completes_per_second": report.complete.completes as f64 / complete_s.max(1e-3),
        "files": report.files,
        "requests": report.requests,
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": base_rss,
        "simulated": a.simulate,
    }))
}

/// Deterministic incompressible bytes (xorshift), `n` of them.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

const PATHS: [&str; 3] = ["raw", "magic", "staging"];

async fn upload(conf: &Conf, a: &Args) -> R<serde_json::Value> {
    let data = Bytes::from(random_bytes(a.mib << 20));
    let dest = S3Path::parse(&a.uri).map_err(err)?;
    let settings = BucketSettings::resolve(conf, &dest.bucket).map_err(err)?;
    let job = Job::open(conf, &a.uri, "bench-upload").await.map_err(err)?;
    let mb = data.len() as f64 / 1e6;
    // Staging uploads a local file the task wrote: written before the clock starts.
    let local = std::env::temp_dir().join(format!("sealcommit-bench-{}.bin", std::process::id()));
    std::fs::write(&local, &data).map_err(err)?;
    // Each path runs once; `--rotate K` starts with the K-th, so repeats take turns going first.
    let mut seconds = [0f64; 3];
    let mut cpu = [0f64; 3];
    for i in 0..3 {
        let path = (i + a.rotate) % 3;
        let (t0, c0) = (Instant::now(), cpu_seconds());
        match path {
            0 => upload_raw(&settings, &dest, &data).await,
            1 => upload_magic(&job, &dest, &data).await,
            _ => upload_staging(&job, &dest, &local).await,
        }
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&local);
        })?;
        seconds[path] = t0.elapsed().as_secs_f64();
        cpu[path] = cpu_seconds() - c0;
    }
    let _ = std::fs::remove_file(&local);
    let [raw_s, magic_s, staging_s] = seconds;
    Ok(json!({
        "scenario": "upload-throughput",
        "bytes": data.len(),
        "part_size": settings.commit.magic_part_size,
        "parts_in_flight": settings.commit.magic_parts_in_flight,
        "staging_part_size": settings.commit.part_size,
        "staging_parallelism": settings.commit.upload_parallelism,
        "first": PATHS[a.rotate % 3],
        "raw_seconds": raw_s,
        "magic_seconds": magic_s,
        "staging_seconds": staging_s,
        "raw_mb_s": mb / raw_s,
        "magic_mb_s": mb / magic_s,
        "staging_mb_s": mb / staging_s,
        "raw_cpu_seconds": cpu[0],
        "magic_cpu_seconds": cpu[1],
        "staging_cpu_seconds": cpu[2],
    }))
}

/// Raw aws-sdk-s3 on the engine's TLS client: create, then parts of the magic part size, as
/// many in flight as magic mode allows, straight from memory. Like the other two paths it ends
/// by aborting its upload (one request, in every path's time).
async fn upload_raw(settings: &BucketSettings, dest: &S3Path, data: &Bytes) -> R<()> {
    let part = settings.commit.magic_part_size as usize;
    let enc = &settings.encryption;
    let client = sealcommit_engine::store::client_for(&settings.store)
        .await
        .map_err(err)?;
    let key = format!("{}/raw.bin", dest.key.trim_end_matches('/'));
    let created = enc
        .apply_create(
            client
                .create_multipart_upload()
                .bucket(&dest.bucket)
                .key(&key),
        )
        .send()
        .await
        .map_err(sdk_err)?;
    let id = created.upload_id().unwrap_or_default().to_string();
    stream::iter(data.chunks(part).enumerate())
        .map(|(i, _)| {
            let body = data.slice(i * part..((i + 1) * part).min(data.len()));
            let req = enc.apply_upload_part(
                client
                    .upload_part()
                    .bucket(&dest.bucket)
                    .key(&key)
                    .upload_id(&id)
                    .part_number(i as i32 + 1)
                    .body(ByteStream::from(body)),
            );
            async move { req.send().await.map(|_| ()).map_err(sdk_err) }
        })
        .buffer_unordered(settings.commit.magic_parts_in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    client
        .abort_multipart_upload()
        .bucket(&dest.bucket)
        .key(&key)
        .upload_id(&id)
        .send()
        .await
        .map_err(sdk_err)?;
    Ok(())
}

/// The engine's magic writer, fed 1 MiB at a time the way the JNI bridge feeds it (copied into
/// the writer's own buffer).
async fn upload_magic(job: &Job, dest: &S3Path, data: &Bytes) -> R<()> {
    let uri = format!("{}/magic.bin", dest.to_string().trim_end_matches('/'));
    let mut w = job.magic_writer(&uri).map_err(err)?;
    for mut chunk in data.chunks(1 << 20) {
        while !chunk.is_empty() {
            let room = w.room(chunk.len());
            let n = room.len();
            room.copy_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            w.advance().await.map_err(err)?;
        }
    }
    let file = w.finish().await.map_err(err)?;
    job.target.abort_uploads(&[file.upload]).await.map_err(err)
}

/// Staging mode's task commit: a local file uploaded in parts.
async fn upload_staging(job: &Job, dest: &S3Path, local: &std::path::Path) -> R<()> {
    let staged = job
        .commit_task(
            "attempt_bench_m_000000_0",
            0,
            vec![(
                local.to_path_buf(),
                format!("{}/staging.bin", dest.to_string().trim_end_matches('/')),
            )],
        )
        .await
        .map_err(err)?;
    job.target.abort_uploads(&staged.uploads).await.map_err(err)
}

/// One pending upload of the ceiling: key, upload id, its one part's ETag.
type Pending = (String, String, String);

/// `bench ceiling`: at each in-flight level, `--uploads` pending one-part uploads completed with
/// a raw aws-sdk-s3 client; a JSON object per level, then the best.
async fn ceiling(conf: &Conf, a: &Args) -> R<Vec<serde_json::Value>> {
    let dest = S3Path::parse(&a.uri).map_err(err)?;
    let settings = BucketSettings::resolve(conf, &dest.bucket).map_err(err)?;
    let client = sealcommit_engine::store::client_for(&settings.store)
        .await
        .map_err(err)?;
    let store = sealcommit_engine::store::Store::connect(&settings.store)
        .await
        .map_err(err)?;
    let body = Bytes::from(parquet_file(0, a.rows)?);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(err)?
        .as_millis();
    let mut lines = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    for &inflight in &a.inflight {
        let inflight = inflight.max(1);
        let prefix = format!(
            "{}/ceiling-{stamp}-{inflight}",
            dest.key.trim_end_matches('/')
        );
        let pending =
            prepare_pending(&client, &settings, &dest.bucket, &prefix, a.uploads, &body).await?;
        let throttles = sealcommit_engine::store::Throttles::default();
        let t0 = Instant::now();
        let done = complete_raw(
            &client,
            &settings,
            &dest.bucket,
            &pending,
            inflight,
            &throttles,
        )
        .await;
        let seconds = t0.elapsed().as_secs_f64();
        // The objects (and, after a failure, the uploads still pending) go before the next level.
        let keys: Vec<String> = pending.iter().map(|(k, _, _)| k.clone()).collect();
        if done.is_err() {
            for (k, id, _) in &pending {
                let _ = store.abort_upload(&dest.bucket, k, id).await;
            }
        }
        store.delete_many(&dest.bucket, &keys).await.map_err(err)?;
        done?;
        let rate = a.uploads as f64 / seconds.max(1e-6);
        if best.is_none_or(|(_, r)| rate > r) {
            best = Some((inflight, rate));
        }
        lines.push(json!({
            "scenario": "complete-ceiling",
            "uploads": a.uploads,
            "inflight": inflight,
            "seconds": seconds,
            "completes_per_second": rate,
            "throttled_attempts": throttles.count(),
        }));
    }
    if let Some((inflight, rate)) = best {
        lines.push(json!({
            "scenario": "complete-ceiling-best",
            "uploads": a.uploads,
            "inflight": inflight,
            "completes_per_second": rate,
        }));
    }
    Ok(lines)
}

/// `n` pending uploads under `prefix`, each with `body` as its one part (64 at a time).
async fn prepare_pending(
    client: &aws_sdk_s3::Client,
    settings: &BucketSettings,
    bucket: &str,
    prefix: &str,
    n: usize,
    body: &Bytes,
) -> R<Vec<Pending>> {
    let enc = &settings.encryption;
    stream::iter(0..n)
        .map(|i| async move {
            let key = format!("{prefix}/part-{i:06}.parquet");
            let created = enc
                .apply_create(client.create_multipart_upload().bucket(bucket).key(&key))
                .send()
                .await
                .map_err(sdk_err)?;
            let id = created.upload_id().unwrap_or_default().to_string();
            let part = enc
                .apply_upload_part(
                    client
                        .upload_part()
                        .bucket(bucket)
                        .key(&key)
                        .upload_id(&id)
                        .part_number(1)
                        .body(ByteStream::from(body.clone())),
                )
                .send()
                .await
                .map_err(sdk_err)?;
            let etag = part.e_tag().unwrap_or_default().to_string();
            Ok::<_, String>((key, id, etag))
        })
        .buffer_unordered(64)
        .try_collect()
        .await
}

/// Completes every upload of `pending`, `inflight` at a time, counting throttled attempts.
async fn complete_raw(
    client: &aws_sdk_s3::Client,
    settings: &BucketSettings,
    bucket: &str,
    pending: &[Pending],
    inflight: usize,
    throttles: &sealcommit_engine::store::Throttles,
) -> R<()> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let enc = &settings.encryption;
    stream::iter(pending)
        .map(|(key, id, etag)| {
            let parts = CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build();
            let req = enc
                .apply_complete(
                    client
                        .complete_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(id)
                        .multipart_upload(parts),
                )
                .customize()
                .interceptor(sealcommit_engine::store::OnResponse(throttles.clone()));
            async move { req.send().await.map(|_| ()).map_err(sdk_err) }
        })
        .buffer_unordered(inflight)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}
