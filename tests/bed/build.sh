#!/usr/bin/env bash
# Builds what the tests and the field scenario run: the release engine (libsealcommit.so and the
# sealcommit CLI) and the jar that bundles the library. Incremental: a no-op build takes seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "[build] cargo build --release" >&2
cargo build --release --quiet
echo "[build] gradle jar" >&2
gradle --no-daemon --quiet jar 2>&1 | grep -v -E '^(openjdk|OpenJDK)' >&2 || true
test -s build/libs/sealcommit-0.1.0.jar
