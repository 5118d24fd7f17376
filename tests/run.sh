#!/usr/bin/env bash
# README command 2: the whole test suite on a fresh machine. Installs what is missing, builds,
# checks formatting and lints, runs the Rust unit tests, then the end-to-end suite against real
# Ceph RGW, SeaweedFS, nginx and Spark (the suite starts and stops the stores itself, once per
# pytest run; two runs at a time, see below) on every Spark line of tests/bed/lines.txt, each with
# the S3A its users pair with it:
#   3.5 (hadoop-aws 3.3.4, AWS SDK v1)  the whole suite
#   4.3 (hadoop-aws 3.5.0, SDK v2)      the whole suite but the packaging tests (test_packages,
#                                       test_pip run both 3.5 and 4.3 from the 3.5 run) and those
#                                       that run neither Spark nor S3A (test_bed, test_handles,
#                                       test_jni_boundary, and test_cli: the CLI is the same binary
#                                       on every line)
#   4.0 (3.4.1), 4.1 (3.4.2)            the field scenario and the stock failures, the line's S3A
#                                       alone and beside sealcommit, RocksDB's SST uploads
#                                       (test_lines), streaming
#                                       (stateful + file sink), magic mode, dynamic
#                                       partition overwrite, per-write keys
# Extra arguments go to every pytest run (e.g. `-k sse_c`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Every line's venv and jars before any test (the packaging tests use 4.3's venv too). The first
# install brings the system packages and the build tools; the Spark 4 lines' downloads (a pyspark
# wheel and an SDK bundle each) then run beside the build, network beside CPU.
pyspark_of() { awk -v line="$1" '$1 == line {print $2}' tests/bed/lines.txt; }
VENV=$(PYSPARK_VERSION=$(pyspark_of 3.5) bash tests/bed/install.sh | tail -n 1)
venvs=$(mktemp)
trap 'rm -f "$venvs"' EXIT
(for line in 4.0 4.1 4.3; do PYSPARK_VERSION=$(pyspark_of $line) bash tests/bed/install.sh | tail -n 1; done) >"$venvs" &
installs=$!
bash tests/bed/build.sh
echo "[test] cargo fmt --check" >&2
cargo fmt --all --check
echo "[test] cargo clippy -D warnings" >&2
cargo clippy --release --all-targets --all-features --quiet -- -D warnings
echo "[test] cargo test (the build's target: its dependencies are built already)" >&2
bash tests/bed/zigcargo.sh test --release --quiet
wait "$installs" || { echo "[test] installing the Spark 4 lines failed (above)" >&2; exit 1; }
{ read -r VENV40; read -r VENV41; read -r VENV43; } <"$venvs"

# The minimum on the lines between 3.5 and the newest (pytest node ids; parametrized ones whole).
LINE_TESTS=(
  tests/test_field_failure.py
  tests/test_lines.py
  tests/test_streaming.py::test_stateful_query_commits_checkpoints_and_sink_without_rename
  tests/test_magic.py::test_magic_partitioned_parquet_retries_overwrite_and_failures
  tests/test_write_path.py::test_dynamic_partition_overwrite_replaces_only_written_partitions
  tests/test_write_path.py::test_failed_dynamic_overwrite_keeps_every_partition
  tests/test_write_path.py::test_per_write_kms_keys_in_one_session
  tests/test_write_path.py::test_per_write_kms_keys_from_two_threads_at_once
)

# Two runs at a time, each with its own stores on its own slice of ports and its own scratch
# directories: 3.5's suite then 4.0's minimum, beside 4.3's suite then 4.1's minimum. Much of a
# run is waiting (JVM starts, leases, stalls), so two at once take far less than one after the
# other. Each run's output is printed whole when it ends.
out=$(mktemp -d)
trap 'rm -rf "$out" "$venvs"' EXIT
run() { # slice name venv pytest-args...
  local slice=$1 name=$2 venv=$3 t0=$SECONDS rc=0 log="$out/${2%% *}.log"
  shift 3
  echo "[test] pytest on Spark $name (real stores, real Spark) started; free disk: $(df -h --output=avail . | tail -n 1 | tr -d ' ')" >&2
  SEALCOMMIT_BED_PORT_SLICE=$slice "$venv/bin/pytest" "$@" -q -p no:cacheprovider -rfE --durations=12 \
    --basetemp="$out/tmp-${name%% *}" >"$log" 2>&1 || rc=$?
  # 5: extra arguments (e.g. -k) selected nothing on this line.
  [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ] || touch "$out/failed"
  { flock 9
    echo "[test] ---- Spark $name: $((SECONDS - t0)) s (pytest exit $rc) ----"
    cat "$log"
  } 9>"$out/print.lock" >&2
}
(run 0/2 "3.5 + hadoop-aws 3.3.4" "$VENV" tests "$@"
 run 0/2 "4.0 + hadoop-aws 3.4.1" "$VENV40" "${LINE_TESTS[@]}" "$@") &
first=$!
(run 1/2 "4.3 + hadoop-aws 3.5.0" "$VENV43" tests --ignore=tests/test_packages.py --ignore=tests/test_pip.py \
   --ignore=tests/test_bed.py --ignore=tests/test_handles.py --ignore=tests/test_cli.py \
   --ignore=tests/test_jni_boundary.py "$@"
 run 1/2 "4.1 + hadoop-aws 3.4.2" "$VENV41" "${LINE_TESTS[@]}" "$@") &
second=$!
wait "$first" "$second"
[ ! -e "$out/failed" ]
