#!/usr/bin/env bash
# Builds what the tests and the field scenario run: the release CLI
# (target/x86_64-unknown-linux-gnu/release/sealcommit) and libsealcommit.so, both linked against
# glibc 2.17 with zig (so they run on Ubuntu 20.04 Spark images, Amazon Linux 2, RHEL 7/8 ...) in
# one build whose dependencies `cargo test` reuses (tests/bed/zigcargo.sh), the jar that bundles it under
# native/linux-x86_64/, and build/repo/, that jar as a Maven repository. Incremental: a no-op build
# takes seconds. Other platforms' libraries (linux-aarch64, darwin-*) are added to the jar on a
# release machine: rust/jni/build-native.sh (then `gradle publish -x jar`, docs/BUILDING.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
# One build for everything, linked by zig against glibc 2.17: the CLI and the JNI library (so both
# run on old distributions) and, in tests/run.sh, the Rust tests share its dependency builds.
GLIBC=$(bash tests/bed/zigcargo.sh glibc)
echo "[build] cargo zigbuild --release --workspace --target x86_64-unknown-linux-gnu.$GLIBC" >&2
bash tests/bed/zigcargo.sh zigbuild --release --quiet --workspace
for bin in target/x86_64-unknown-linux-gnu/release/libsealcommit.so target/x86_64-unknown-linux-gnu/release/sealcommit; do
  need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
  if [ "$(printf '%s\n%s\n' "$need" "$GLIBC" | sort -V | tail -n 1)" != "$GLIBC" ]; then
    echo "[build] $bin needs GLIBC_$need, more than $GLIBC" >&2
    exit 1
  fi
done
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
