//! The built binary writing into a pipe whose reader has gone (`sealcommit ... | head -1`): the
//! output ends quietly, no panic, the command's own exit code.

use std::process::Command;

/// Runs `sealcommit ARGS` with its stdout on a pipe whose reader exits first; the exit code and
/// what it wrote on stderr.
fn into_closed_pipe(args: &str) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_sealcommit");
    // `true` exits (closing the pipe) before the binary starts; bash reports the writer's code.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "(sleep 0.3; exec \"$0\" {args}) | true; echo \"rc=${{PIPESTATUS[0]}}\""
        ))
        .arg(bin)
        .env_remove("HADOOP_CONF_DIR")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rc = stdout
        .trim()
        .strip_prefix("rc=")
        .and_then(|c| c.parse().ok())
        .unwrap_or(-1);
    (rc, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn version_into_a_closed_pipe_exits_0_quietly() {
    let (rc, stderr) = into_closed_pipe("version");
    assert_eq!(rc, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn help_into_a_closed_pipe_exits_0_quietly() {
    for args in ["--help", "verify --help", "--version"] {
        let (rc, stderr) = into_closed_pipe(args);
        assert_eq!(rc, 0, "{args}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
}

#[test]
fn an_extra_argument_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_sealcommit"))
        .args(["verify", "s3a://b/one", "s3a://b/two"])
        .env_remove("HADOOP_CONF_DIR")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected argument 's3a://b/two'"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
