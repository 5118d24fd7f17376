//! `sealcommit`: the operator CLI.
//!
//! The store is found the way AWS tools find it (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_CA_BUNDLE`, else the AWS
//! default chain), overridable with the keys the committer reads: `--conf key=value` and
//! `--conf-file FILE` (both repeatable). Secrets are refused with `--conf` (see [`ConfArgs`]).

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
  sealcommit recover <s3a://bucket/prefix> [--abort] [--force] [--json] [--conf key=value]...
  sealcommit version

Every command takes -v (engine info lines on stderr) or -vv (debug: one line per S3 request);
RUST_LOG (e.g. RUST_LOG=sealcommit_engine::store=debug) takes precedence.

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
A commit whose driver is alive (it renews the lease in its journal, sealcommit.journal.lease) is
never touched: recover names the job, its driver and when the lease expires, and exits 3; run it
again once the lease has expired, or with --force if you know that driver is gone.
Every job's setup already finishes interrupted commits on its destination by itself.

verify and uploads draw a progress bar on stderr when it is a terminal (--no-progress: never).

The store: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION, AWS_CA_BUNDLE; any fs.s3a.* / sealcommit.* key with --conf (e.g.
--conf fs.s3a.path.style.access=true) or from --conf-file FILE (key=value lines, # comments),
both in the order given. Secrets (access and secret key, session token, an SSE-C key) are refused
with --conf, where other users see them: use the variables above or a file only you can read.";

const SSE_C_EXPECTATION: &str = "--expect-algorithm SSE-C expects the configured SSE-C key, and \
    the command line takes no SSE-C key (a secret): put fs.s3a.encryption.algorithm=SSE-C and \
    fs.s3a.encryption.key=... in a file only you can read and pass --conf-file FILE, without \
    --expect-key";

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

/// Settings that are secrets whatever their value, and the variable that carries each instead.
const SECRETS: &[(&str, &str)] = &[
    ("access.key", "AWS_ACCESS_KEY_ID"),
    ("secret.key", "AWS_SECRET_ACCESS_KEY"),
    ("session.token", "AWS_SESSION_TOKEN"),
];

/// The configuration of one command: the environment, then `--conf-file` and `--conf` in the
/// order given. No secret is taken from the command line, where other users see it in the
/// process list and shells keep it in their history: secrets come from the environment or a
/// file. Error messages name keys, never values.
struct ConfArgs {
    conf: Conf,
    /// Encryption keys set with `--conf`: accepted only as KMS key ids ([`ConfArgs::finish`]).
    typed_keys: Vec<String>,
}

impl ConfArgs {
    fn from_env() -> ConfArgs {
        ConfArgs {
            conf: conf_from_env(),
            typed_keys: Vec::new(),
        }
    }

    /// Applies one `--conf key=value`, unless it is a secret.
    fn set(&mut self, kv: &str) -> Result<(), String> {
        let (k, v) = kv
            .split_once('=')
            .ok_or("--conf needs key=value (this argument has no '=')")?;
        let (k, v) = (k.trim(), v.trim());
        if let Some((_, var)) = SECRETS.iter().find(|(s, _)| k.ends_with(s)) {
            return Err(format!(
                "--conf {k}: secrets are not accepted on the command line (other users see them \
                 in the process list, shells keep them in their history); set {var}, or put the \
                 line {k}=... in a file only you can read and pass --conf-file FILE"
            ));
        }
        if k.ends_with("encryption.key") && !v.is_empty() {
            self.typed_keys.push(k.to_string());
        }
        self.conf.set(k, v);
        Ok(())
    }

    /// Applies `--conf-file FILE`: `key=value` lines (blank lines and `#` comments skipped),
    /// secrets included.
    fn read_file(&mut self, path: &str) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--conf-file {path}: {e}"))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("--conf-file {path}: line {} is not key=value", n + 1))?;
            self.typed_keys.retain(|t| t != k.trim());
            self.conf.set(k.trim(), v.trim());
        }
        Ok(())
    }

    /// The configuration, once every encryption key typed with `--conf` names a KMS key for the
    /// bucket it applies to (`uri`'s bucket unless the key names one): an SSE-C key is a secret.
    fn finish(self, uri: &str) -> Result<Conf, String> {
        let bucket = sealcommit_engine::uri::S3Path::parse(uri)
            .map(|p| p.bucket)
            .unwrap_or_default();
        for k in &self.typed_keys {
            let scope = ["fs.s3a.bucket.", "sealcommit.bucket."]
                .iter()
                .find_map(|p| k.strip_prefix(p))
                .and_then(|rest| {
                    rest.strip_suffix(".server-side-encryption.key")
                        .or_else(|| rest.strip_suffix(".encryption.key"))
                })
                .unwrap_or(&bucket);
            let kms = self
                .conf
                .encryption(scope)
                .is_ok_and(|e| e.kms_key_id().is_some());
            if !kms {
                return Err(format!(
                    "--conf {k}: on the command line an encryption key may only name a KMS key \
                     (with SSE-KMS or DSSE-KMS); an SSE-C key is a secret: put the line {k}=... \
                     in a file only you can read and pass --conf-file FILE"
                ));
            }
        }
        Ok(self.conf)
    }
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
    let args = init_logging(std::env::args().skip(1).collect());
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("sealcommit: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Engine log records go to stderr: warnings by default, `-v` info, `-vv` debug (one line per S3
/// request); `RUST_LOG` (e.g. `RUST_LOG=sealcommit_engine::store=debug`) takes precedence, the
/// usual Rust way. Returns the arguments without the `-v` flags.
fn init_logging(args: Vec<String>) -> Vec<String> {
    let (flags, rest): (Vec<String>, Vec<String>) = args
        .into_iter()
        .partition(|a| matches!(a.as_str(), "-v" | "-vv" | "--verbose"));
    let verbosity: usize = flags.iter().map(|f| if f == "-vv" { 2 } else { 1 }).sum();
    let engine = match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("sealcommit_engine", engine)
        .parse_env(env_logger::Env::default())
        .init();
    rest
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.to_string());
    };
    match cmd.as_str() {
        "version" | "--version" => {
            println!(
                "sealcommit {} (revision {})",
                sealcommit_engine::VERSION,
                sealcommit_engine::REVISION
            );
            Ok(ExitCode::SUCCESS)
        }
        "verify" => verify(&args[1..]),
        "uploads" => uploads(&args[1..]),
        "recover" => recover(&args[1..]),
        #[cfg(feature = "bench")]
        "bench" => bench::run(&args[1..], ConfArgs::from_env()).map(|()| ExitCode::SUCCESS),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    }
}

