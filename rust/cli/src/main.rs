//! `sealcommit`: the operator CLI (arguments with `clap`; see `sealcommit --help`).
//!
//! The store is found the way AWS tools find it (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...),
//! then `$HADOOP_CONF_DIR/core-site.xml`, `--conf-file FILE` and `--conf key=value`, each
//! overriding the one before ([`conf`]). Secrets are refused with `--conf`.

mod bar;
#[cfg(feature = "bench")]
mod bench;
mod conf;
mod out;
#[cfg(feature = "bench")]
mod sink;

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use sealcommit_engine::config::Sourced;
use sealcommit_engine::encryption::{Algorithm, EncryptionSpec};
use sealcommit_engine::runtime::block_on;

use crate::conf::ConfOpts;
use crate::out::{note, Out};

/// Exit codes, as `--help` and docs/CONFIGURATION.md list them.
mod code {
    /// Done; `verify`: every object carries the expected encryption.
    pub const OK: u8 = 0;
    /// `verify`: a mismatch, or no object under the prefix.
    pub const MISMATCH: u8 = 1;
    /// A usage or configuration error, or the command failed (the message says why).
    pub const ERROR: u8 = 2;
    /// `recover`: a commit's driver is alive (it renews its lease): that commit was left alone.
    pub const LIVE: u8 = 3;
}

const AFTER_HELP: &str = "\
Settings, each source overriding the one before, key by key:
  1. the environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
     AWS_SESSION_TOKEN, AWS_REGION, AWS_CA_BUNDLE
  2. $HADOOP_CONF_DIR/core-site.xml, when it exists
  3. --conf-file FILE, in the order given: Hadoop XML (core-site.xml) or key=value lines
  4. --conf key=value, in the order given
Any fs.s3a.* key (per bucket too: fs.s3a.bucket.<bucket>.endpoint) and sealcommit.* key is read.
Secrets (access and secret key, session token, an SSE-C key) are refused with --conf, where
other users see them: use the variables above or a file only you can read.

Logging: warnings on stderr; -v info, -vv debug (one line per S3 request); RUST_LOG (e.g.
RUST_LOG=sealcommit_engine::store=debug) takes precedence.

Exit codes:
  0  done (verify: every object as expected)
  1  verify: an object does not carry the expected encryption, a --deep footer check failed,
     or nothing is under the prefix
  2  usage or configuration error, or the command failed (the message says why)
  3  recover: a commit whose driver is alive was left alone
A reader that stops early (| head) ends the output quietly; the exit code stays the command's.";

/// The version line: `sealcommit 0.1.0 (revision <git>)`.
fn version_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (revision {})",
            sealcommit_engine::VERSION,
            sealcommit_engine::REVISION
        )
    })
}

/// Operator commands for sealcommit destinations: check encryption, find and abort left-over
/// uploads, finish or undo interrupted job commits.
#[derive(Parser, Debug)]
#[command(name = "sealcommit", version = version_line(), after_help = AFTER_HELP)]
struct Cli {
    /// Log more on stderr: -v info, -vv debug (one line per S3 request); RUST_LOG wins
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true, display_order = 900)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists every object under a prefix with its encryption; exits 1 on a mismatch
    ///
    /// verify lists every object under the prefix, HEADs it and prints its encryption; it exits 1
    /// if any object does not carry the expected encryption (--expect-*, else the configured
    /// fs.s3a.encryption.*), or if nothing is under the prefix. --deep also opens every Parquet
    /// file's footer (two ranged GETs each) and reports its rows; a file that is not readable
    /// Parquet is a mismatch, one whose footer is encrypted (Parquet modular encryption) is
    /// reported as such.
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Lists or aborts the pending multipart uploads under a prefix
    ///
    /// What failed tasks and crashed drivers left: first those named by journals of interrupted
    /// commits and by saved pendingsets (found even where the store's listing misses them), then
    /// ListMultipartUploads (where it lists nothing under the prefix, as MinIO does, the bucket's
    /// whole listing filtered here, and the output says how far that reaches). Uploads of an
    /// interrupted commit are never aborted here: use recover. Aborting an upload of a job that is
    /// still running fails that job: use --older-than.
    #[command(subcommand, verbatim_doc_comment)]
    Uploads(Uploads),
    /// Finishes (or with --abort undoes) job commits whose driver died
    ///
    /// recover finishes every job commit whose driver died on that destination (from its journal
    /// under _sealcommit/): pending uploads are completed and verified, replaced objects deleted,
    /// _SUCCESS written. With --abort it undoes them instead (nothing of those jobs stays
    /// visible), and also aborts the uploads of jobs that died before committing: run that only
    /// when no job is writing. A commit whose driver is alive (it renews the lease in its journal,
    /// sealcommit.journal.lease) is never touched: recover names the job, its driver and when the
    /// lease expires, and exits 3; run it again once the lease has expired, or with --force if
    /// you know that driver is gone. Every job's setup already finishes interrupted commits on its
    /// destination by itself.
    #[command(verbatim_doc_comment)]
    Recover(RecoverArgs),
    /// Prints the version and git revision (as --version does)
    Version,
    /// Measurements for docs/BENCHMARKS.md (tests/bench/run.sh)
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    Bench(bench::Args),
}

