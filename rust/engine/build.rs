//! Records the git revision the engine is built from (`SEALCOMMIT_REVISION`, "unknown" outside a
//! git checkout), so the CLI, the JNI library's load line and `_SUCCESS` can say what runs.
//! A release build from a source archive may set `SEALCOMMIT_REVISION` itself.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SEALCOMMIT_REVISION");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../..");
    let rev = std::env::var("SEALCOMMIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git_revision(&root))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SEALCOMMIT_REVISION={rev}");
    // Build again when HEAD moves: HEAD itself, the branch it names, packed refs. In a linked
    // worktree `.git` is a file: HEAD is in the worktree's git dir, branches in the common one.
    let dir = |arg: &str| git(&root, &["rev-parse", arg]).map(|d| root.join(d));
    let (Some(git_dir), Some(common)) = (dir("--git-dir"), dir("--git-common-dir")) else {
        return;
    };
    let mut watch = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD")) {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            watch.push(common.join(r));
        }
    }
    for f in watch.iter().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

fn git_revision(root: &Path) -> Option<String> {
    git(root, &["rev-parse", "--short=12", "HEAD"])
}

/// `git <args>` in `root`: its trimmed output, if it succeeded and printed something.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
