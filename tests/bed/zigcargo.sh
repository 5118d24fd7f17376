#!/usr/bin/env bash
# `cargo <command> --target x86_64-unknown-linux-gnu.2.17 <args>` through cargo-zigbuild and the
# pinned zig (tests/bed/install-zigbuild.sh): what build.sh builds (the CLI and libsealcommit.so)
# and what `cargo test` runs share one dependency build, linked against glibc 2.17.
#   bash tests/bed/zigcargo.sh zigbuild --release --workspace
#   bash tests/bed/zigcargo.sh test --release
#   bash tests/bed/zigcargo.sh glibc       (prints the glibc version)
set -euo pipefail
# The oldest glibc the built binaries may need (tests/bed/build.sh and tests/test_native.py check it).
GLIBC=2.17
TARGET="x86_64-unknown-linux-gnu.$GLIBC"
command=$1
shift
[ "$command" != glibc ] || { echo "$GLIBC"; exit 0; }
ZIGBIN=$(bash "$(dirname "$0")/install-zigbuild.sh")
# cargo-zigbuild runs the pinned PyPI zig as `<venv python> -m ziglang` (not a zig on PATH).
CARGO_ZIGBUILD_PYTHON_PATH="$ZIGBIN/python3" exec "$ZIGBIN/cargo-zigbuild" "$command" --target "$TARGET" "$@"