/// `--json` and `--no-progress`.
#[derive(Args, Debug)]
struct Output {
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    /// Never draw the progress bar (drawn on stderr only when it is a terminal)
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The prefix to check
    #[arg(value_name = "s3a://bucket/prefix")]
    uri: String,
    /// The encryption every object must carry (SSE-KMS, DSSE-KMS, SSE-S3, SSE-C, none)
    #[arg(long, value_name = "ALG")]
    expect_algorithm: Option<String>,
    /// The KMS key id every object must carry (with --expect-algorithm SSE-KMS or DSSE-KMS)
    #[arg(long, value_name = "KEY")]
    expect_key: Option<String>,
    /// Also open every .parquet object's footer and count its rows
    #[arg(long)]
    deep: bool,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    conf: ConfOpts,
}

#[derive(Subcommand, Debug)]
enum Uploads {
    /// Lists them
    List(UploadsArgs),
    /// Aborts them (never those of an interrupted commit: use recover)
    Abort(UploadsArgs),
}

#[derive(Args, Debug)]
struct UploadsArgs {
    /// The prefix whose uploads to list or abort
    #[arg(value_name = "s3a://bucket/prefix")]
    uri: String,
    /// Only uploads started at least this long ago (30m, 2h, 1d)
    #[arg(long, value_name = "DURATION", value_parser = sealcommit_engine::config::parse_duration)]
    older_than: Option<Duration>,
    /// Only uploads whose key carries this job id
    #[arg(long, value_name = "ID")]
    job: Option<String>,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    conf: ConfOpts,
}

#[derive(Args, Debug)]
struct RecoverArgs {
    /// The destination whose interrupted commits to finish or undo
    #[arg(value_name = "s3a://bucket/prefix")]
    uri: String,
    /// Undo the interrupted commits instead of finishing them
    #[arg(long)]
    abort: bool,
    /// Also take over commits whose lease has not expired (only if you know their driver is gone)
    #[arg(long)]
    force: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conf: ConfOpts,
}

const SSE_C_EXPECTATION: &str = "--expect-algorithm SSE-C expects the configured SSE-C key, and \
    the command line takes no SSE-C key (a secret): put fs.s3a.encryption.algorithm=SSE-C and \
    fs.s3a.encryption.key=... in a file only you can read and pass --conf-file FILE, without \
    --expect-key";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout (exit 0), usage errors to stderr (exit 2); a closed
            // stream is no reason to panic.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(code::ERROR));
        }
    };
    init_logging(cli.verbose);
    let mut out = Out::stdout();
    let result = run(cli.command, &mut out);
    let flushed = out.flush();
    match result.and_then(|code| flushed.map(|()| code)) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            note(format_args!("sealcommit: {msg}"));
            ExitCode::from(code::ERROR)
        }
    }
}

/// Engine log records go to stderr: warnings by default, `-v` info, `-vv` debug (one line per S3
/// request); `RUST_LOG` (e.g. `RUST_LOG=sealcommit_engine::store=debug`) takes precedence, the
/// usual Rust way.
fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("sealcommit_engine", level)
        .filter_module("sealcommit", level)
        .parse_env(env_logger::Env::default())
        .init();
}

