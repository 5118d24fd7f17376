"""The engine logs where Spark does: through SLF4J (Spark's log4j2) under
`io.sealcommit.engine.<module>`, at the levels the log4j2 configuration gives, and never on raw
stderr. Each case is a batch write in its own driver JVM with an operator's log4j2.properties that
sends every log line to a file, so what shows on the driver's stderr did not go through log4j."""

from __future__ import annotations

import json
import re

from tests.conftest import list_keys, log4j_config, run_batch_driver
from tests.test_cli import cli

BUCKET = "direct-http"
ROWS = 400


def write_with_logging(bed, s3, prefix, tmp_path, levels: dict) -> tuple[str, str, list[str]]:
    """A 4-task Parquet write with `levels`; (log4j file, raw stderr, data file keys)."""
    log_file = tmp_path / "spark.log"
    config = log4j_config(tmp_path / "log4j2.properties", levels, target=str(log_file))
    dest = f"s3a://{BUCKET}/{prefix}/out"
    out = run_batch_driver(bed, 300, dest=dest, first=0, rows=ROWS, mode="errorifexists",
                           log_config=str(config))
    assert "DONE" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    data = [k for k in list_keys(s3, BUCKET, f"{prefix}/out/") if k.endswith(".parquet")]
    assert len(data) == 4, data  # one file per task: 4 partitions of ROWS rows
    deep = cli(bed, "verify", dest, "--deep", "--json")  # every row there, under the session key
    assert deep.returncode == 0 and json.loads(deep.stdout)["parquet_rows"] == ROWS, deep.stdout[-2000:]
    return log_file.read_text(), out.stderr, data


def engine_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " io.sealcommit.engine" in line]


def assert_nothing_on_raw_stderr(stderr: str, prefix: str) -> None:
    """Neither engine records nor the old `[sealcommit <time>]` stderr format bypass log4j."""
    raw = [line for line in stderr.splitlines()
           if "io.sealcommit" in line or line.startswith("[sealcommit") or prefix in line]
    assert raw == [], raw[:10]


def test_debug_shows_every_request_under_the_module_loggers(bed, s3, prefix, tmp_path):
    log, stderr, data = write_with_logging(bed, s3, prefix, tmp_path, {"io.sealcommit": "debug"})
    lines = engine_lines(log)
    # The load line (Java) and the engine's records (Rust) in log4j's format and file.
    assert re.search(r"^INFO io\.sealcommit\.NativeLoader: sealcommit \S+ \(revision \w+\) loaded", log, re.M), \
        log[:3000]
    for key in data:
        for op in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
            line = f"DEBUG io.sealcommit.engine.store: {op} s3a://{BUCKET}/{key}"
            assert line in lines, f"missing {line!r} in {lines[:20]}"
    committed = [line for line in lines if line.startswith("INFO io.sealcommit.engine.commit: task ")]
    assert len(committed) == 4, lines
    assert all(" uploaded 1 files " in line for line in committed), committed
    job = [line for line in lines if line.startswith("INFO io.sealcommit.engine.commit: job ")]
    assert len(job) == 1 and " committed 4 files " in job[0] and f"s3a://{BUCKET}/{prefix}/out" in job[0], job
    assert_nothing_on_raw_stderr(stderr, prefix)


def test_warn_shows_no_engine_line(bed, s3, prefix, tmp_path):
    log, stderr, _ = write_with_logging(bed, s3, prefix, tmp_path, {"io.sealcommit": "warn"})
    assert engine_lines(log) == []
    assert "io.sealcommit.NativeLoader" not in log  # an INFO line
    assert_nothing_on_raw_stderr(stderr, prefix)


def test_levels_are_per_module(bed, s3, prefix, tmp_path):
    log, stderr, data = write_with_logging(
        bed, s3, prefix, tmp_path, {"io.sealcommit": "warn", "io.sealcommit.engine.store": "debug"})
    lines = engine_lines(log)
    assert lines, log[-3000:]
    # Only the store's requests: the commit module's INFO lines stay off.
    assert {line.split(":")[0] for line in lines} == {"DEBUG io.sealcommit.engine.store"}, lines[:20]
    assert sum(f"s3a://{BUCKET}/{data[0]}" in line for line in lines) == 3, lines  # Create, part, Complete
    assert_nothing_on_raw_stderr(stderr, prefix)
