"""Crash-safe job commit on real RGW with SSE-KMS: a driver SIGKILLed at each step of its job
commit (after the journal, after 2 of 4 Completes, before replacing the old data, before
`_SUCCESS`) is recovered by `sealcommit recover` (complete, verified output), by
`sealcommit recover --abort` (nothing new visible, the old data intact) or by the next job's
setup on the same destination."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_all_encrypted, list_keys, pending_uploads, run_batch_driver, success_json
from tests.test_cli import cli

BUCKET = "direct-http"
OLD, NEW = 1000, 400  # rows before, rows the killed overwrite writes


def killed_overwrite(bed, dest: str, point: str) -> str:
    """Runs an overwrite of `dest` in its own JVM with a kill point; returns its output."""
    out = run_batch_driver(bed, 300, dest=dest, first=10_000, rows=NEW, mode="overwrite", options={
        "sealcommit.fault.job-commit": f"kill:{point}", "sealcommit.commit.parallelism": "1"})
    assert "DONE" not in out.stdout, "the driver was not killed"
    assert f"killing this process at {point}" in out.stderr, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def ids(spark, path) -> list[int]:
    return sorted(r.id for r in spark.read.parquet(path).select("id").collect())


def journals(s3, prefix):
    return [k for k in list_keys(s3, BUCKET, f"{prefix}/_sealcommit/") if k.endswith(".journal")]


POINTS = ["after-journal", "after-completes:2", "before-replace", "before-success"]
# Every kill point with each CLI path; the next job's roll forward (the same code) at two.
CASES = [(how, p) for how in ("recover", "abort") for p in POINTS] + [
    ("next-job", "after-completes:2"), ("next-job", "before-success")]


@pytest.mark.parametrize("how,point", CASES, ids=[f"{h}-{p.replace(':', '')}" for h, p in CASES])
def test_killed_job_commit_is_recovered(spark, s3, bed, prefix, point, how):
    dest = f"s3a://{BUCKET}/{prefix}"
    spark.range(0, OLD, 1, 2).selectExpr("id", "id * 2 AS v").write.parquet(dest)
    killed_overwrite(bed, dest, point)
    assert len(journals(s3, prefix)) == 1, "the killed commit left its journal"
    published = point == "before-success"  # old data already replaced: only forward is safe

    # The journal names the uploads still pending; `uploads abort` leaves them to recover.
    listed = cli(bed, "uploads", "list", dest, "--json")
    assert listed.returncode == 0, listed.stderr
    in_journal = [u for u in json.loads(listed.stdout)["uploads"] if u["found_in"] == "journal"]
    pending = {"after-journal": 4, "after-completes:2": 2}.get(point, 0)
    assert len(in_journal) == pending, listed.stdout
    if how == "recover":
        left = cli(bed, "uploads", "abort", dest)
        assert "0 uploads aborted" in left.stdout, left.stdout
        assert ("interrupted job commits" in left.stderr) == (pending > 0), left.stderr

    if how == "abort" and published:
        out = cli(bed, "recover", dest, "--abort")
        assert out.returncode == 2 and "would lose data" in out.stderr, out.stdout + out.stderr
        how = "recover"
    if how == "abort":
        out = cli(bed, "recover", dest, "--abort", "--json")
        assert out.returncode == 0, out.stderr
        [r] = json.loads(out.stdout)
        assert r["action"] == "rolled back", r
        assert ids(spark, dest) == list(range(OLD)), "the old data is intact, nothing new visible"
    elif how == "recover":
        out = cli(bed, "recover", dest, "--json")
        assert out.returncode == 0, out.stderr
        [r] = json.loads(out.stdout)
        assert (r["action"], r["files"]) == ("completed", 4), r
        assert ids(spark, dest) == list(range(10_000, 10_000 + NEW))
        seal = success_json(s3, BUCKET, prefix)["sealcommit"]
        assert len(seal["files"]) == 4 and seal["verified"]
    else:
        # The next job on the destination finishes the interrupted commit first, then appends.
        spark.range(20_000, 20_010, 1, 1).selectExpr("id", "id * 2 AS v").write.mode("append").parquet(dest)
        assert ids(spark, dest) == list(range(10_000, 10_000 + NEW)) + list(range(20_000, 20_010))

    assert journals(s3, prefix) == []
    assert pending_uploads(s3, BUCKET, prefix) == []
    assert_all_encrypted(s3, BUCKET, prefix)
    assert cli(bed, "recover", dest).stdout.strip().endswith("0 interrupted job commits found")
