//! `sealcommit`: the operator CLI.
//!
//! The store is found the way AWS tools find it (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_CA_BUNDLE`, else the AWS
//! default chain), overridable with the keys the committer reads: `--conf key=value` (repeatable).

mod bar;
#[cfg(feature = "bench")]
mod bench;

use std::process::ExitCode;

use sealcommit_engine::config::Sourced;
use sealcommit_engine::encryption::{Algorithm, EncryptionSpec};
use sealcommit_engine::runtime::block_on;
use sealcommit_engine::Conf;

const USAGE: &str = "usage:
  sealcommit verify <s3a://bucket/prefix> [--expect-algorithm ALG] [--expect-key KEY] [--deep] [--json]
                    [--no-progress] [--conf key=value]...
  sealcommit uploads list|abort <s3a://bucket/prefix> [--older-than DURATION] [--job ID] [--json]
                    [--no-progress] [--conf key=value]...
  sealcommit recover <s3a://bucket/prefix> [--abort] [--json] [--conf key=value]...
  sealcommit version

verify lists every object under the prefix, HEADs it and prints its encryption; it exits 1 if any
object does not carry the expected encryption (--expect-*, else the configured fs.s3a.encryption.*).
--deep also opens every Parquet file's footer (two ranged GETs each) and reports its rows; a file
that is not readable Parquet is a mismatch.
uploads lists (or aborts) the pending multipart uploads under the prefix — what failed tasks and
crashed drivers left: first those named by journals of interrupted commits and by saved
pendingsets (found even where the store's listing misses them), then ListMultipartUploads (where
it lists nothing under the prefix, as MinIO does, the bucket's whole listing filtered here, and the
output says how far that reaches; --json prints an object: uploads, left, note) —
optionally only those started DURATION ago (30m, 2h, 1d) or whose key carries a job id. Uploads
of an interrupted commit are never aborted here: use recover. Aborting an upload of a job that is still running fails that job: use
--older-than.
recover finishes every job commit whose driver died on that destination (from its journal under
_sealcommit/): pending uploads are completed and verified, replaced objects deleted, _SUCCESS
written. With --abort it undoes them instead (nothing of those jobs stays visible), and also
aborts the uploads of jobs that died before committing: run that only when no job is writing.
Every job's setup already finishes interrupted commits on its destination by itself.

verify and uploads draw a progress bar on stderr when it is a terminal (--no-progress: never).

The store: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION, AWS_CA_BUNDLE; any fs.s3a.* / sealcommit.* key with --conf (e.g.
--conf fs.s3a.path.style.access=true).";

fn conf_from_env() -> Conf {
    let mut conf = Conf::default();
    for (env, key) in [
        ("AWS_ENDPOINT_URL", "fs.s3a.endpoint"),
        ("AWS_ACCESS_KEY_ID", "fs.s3a.access.key"),
        ("AWS_SECRET_ACCESS_KEY", "fs.s3a.secret.key"),
        ("AWS_SESSION_TOKEN", "fs.s3a.session.token"),
        ("AWS_REGION", "fs.s3a.endpoint.region"),
        ("AWS_CA_BUNDLE", "sealcommit.tls.ca-file"),
    ] {
        if let Ok(v) = std::env::var(env) {
            conf.set(key, v);
        }
    }
    conf
}

/// Applies one `--conf key=value`.
fn set_conf(conf: &mut Conf, kv: &str) -> Result<(), String> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| format!("--conf '{kv}' is not key=value"))?;
    conf.set(k.trim(), v.trim());
    Ok(())
}

