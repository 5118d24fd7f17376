#!/usr/bin/env bash
# README command 2: the whole test suite on a fresh machine. Installs what is missing, builds,
# checks formatting and lints, runs the Rust unit tests, then the end-to-end suite against real
# Ceph RGW, SeaweedFS, nginx and Spark (the suite starts and stops the stores itself).
# Extra arguments go to pytest (e.g. `-k sse_c`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash tests/bed/install.sh | tail -n 1)
# Spark 4.x too, before any test: the packaging tests (test_packages, test_pip) run on both lines.
VENV4=$(PYSPARK_VERSION=4.3.0 bash tests/bed/install.sh | tail -n 1)
bash tests/bed/build.sh
echo "[test] cargo fmt --check" >&2
cargo fmt --all --check
echo "[test] cargo clippy -D warnings" >&2
cargo clippy --release --all-targets --quiet -- -D warnings
echo "[test] cargo test" >&2
cargo test --release --quiet
echo "[test] pytest on Spark 3.5 (real stores, real Spark)" >&2
"$VENV/bin/pytest" tests -q -p no:cacheprovider -rfE "$@"
# The same jar on Spark 4.x (Scala 2.13): the batch write, magic, speculation, MapReduce,
# streaming, partition-value and logging suites again.
echo "[test] pytest on Spark 4.3 (same jar)" >&2
exec "$VENV4/bin/pytest" tests/test_batch.py tests/test_write_path.py tests/test_magic.py \
  tests/test_speculation.py tests/test_mapreduce.py tests/test_sse_c.py tests/test_streaming.py \
  tests/test_partition_values.py tests/test_logging.py \
  -q -p no:cacheprovider -rfE "$@"
