#!/usr/bin/env bash
# Builds what the tests and the field scenario run: the release CLI (host build, shared with
# `cargo test` and clippy), libsealcommit.so linked against glibc 2.17 with zig (so it loads on
# Ubuntu 20.04 Spark images, Amazon Linux 2, RHEL 7/8 ...), the jar that bundles it under
# native/linux-x86_64/, and build/repo/, that jar as a Maven repository. Incremental: a no-op build
# takes seconds. Other platforms' libraries (linux-aarch64, darwin-*) are added to the jar on a
# release machine: rust/jni/build-native.sh (then `gradle publish -x jar`, docs/BUILDING.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
# The oldest glibc the bundled library may need (tests/test_native.py checks it too).
GLIBC=2.17
echo "[build] cargo build --release (CLI)" >&2
cargo build --release --quiet --workspace --exclude sealcommit-jni
ZIGBIN=$(bash tests/bed/install-zigbuild.sh)
echo "[build] cargo zigbuild --release -p sealcommit-jni --target x86_64-unknown-linux-gnu.$GLIBC" >&2
# cargo-zigbuild runs the pinned PyPI zig as `<venv python> -m ziglang` (not a zig on PATH).
CARGO_ZIGBUILD_PYTHON_PATH="$ZIGBIN/python3" "$ZIGBIN/cargo-zigbuild" zigbuild --release --quiet \
  -p sealcommit-jni --target "x86_64-unknown-linux-gnu.$GLIBC"
lib=target/x86_64-unknown-linux-gnu/release/libsealcommit.so
need=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ "$(printf '%s\n%s\n' "$need" "$GLIBC" | sort -V | tail -n 1)" != "$GLIBC" ]; then
  echo "[build] $lib needs GLIBC_$need, more than $GLIBC" >&2
  exit 1
fi
echo "[build] gradle jar publish" >&2
# A failed jar build must fail the build (not leave an older jar in place). `publish` then lays
# the same jar, a sources jar and a dependency-free pom out as a Maven repository in build/repo
# (for `spark-submit --packages io.sealcommit:sealcommit:0.1.0 --repositories file://...`).
status=0
out=$(gradle --no-daemon --quiet jar publish 2>&1) || status=$?
printf '%s\n' "$out" | grep -v -E '^(openjdk|OpenJDK)|^$' >&2 || true
[ "$status" -eq 0 ] || { echo "[build] gradle jar publish failed ($status)" >&2; exit "$status"; }
test -s build/libs/sealcommit-0.1.0.jar
cmp -s build/libs/sealcommit-0.1.0.jar build/repo/io/sealcommit/sealcommit/0.1.0/sealcommit-0.1.0.jar ||
  { echo "[build] build/repo does not hold build/libs/sealcommit-0.1.0.jar" >&2; exit 1; }