/// Runs an engine call on the runtime; any error becomes the message to print.
fn engine<T>(
    f: impl std::future::Future<Output = sealcommit_engine::Result<T>>,
) -> Result<T, String> {
    block_on(f)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("sealcommit: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.to_string());
    };
    match cmd.as_str() {
        "version" | "--version" => {
            println!("sealcommit {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        "verify" => verify(&args[1..]),
        "uploads" => uploads(&args[1..]),
        "recover" => recover(&args[1..]),
        #[cfg(feature = "bench")]
        "bench" => bench::run(&args[1..], conf_from_env()).map(|()| ExitCode::SUCCESS),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    }
}

fn uploads(args: &[String]) -> Result<ExitCode, String> {
    let mut conf = conf_from_env();
    let (mut action, mut uri, mut json) = (None, None, false);
    let mut filter = sealcommit_engine::uploads::Filter::default();
    let mut progress = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--conf" => set_conf(&mut conf, &value("--conf")?)?,
            "--older-than" => {
                let d = value("--older-than")?;
                filter.older_than = Some(
                    sealcommit_engine::config::parse_duration(&d)
                        .map_err(|e| format!("--older-than: {e}"))?,
                );
            }
            "--job" => filter.job = Some(value("--job")?),
            "--json" => json = true,
            "--no-progress" => progress = false,
            s if s.starts_with("--") => return Err(format!("unknown option '{s}'\n{USAGE}")),
            s if action.is_none() => action = Some(s.to_string()),
            s => uri = Some(s.to_string()),
        }
    }
    let uri = uri.ok_or_else(|| format!("uploads needs list or abort and a path\n{USAGE}"))?;
    let bar = bar::Bar::stderr(progress);
    let result = match action.as_deref() {
        Some("list") => engine(sealcommit_engine::uploads::list(&conf, &uri, &filter, &bar)),
        Some("abort") => engine(sealcommit_engine::uploads::abort(
            &conf, &uri, &filter, &bar,
        )),
        other => {
            return Err(format!(
                "uploads: '{}' is not list or abort\n{USAGE}",
                other.unwrap_or("")
            ))
        }
    };
    bar.clear();
    let answer = result?;
    let (found, left) = (&answer.uploads, &answer.left);
    if json {
        print_json(&answer)?;
    } else {
        for u in found {
            println!(
                "{}  {}  {}  ({})",
                u.initiated.as_deref().unwrap_or("-"),
                u.uri,
                u.upload_id,
                u.found_in
            );
        }
        let verb = if action.as_deref() == Some("abort") {
            "aborted"
        } else {
            "pending"
        };
        if let Some(note) = answer.note {
            println!("note: {note}");
        }
        println!("{} uploads {verb}", found.len());
    }
    if !left.is_empty() {
        eprintln!(
            "{} uploads belong to interrupted job commits and were left: run `sealcommit recover \
             {uri}` (or with --abort)",
            left.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn recover(args: &[String]) -> Result<ExitCode, String> {
    let mut conf = conf_from_env();
    let (mut uri, mut abort, mut json) = (None, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--conf" => set_conf(
                &mut conf,
                it.next()
                    .ok_or_else(|| "--conf needs a value".to_string())?,
            )?,
            "--abort" => abort = true,
            "--json" => json = true,
            s if s.starts_with("--") => return Err(format!("unknown option '{s}'\n{USAGE}")),
            s => uri = Some(s.to_string()),
        }
    }
    let uri = uri.ok_or_else(|| format!("recover needs a path\n{USAGE}"))?;
    let done = engine(sealcommit_engine::recover::recover(&conf, &uri, abort))?;
    if json {
        print_json(&done)?;
    } else {
        for r in &done {
            println!(
                "job {}  {:?}  {}  {} files  ({})",
                r.job_id, r.state, r.action, r.files, r.journal
            );
        }
        println!("{} interrupted job commits found", done.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &[String]) -> Result<ExitCode, String> {
    let mut conf = conf_from_env();
    let (mut uri, mut alg, mut key, mut json, mut deep) = (None, None, None, false, false);
    let mut progress = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--conf" => set_conf(&mut conf, &value("--conf")?)?,
            "--expect-algorithm" => alg = Some(value("--expect-algorithm")?),
            "--expect-key" => key = Some(value("--expect-key")?),
            "--json" => json = true,
            "--deep" => deep = true,
            "--no-progress" => progress = false,
            s if s.starts_with("--") => return Err(format!("unknown option '{s}'\n{USAGE}")),
            s => uri = Some(s.to_string()),
        }
    }
    let uri = uri.ok_or_else(|| format!("verify needs a path\n{USAGE}"))?;
    let expect = match alg {
        Some(a) => {
            let algo = Algorithm::parse(&a).map_err(|e| format!("--expect-algorithm: {e}"))?;
            let key = key.map(|k| Sourced {
                value: k,
                key: "--expect-key".into(),
            });
            Some(
                EncryptionSpec::new(algo, Some("--expect-algorithm".into()), key, None)
                    .map_err(|e| e.to_string())?,
            )
        }
        None if key.is_some() => return Err("--expect-key needs --expect-algorithm".into()),
        None => None,
    };
    let bar = bar::Bar::stderr(progress);
    let report = engine(sealcommit_engine::verify::verify(
        &conf, &uri, expect, deep, &bar,
    ));
    bar.clear();
    let report = report?;
    if json {
        print_json(&report)?;
    } else {
        let width = report
            .objects
            .iter()
            .map(|o| o.uri.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!(
            "{:width$}  {:>10}  {:<9}  {:<40}  CHECK",
            "OBJECT", "BYTES", "ENCRYPTION", "KMS KEY ID"
        );
        for o in &report.objects {
            println!(
                "{:width$}  {:>10}  {:<9}  {:<40}  {}",
                o.uri,
                o.size,
                o.encryption.algorithm,
                o.encryption.kms_key_id.as_deref().unwrap_or("-"),
                o.problem.as_deref().unwrap_or("ok")
            );
        }
        println!(
            "{} objects, {} mismatches{}",
            report.objects.len(),
            report.mismatches,
            report
                .expected
                .as_ref()
                .map(|e| format!(" (expected {e})"))
                .unwrap_or_default()
        );
        if let (Some(files), Some(rows)) = (report.parquet_files, report.parquet_rows) {
            println!("{files} Parquet files opened, {rows} rows");
        }
    }
    Ok(if report.mismatches == 0 && !report.objects.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
