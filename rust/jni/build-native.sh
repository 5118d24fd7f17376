#!/usr/bin/env bash
# Builds libsealcommit for other platforms and adds each to the jar as native/<os>-<arch>/, on a
# release machine (docs/BUILDING.md). Run it after `bash tests/bed/build.sh`, which builds the jar
# with its linux-x86_64 library; a later `gradle jar` rebuilds the jar without the added ones.
#
#   rust/jni/build-native.sh [--jar JAR | --no-jar] PLATFORM...
#       PLATFORM: linux-x86_64, linux-aarch64 (both linked against glibc 2.17 by cargo zigbuild),
#       darwin-x86_64, darwin-aarch64 (cargo on a Mac, cargo zigbuild elsewhere).
#       Each library is also left in target/native/<platform>/.
#   rust/jni/build-native.sh [--jar JAR] --add PLATFORM FILE
#       adds a library built elsewhere (e.g. a .dylib built on a Mac with --no-jar).
#
# Each target's Rust standard library must be installed (`rustup target add <triple>`); the
# script stops with that advice when it is not.
set -euo pipefail
cd "$(dirname "$0")/../.."

GLIBC=2.17
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
JAR="build/libs/sealcommit-$VERSION.jar"
die() { printf '[build-native] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[build-native] %s\n' "$*" >&2; }

usage() { sed -n '6,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

triple() { # platform -> Rust target triple (without the glibc suffix)
  case "$1" in
    linux-x86_64) echo x86_64-unknown-linux-gnu ;;
    linux-aarch64) echo aarch64-unknown-linux-gnu ;;
    darwin-x86_64) echo x86_64-apple-darwin ;;
    darwin-aarch64) echo aarch64-apple-darwin ;;
    *) die "unknown platform '$1' (known: linux-x86_64 linux-aarch64 darwin-x86_64 darwin-aarch64)" ;;
  esac
}
libname() { case "$1" in darwin-*) echo libsealcommit.dylib ;; *) echo libsealcommit.so ;; esac; }

add_to_jar() { # platform file
  local platform=$1 file=$2 stage
  [ -s "$JAR" ] || die "$JAR is missing: run 'bash tests/bed/build.sh' first (or pass --jar / --no-jar)"
  command -v jar >/dev/null || die "no 'jar' command (a JDK is needed)"
  stage=$(mktemp -d)
  mkdir -p "$stage/native/$platform"
  cp "$file" "$stage/native/$platform/$(libname "$platform")"
  jar uf "$JAR" -C "$stage" "native/$platform/$(libname "$platform")"
  rm -rf "$stage"
  log "added native/$platform/$(libname "$platform") to $JAR"
}

check_glibc() { # file: its highest GLIBC_ symbol version must be <= $GLIBC
  local need
  need=$(readelf -W --version-info --dyn-syms "$1" | grep -o 'GLIBC_[0-9.]*[0-9]' | sed 's/GLIBC_//' |
    sort -uV | tail -n 1)
  [ -n "$need" ] || die "$1 has no GLIBC symbol versions: not a glibc library?"
  [ "$(printf '%s\n%s\n' "$need" "$GLIBC" | sort -V | tail -n 1)" = "$GLIBC" ] ||
    die "$1 needs GLIBC_$need, more than $GLIBC"
  log "$1 needs glibc $need at most"
}

check_arch() { # platform file: the library is for that platform's OS and CPU
  local want got
  case "$1" in
    linux-x86_64) want='X86-64' ;;
    linux-aarch64) want='AArch64' ;;
    darwin-*)
      # Mach-O 64-bit (cffaedfe) or a universal binary (cafebabe); the CPU is not checked.
      got=$(od -An -tx1 -N4 "$2" | tr -d ' \n')
      [ "$got" = cffaedfe ] || [ "$got" = cafebabe ] || die "$2 is not a Mach-O library"
      return 0 ;;
  esac
  got=$(readelf -h "$2" 2>/dev/null | sed -n 's/^ *Machine: *//p')
  case "$got" in *"$want"*) ;; *) die "$2 is not a $1 library (ELF machine: ${got:-not ELF})" ;; esac
}

build() { # platform -> path of the built library
  local platform=$1 t libdir out
  t=$(triple "$platform")
  # This machine's toolchain may have only its own target's std (no rustup): say so plainly.
  libdir=$(rustc --print target-libdir --target "$t" 2>/dev/null) || libdir=
  if [ -z "$libdir" ] || ! compgen -G "$libdir/libstd-*.rlib" >/dev/null; then
    die "the Rust standard library for $t is not installed for $(rustc -V), so $platform cannot be \
built here. Install it with 'rustup target add $t' (a rustup toolchain is needed), or build on a \
machine that has it (docs/BUILDING.md)."
  fi
  local cmd
  case "$platform" in
    linux-*) cmd=(zigbuild --target "$t.$GLIBC") ;;
    darwin-*) if [ "$(uname -s)" = Darwin ]; then cmd=(build --target "$t"); else cmd=(zigbuild --target "$t"); fi ;;
  esac
  log "cargo ${cmd[*]} --release -p sealcommit-jni"
  if [ "${cmd[0]}" = zigbuild ]; then
    local zigbin
    zigbin=$(bash tests/bed/install-zigbuild.sh)
    # The pinned PyPI zig, run as `<venv python> -m ziglang` (not a zig on PATH).
    CARGO_ZIGBUILD_PYTHON_PATH="$zigbin/python3" "$zigbin/cargo-zigbuild" "${cmd[@]}" --release \
      -p sealcommit-jni >&2
  else
    cargo "${cmd[@]}" --release -p sealcommit-jni >&2
  fi
  out="target/$t/release/$(libname "$platform")"
  [ -s "$out" ] || die "cargo did not produce $out"
  check_arch "$platform" "$out"
  case "$platform" in linux-*) check_glibc "$out" ;; esac
  mkdir -p "target/native/$platform"
  cp "$out" "target/native/$platform/"
  echo "$out"
}

use_jar=1
[ $# -gt 0 ] || usage
while [ $# -gt 0 ]; do
  case "$1" in
    --jar) JAR=${2:?--jar needs a path}; shift 2 ;;
    --no-jar) use_jar=0; shift ;;
    --add)
      [ $# -eq 3 ] || usage
      triple "$2" >/dev/null
      [ -s "$3" ] || die "$3 is missing or empty"
      check_arch "$2" "$3"
      case "$2" in linux-*) check_glibc "$3" ;; esac
      add_to_jar "$2" "$3"
      exit 0 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage
for platform in "$@"; do triple "$platform" >/dev/null; done
for platform in "$@"; do
  lib=$(build "$platform")
  if [ "$use_jar" = 1 ]; then add_to_jar "$platform" "$lib"; fi
done
