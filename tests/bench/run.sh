#!/usr/bin/env bash
# The benchmark suite (docs/BENCHMARKS.md), on this machine. Not part of the test command: it takes
# well over an hour here and asserts nothing. Installs what is missing (as the tests do, plus
# spark-hadoop-cloud for S3A's committers in Spark and matplotlib for the charts), builds the jar and
# `sealcommit` with its `bench` command, measures, then renders docs/BENCHMARKS.md and the charts.
# Arguments go to bench.py: `--quick` for a smoke run, `--only batch,streaming,...` for a part.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=$(SEALCOMMIT_EXTRA_JARS="org.apache.spark:spark-hadoop-cloud_2.12:3.5.7" bash tests/bed/install.sh | tail -n 1)
# The peer's line (bench.py PEER_LINE): Spark 4.1 with S3A 3.4.2 on SDK v2, and spark-hadoop-cloud.
PYSPARK_VERSION=$(awk '$1 == "4.1" {print $2}' tests/bed/lines.txt) bash tests/bed/install.sh >/dev/null
"$VENV/bin/python" -c "import matplotlib" 2>/dev/null || "$VENV/bin/pip" install -q --disable-pip-version-check matplotlib
bash tests/bed/build.sh
echo "[bench] cargo build --release -p sealcommit-cli --features bench" >&2
cargo build --release --quiet -p sealcommit-cli --features bench
"$VENV/bin/python" tests/bench/bench.py "$@"
"$VENV/bin/python" tests/bench/report.py