fn uploads(args: &[String]) -> Result<ExitCode, String> {
    let mut conf = ConfArgs::from_env();
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
            "--conf" => conf.set(&value("--conf")?)?,
            "--conf-file" => conf.read_file(&value("--conf-file")?)?,
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
    let conf = conf.finish(&uri)?;
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
    let mut conf = ConfArgs::from_env();
    let (mut uri, mut abort, mut json, mut force) = (None, false, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--conf" => conf.set(it.next().ok_or("--conf needs a value")?)?,
            "--conf-file" => conf.read_file(it.next().ok_or("--conf-file needs a value")?)?,
            "--abort" => abort = true,
            "--force" => force = true,
            "--json" => json = true,
            s if s.starts_with("--") => return Err(format!("unknown option '{s}'\n{USAGE}")),
            s => uri = Some(s.to_string()),
        }
    }
    let uri = uri.ok_or_else(|| format!("recover needs a path\n{USAGE}"))?;
    let conf = conf.finish(&uri)?;
    let done = engine(sealcommit_engine::recover::recover(
        &conf, &uri, abort, force,
    ))?;
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
    let live: Vec<_> = done.iter().filter(|r| r.action == "live").collect();
    for r in &live {
        eprintln!(
            "sealcommit: the commit of {} on {uri} is running: left alone ({}). Wait for it to \
             finish; if its driver is gone, run this again once the lease has expired, or now with \
             --force",
            r.holder, r.journal
        );
    }
    Ok(if live.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn verify(args: &[String]) -> Result<ExitCode, String> {
    let mut conf = ConfArgs::from_env();
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
            "--conf" => conf.set(&value("--conf")?)?,
            "--conf-file" => conf.read_file(&value("--conf-file")?)?,
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
    let conf = conf.finish(&uri)?;
    let expect = match alg {
        Some(a) if Algorithm::parse(&a) == Ok(Algorithm::SseC) => {
            if key.is_some() {
                return Err(SSE_C_EXPECTATION.into());
            }
            // The configured SSE-C key is what verify expects when nothing else is.
            let bucket = sealcommit_engine::uri::S3Path::parse(&uri).map_err(|e| e.to_string())?;
            match conf.encryption(&bucket.bucket) {
                Ok(e) if e.algorithm == Algorithm::SseC => None,
                _ => return Err(SSE_C_EXPECTATION.into()),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const SSE_C_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn typed(args: &[&str]) -> Result<Conf, String> {
        let mut c = ConfArgs {
            conf: Conf::default(),
            typed_keys: Vec::new(),
        };
        for a in args {
            c.set(a)?;
        }
        c.finish("s3a://b/t")
    }

    #[test]
    fn secrets_are_refused_on_the_command_line_without_echoing_them() {
        for (key, var) in [
            ("fs.s3a.secret.key", "AWS_SECRET_ACCESS_KEY"),
            ("fs.s3a.bucket.b.secret.key", "AWS_SECRET_ACCESS_KEY"),
            ("fs.s3a.access.key", "AWS_ACCESS_KEY_ID"),
            ("fs.s3a.session.token", "AWS_SESSION_TOKEN"),
        ] {
            let e = typed(&[&format!("{key}=TOPSECRET")]).unwrap_err();
            assert!(
                e.contains(key) && e.contains(var) && e.contains("--conf-file"),
                "{e}"
            );
            assert!(!e.contains("TOPSECRET"), "{e}");
        }
        let e = typed(&["fs.s3a.secret.key"]).unwrap_err();
        assert!(!e.contains("secret.key"), "{e}");
    }

    #[test]
    fn an_encryption_key_on_the_command_line_must_name_a_kms_key() {
        let kms = [
            "fs.s3a.encryption.algorithm=SSE-KMS",
            "fs.s3a.encryption.key=spark-encryption-key",
        ];
        assert!(typed(&kms).is_ok());
        // Order does not matter; the algorithm may come last.
        assert!(typed(&[kms[1], kms[0]]).is_ok());
        for args in [
            vec!["fs.s3a.encryption.algorithm=SSE-C".to_string()],
            vec![],
        ] {
            for key in ["fs.s3a.encryption.key", "fs.s3a.server-side-encryption.key"] {
                let mut args = args.clone();
                args.push(format!("{key}={SSE_C_KEY}"));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let e = typed(&args).unwrap_err();
                assert!(e.contains(key) && e.contains("--conf-file"), "{e}");
                assert!(!e.contains(SSE_C_KEY), "{e}");
            }
        }
        // A per-bucket key is judged by that bucket's algorithm.
        let e = typed(&[
            "fs.s3a.encryption.algorithm=SSE-KMS",
            "fs.s3a.encryption.key=k",
            "fs.s3a.bucket.other.bucket.encryption.algorithm=SSE-C",
            &format!("fs.s3a.bucket.other.bucket.encryption.key={SSE_C_KEY}"),
        ])
        .unwrap_err();
        assert!(
            e.contains("fs.s3a.bucket.other.bucket.encryption.key"),
            "{e}"
        );
        // An empty value turns a key off; it holds no secret.
        assert!(typed(&["fs.s3a.bucket.b.encryption.key="]).is_ok());
    }

    #[test]
    fn a_conf_file_carries_secrets() {
        let dir = std::env::temp_dir().join(format!("sealcommit-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s3.conf");
        std::fs::write(
            &path,
            format!(
                "# the store\n\nfs.s3a.secret.key = TOPSECRET\r\nfs.s3a.encryption.algorithm=SSE-C\n\
                 fs.s3a.encryption.key={SSE_C_KEY}\n"
            ),
        )
        .unwrap();
        let mut c = ConfArgs {
            conf: Conf::default(),
            typed_keys: Vec::new(),
        };
        c.set("fs.s3a.path.style.access=true").unwrap();
        c.read_file(path.to_str().unwrap()).unwrap();
        let conf = c.finish("s3a://b/t").unwrap();
        assert_eq!(conf.get("fs.s3a.secret.key"), Some("TOPSECRET"));
        assert_eq!(conf.get("fs.s3a.path.style.access"), Some("true"));
        assert_eq!(conf.encryption("b").unwrap().algorithm, Algorithm::SseC);

        std::fs::write(&path, "fs.s3a.secret.key TOPSECRET\n").unwrap();
        let e = c_err(&path);
        assert!(
            e.contains("line 1 is not key=value") && !e.contains("TOPSECRET"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = c_err(&path);
        assert!(e.starts_with("--conf-file "), "{e}");
    }

    fn c_err(path: &std::path::Path) -> String {
        let mut c = ConfArgs {
            conf: Conf::default(),
            typed_keys: Vec::new(),
        };
        c.read_file(path.to_str().unwrap()).unwrap_err()
    }
}
