//! JNI exports for `io.sealcommit.Native`, one module per part of the Java API (`job`, `stream`,
//! `magic`, `checkpoint`, `library`). No logic lives here: every export is one call of `guard`
//! (`bridge`) around an `intern_*` function that converts the arguments (`conv`), calls the
//! engine on its shared runtime and returns a Rust value or an error. The guard converts the
//! value, or throws: `FileNotFoundException`, `FileAlreadyExistsException` or
//! `io.sealcommit.SealCommitException` (all `IOException`s; the last with operation, bucket,
//! key, HTTP status, S3 error code and whether a retry can help), `IllegalStateException` for a
//! handle used after close, `RuntimeException` for a panic. Nothing unwinds into the JVM.
//! Handles and their lifetime contract: `handles`.

mod bridge;
mod checkpoint;
mod conv;
mod handles;
mod job;
mod library;
mod logger;
mod magic;
mod stream;
