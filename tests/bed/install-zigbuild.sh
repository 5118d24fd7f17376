#!/usr/bin/env bash
# Installs the pinned zig and cargo-zigbuild (both from PyPI) into their own venv under
# $SEALCOMMIT_CACHE (default ~/.cache/sealcommit) and prints the venv's bin directory. Idempotent:
# a second run only checks. Used by tests/bed/install.sh, tests/bed/build.sh and
# rust/jni/build-native.sh: the jar's Linux libraries are linked against glibc 2.17 with zig.
set -euo pipefail

ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
CACHE=${SEALCOMMIT_CACHE:-$HOME/.cache/sealcommit}
VENV="$CACHE/zigbuild-$ZIGLANG_VERSION-$CARGO_ZIGBUILD_VERSION"

if [ ! -x "$VENV/bin/cargo-zigbuild" ] || ! "$VENV/bin/python" -m ziglang version >/dev/null 2>&1; then
  printf '[install] zigbuild venv %s (ziglang %s, cargo-zigbuild %s)\n' \
    "$VENV" "$ZIGLANG_VERSION" "$CARGO_ZIGBUILD_VERSION" >&2
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
fi
echo "$VENV/bin"
