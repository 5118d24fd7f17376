#!/usr/bin/env bash
# Builds the pip package: build/python/sealcommit-<version>-py3-none-any.whl, carrying
# build/libs/sealcommit-<version>.jar (with its native libraries) as it is.
# Run after the jar is built (tests/bed/build.sh). The version is build.gradle's; nothing else
# holds it. Needs python3 with pip; pip fetches the build backend (hatchling) from PyPI once.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

version=$(sed -n "s/^version = '\([^']*\)'.*/\1/p" build.gradle)
[ -n "$version" ] || { echo "python/build.sh: no \"version = '...'\" line in build.gradle" >&2; exit 1; }
jar=build/libs/sealcommit-$version.jar
[ -s "$jar" ] || { echo "python/build.sh: $jar missing: build the jar first (bash tests/bed/build.sh)" >&2; exit 1; }
# The listing first: `grep -q` in a pipe would stop reading early, and with pipefail unzip's
# SIGPIPE would fail the check at random.
listing=$(unzip -Z1 "$jar")
grep -q '^native/[a-z0-9_-]*/libsealcommit\.' <<<"$listing" \
  || { echo "python/build.sh: $jar carries no native library under native/" >&2; exit 1; }

pkg=python/src/sealcommit
rm -rf "$pkg/jars"
mkdir -p "$pkg/jars"
cp "$jar" "$pkg/jars/"
printf '# Written by python/build.sh from build.gradle; not in git.\n__version__ = "%s"\n' "$version" \
  >"$pkg/_version.py"

out=build/python
mkdir -p "$out"
rm -f "$out"/sealcommit-*.whl
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$out" python/
wheel=$out/sealcommit-$version-py3-none-any.whl
[ -s "$wheel" ] || { echo "python/build.sh: pip wrote no $wheel: $(ls "$out")" >&2; exit 1; }
# The jar inside the wheel is byte for byte the one built.
"$PYTHON" - "$wheel" "$jar" "$version" <<'PY'
import hashlib, sys, zipfile
wheel, jar, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    inside = z.read(f"sealcommit/jars/sealcommit-{version}.jar")
if hashlib.sha256(inside).digest() != hashlib.sha256(open(jar, "rb").read()).digest():
    sys.exit(f"python/build.sh: the jar in {wheel} differs from {jar}")
PY
echo "$wheel"