fn run(command: Command, out: &mut Out) -> Result<u8, String> {
    match command {
        Command::Version => {
            out.line(format_args!("sealcommit {}", version_line()))?;
            Ok(code::OK)
        }
        Command::Verify(a) => verify(a, out),
        Command::Uploads(Uploads::List(a)) => uploads(a, false, out),
        Command::Uploads(Uploads::Abort(a)) => uploads(a, true, out),
        Command::Recover(a) => recover(a, out),
        #[cfg(feature = "bench")]
        Command::Bench(a) => bench::run(a, out).map(|()| code::OK),
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

fn uploads(a: UploadsArgs, abort: bool, out: &mut Out) -> Result<u8, String> {
    let conf = a.conf.load(&a.uri)?;
    let filter = sealcommit_engine::uploads::Filter {
        older_than: a.older_than,
        job: a.job,
    };
    let bar = bar::Bar::stderr(!a.output.no_progress);
    let result = if abort {
        engine(sealcommit_engine::uploads::abort(
            &conf, &a.uri, &filter, &bar,
        ))
    } else {
        engine(sealcommit_engine::uploads::list(
            &conf, &a.uri, &filter, &bar,
        ))
    };
    bar.clear();
    let answer = result?;
    if a.output.json {
        out.json(&answer)?;
    } else {
        for u in &answer.uploads {
            out.line(format_args!(
                "{}  {}  {}  ({})",
                u.initiated.as_deref().unwrap_or("-"),
                u.uri,
                u.upload_id,
                u.found_in
            ))?;
        }
        if let Some(note) = &answer.note {
            out.line(format_args!("note: {note}"))?;
        }
        let verb = if abort { "aborted" } else { "pending" };
        out.line(format_args!("{} uploads {verb}", answer.uploads.len()))?;
    }
    if !answer.left.is_empty() {
        out.flush()?;
        note(format_args!(
            "{} uploads belong to interrupted job commits and were left: run `sealcommit recover \
             {}` (or with --abort)",
            answer.left.len(),
            a.uri
        ));
    }
    Ok(code::OK)
}

fn recover(a: RecoverArgs, out: &mut Out) -> Result<u8, String> {
    let conf = a.conf.load(&a.uri)?;
    let done = engine(sealcommit_engine::protocol::recover::recover(
        &conf, &a.uri, a.abort, a.force,
    ))?;
    if a.json {
        out.json(&done)?;
    } else {
        for r in &done {
            out.line(format_args!(
                "job {}  {:?}  {}  {} files  ({})",
                r.job_id, r.state, r.action, r.files, r.journal
            ))?;
        }
        out.line(format_args!("{} interrupted job commits found", done.len()))?;
    }
    out.flush()?;
    let live: Vec<_> = done.iter().filter(|r| r.action == "live").collect();
    for r in &live {
        note(format_args!(
            "sealcommit: the commit of {} on {} is running: left alone ({}). Wait for it to \
             finish; if its driver is gone, run this again once the lease has expired, or now with \
             --force",
            r.holder, a.uri, r.journal
        ));
    }
    Ok(if live.is_empty() {
        code::OK
    } else {
        code::LIVE
    })
}

/// What `verify` expects: `--expect-*`, else (`None`) the configured encryption.
fn expectation(
    a: &VerifyArgs,
    conf: &sealcommit_engine::Conf,
) -> Result<Option<EncryptionSpec>, String> {
    match &a.expect_algorithm {
        Some(alg) if Algorithm::parse(alg) == Ok(Algorithm::SseC) => {
            if a.expect_key.is_some() {
                return Err(SSE_C_EXPECTATION.into());
            }
            // The configured SSE-C key is what verify expects when nothing else is.
            let path = sealcommit_engine::uri::S3Path::parse(&a.uri).map_err(|e| e.to_string())?;
            match conf.encryption(&path.bucket) {
                Ok(e) if e.algorithm == Algorithm::SseC => Ok(None),
                _ => Err(SSE_C_EXPECTATION.into()),
            }
        }
        Some(alg) => {
            let algo = Algorithm::parse(alg).map_err(|e| format!("--expect-algorithm: {e}"))?;
            let key = a.expect_key.clone().map(|k| Sourced {
                value: k,
                key: "--expect-key".into(),
            });
            EncryptionSpec::new(algo, Some("--expect-algorithm".into()), key, None)
                .map(Some)
                .map_err(|e| e.to_string())
        }
        None if a.expect_key.is_some() => Err("--expect-key needs --expect-algorithm".into()),
        None => Ok(None),
    }
}

fn verify(a: VerifyArgs, out: &mut Out) -> Result<u8, String> {
    let conf = a.conf.load(&a.uri)?;
    let expect = expectation(&a, &conf)?;
    let bar = bar::Bar::stderr(!a.output.no_progress);
    let report = engine(sealcommit_engine::verify::verify(
        &conf, &a.uri, expect, a.deep, &bar,
    ));
    bar.clear();
    let report = report?;
    if a.output.json {
        out.json(&report)?;
    } else {
        let width = report
            .objects
            .iter()
            .map(|o| o.uri.len())
            .max()
            .unwrap_or(6)
            .max(6);
        out.line(format_args!(
            "{:width$}  {:>10}  {:<9}  {:<40}  CHECK",
            "OBJECT", "BYTES", "ENCRYPTION", "KMS KEY ID"
        ))?;
        for o in &report.objects {
            let check = match (&o.problem, &o.note) {
                (Some(problem), _) => problem.clone(),
                (None, Some(note)) => format!("ok ({note})"),
                (None, None) => "ok".into(),
            };
            out.line(format_args!(
                "{:width$}  {:>10}  {:<9}  {:<40}  {check}",
                o.uri,
                o.size,
                o.encryption.algorithm,
                o.encryption.kms_key_id.as_deref().unwrap_or("-"),
            ))?;
        }
        out.line(format_args!(
            "{} objects, {} mismatches{}",
            report.objects.len(),
            report.mismatches,
            report
                .expected
                .as_ref()
                .map(|e| format!(" (expected {e})"))
                .unwrap_or_default()
        ))?;
        if let (Some(files), Some(rows)) = (report.parquet_files, report.parquet_rows) {
            let encrypted = match report.parquet_encrypted_footers {
                Some(n) if n > 0 => format!(
                    " ({n} with an encrypted footer (Parquet modular encryption): rows not counted)"
                ),
                _ => String::new(),
            };
            out.line(format_args!(
                "{files} Parquet files opened, {rows} rows{encrypted}"
            ))?;
        }
    }
    Ok(if report.mismatches == 0 && !report.objects.is_empty() {
        code::OK
    } else {
        code::MISMATCH
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sealcommit").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_extra_positional_argument_is_an_error() {
        for args in [
            &["verify", "s3a://b/one", "s3a://b/two"][..],
            &["uploads", "list", "s3a://b/t", "s3a://b/u"],
            &["recover", "s3a://b/t", "extra"],
            &["version", "extra"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
            assert_eq!(e.exit_code(), 2);
            let last = args[args.len() - 1];
            assert!(e.to_string().contains(&format!("'{last}'")), "{e}");
        }
    }

    #[test]
    fn verbosity_counts_anywhere() {
        for (args, want) in [
            (&["verify", "s3a://b/t"][..], 0),
            (&["-v", "verify", "s3a://b/t"], 1),
            (&["verify", "s3a://b/t", "-v"], 1),
            (&["-vv", "verify", "s3a://b/t"], 2),
            (&["verify", "-vv", "s3a://b/t", "--json"], 2),
            (&["uploads", "list", "s3a://b/t", "--verbose"], 1),
            (&["recover", "-v", "-v", "s3a://b/t"], 2),
        ] {
            assert_eq!(parse(args).unwrap().verbose, want, "{args:?}");
        }
    }

    #[test]
    fn every_option_keeps_its_name() {
        let cli = parse(&[
            "verify",
            "s3a://b/t",
            "--expect-algorithm",
            "SSE-KMS",
            "--expect-key",
            "k",
            "--deep",
            "--json",
            "--no-progress",
            "--conf",
            "a=1",
            "--conf-file",
            "f1",
            "--conf",
            "b=2",
            "--conf-file",
            "f2",
        ])
        .unwrap();
        let Command::Verify(v) = cli.command else {
            panic!("not verify")
        };
        assert_eq!(v.uri, "s3a://b/t");
        assert_eq!(v.expect_algorithm.as_deref(), Some("SSE-KMS"));
        assert_eq!(v.expect_key.as_deref(), Some("k"));
        assert!(v.deep && v.output.json && v.output.no_progress);
        assert_eq!(v.conf.conf, ["a=1", "b=2"]);
        assert_eq!(
            v.conf.conf_file,
            [std::path::Path::new("f1"), "f2".as_ref()]
        );

        let cli = parse(&[
            "uploads",
            "abort",
            "s3a://b/t",
            "--older-than",
            "2h",
            "--job",
            "job-7",
            "--json",
            "--no-progress",
        ])
        .unwrap();
        let Command::Uploads(Uploads::Abort(u)) = cli.command else {
            panic!("not uploads abort")
        };
        assert_eq!(u.older_than, Some(Duration::from_secs(7200)));
        assert_eq!(u.job.as_deref(), Some("job-7"));

        let cli = parse(&["recover", "s3a://b/t", "--abort", "--force", "--json"]).unwrap();
        let Command::Recover(r) = cli.command else {
            panic!("not recover")
        };
        assert!(r.abort && r.force && r.json);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let e = parse(&["verify", "s3a://b/t", "--jsn"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("unexpected argument '--jsn'"), "{msg}");
        assert!(msg.contains("--json"), "{msg}"); // the suggestion

        let e = parse(&["uploads", "list", "s3a://b/t", "--older-than", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--older-than"), "{e}");

        let e = parse(&["verify"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["uploads", "s3a://b/t"]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let e = parse(&["frobnicate"]).unwrap_err();
        assert!(e.to_string().contains("'frobnicate'"), "{e}");
    }

    #[test]
    fn help_and_version_exit_0_and_list_the_exit_codes() {
        let e = parse(&["--help"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        let help = e.to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        for line in ["  0  done", "  1  verify", "  2  usage", "  3  recover"] {
            assert!(help.contains(line), "{help}");
        }
        let e = parse(&["--version"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        assert!(
            e.to_string().starts_with("sealcommit 0.1.0 (revision "),
            "{e}"
        );
    }
}
