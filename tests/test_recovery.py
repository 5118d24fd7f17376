"""Crash-safe job commit on real RGW with SSE-KMS: a driver SIGKILLed at each step of its job
commit (after the journal, after 2 of 4 Completes, before replacing the old data, before
`_SUCCESS`) is recovered by `sealcommit recover` (complete, verified output), by
`sealcommit recover --abort` (nothing new visible, the old data intact) or by the next job's
setup on the same destination, once its lease has expired. A commit whose driver is alive
(paused in the middle of its commit, still renewing its lease) is never touched: another job on
the destination leaves it alone and `sealcommit recover` refuses it unless `--force`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import (ROOT, assert_all_encrypted, bed_info, list_keys, log4j_config, pending_uploads,
                            run_batch_driver, success_json)
from tests.test_cli import cli

BUCKET = "direct-http"
OLD, NEW = 1000, 400  # rows before, rows the killed overwrite writes
KILLED_LEASE = 4  # seconds: the lease of killed drivers, waited out before recovering


def killed_overwrite(bed, dest: str, point: str) -> str:
    """Runs an overwrite of `dest` in its own JVM with a kill point, then waits until the dead
    driver's lease has expired by the store's clock (its last renewal was at most at the kill;
    the store's Date counts whole seconds); returns its output."""
    out = run_batch_driver(bed, 300, dest=dest, first=10_000, rows=NEW, mode="overwrite", options={
        "sealcommit.fault.job-commit": f"kill:{point}", "sealcommit.commit.parallelism": "1",
        "sealcommit.journal.lease": f"{KILLED_LEASE}s"})
    assert "DONE" not in out.stdout, "the driver was not killed"
    assert f"killing this process at {point}" in out.stderr, out.stdout[-2000:] + out.stderr[-3000:]
    time.sleep(KILLED_LEASE + 2)
    return out.stdout + out.stderr


def ids(spark, path) -> list[int]:
    return sorted(r.id for r in spark.read.parquet(path).select("id").collect())


def journals(s3, prefix):
    return [k for k in list_keys(s3, BUCKET, f"{prefix}/_sealcommit/") if k.endswith(".journal")]


def leases(s3, prefix):
    return [k for k in list_keys(s3, BUCKET, f"{prefix}/_sealcommit/") if k.endswith(".lease")]


def read_json(s3, key) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def assert_success_lists_only_what_is_there(s3, prefix):
    """Every file `_SUCCESS` names (both lists) exists, with the recorded size."""
    success = success_json(s3, BUCKET, prefix)
    sizes = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{prefix}/") for o in page.get("Contents", [])}
    missing = [f["key"] for f in success["sealcommit"]["files"] if sizes.get(f["key"]) != f["size"]]
    missing += [n for n in success["filenames"] if n.lstrip("/") not in sizes]
    assert not missing, f"_SUCCESS of job {success['jobId']} lists files that are not there: {missing}"
    return success


POINTS = ["after-journal", "after-completes:2", "before-replace", "before-success"]
# Every kill point with each CLI path; the next job's roll forward (the same code) at two.
CASES = [(how, p) for how in ("recover", "abort") for p in POINTS] + [
    ("next-job", "after-completes:2"), ("next-job", "before-success")]


@pytest.mark.parametrize("how,point", CASES, ids=[f"{h}-{p.replace(':', '')}" for h, p in CASES])
def test_killed_job_commit_is_recovered(spark, s3, bed, prefix, point, how):
    dest = f"s3a://{BUCKET}/{prefix}"
    spark.range(0, OLD, 1, 2).selectExpr("id", "id * 2 AS v").write.parquet(dest)
    killed_overwrite(bed, dest, point)
    [journal] = journals(s3, prefix)  # the killed commit left its journal, naming its owner and lease
    j = read_json(s3, journal)
    assert j["owner"]["pid"] > 0 and j["owner"]["host"] and j["owner"]["driver_id"], j["owner"]
    assert j["lease"] == {"key": f"{prefix}/_sealcommit/{j['job_id']}.lease", "lease_ms": KILLED_LEASE * 1000,
                          "renew_ms": KILLED_LEASE * 1000 // 3}, j["lease"]
    assert leases(s3, prefix) == [j["lease"]["key"]], "the dead driver's lease object is still there"
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
        assert (r["action"], r["lease"]) == ("rolled back", "expired"), r
        assert ids(spark, dest) == list(range(OLD)), "the old data is intact, nothing new visible"
    elif how == "recover":
        out = cli(bed, "recover", dest, "--json")
        assert out.returncode == 0, out.stderr
        [r] = json.loads(out.stdout)
        assert (r["action"], r["files"], r["lease"]) == ("completed", 4, "expired"), r
        assert ids(spark, dest) == list(range(10_000, 10_000 + NEW))
        seal = success_json(s3, BUCKET, prefix)["sealcommit"]
        assert len(seal["files"]) == 4 and seal["verified"]
    else:
        # The next job on the destination finishes the interrupted commit first, then appends.
        spark.range(20_000, 20_010, 1, 1).selectExpr("id", "id * 2 AS v").write.mode("append").parquet(dest)
        assert ids(spark, dest) == list(range(10_000, 10_000 + NEW)) + list(range(20_000, 20_010))

    assert journals(s3, prefix) == [] and leases(s3, prefix) == []
    assert pending_uploads(s3, BUCKET, prefix) == []
    assert_all_encrypted(s3, BUCKET, prefix)
    assert_success_lists_only_what_is_there(s3, prefix)
    assert cli(bed, "recover", dest).stdout.strip().endswith("0 interrupted job commits found")


class Driver:
    """tests/batch_driver.py in its own JVM, running in the background; its stderr is collected
    as it comes so a test can wait for a line."""

    def __init__(self, bed, **info):
        # The engine's WARN lines (e.g. "pausing at …") on stderr, through log4j like Spark's own.
        info.setdefault("log_config", str(log4j_config(bed.base / "driver-log4j2.properties",
                                                       {"io.sealcommit": "info"})))
        self.p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "batch_driver.py")],
                                  env={**os.environ, "BATCH_DRIVER": json.dumps({**bed_info(bed), **info})},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.reader = threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not any(text in line for line in list(self.err)):
            assert self.p.poll() is None, f"the driver ended before '{text}': {self.output()[-4000:]}"
            assert time.monotonic() < end, f"no '{text}' in {timeout} s: {self.output()[-4000:]}"
            time.sleep(0.2)

    def finish(self, timeout: float) -> tuple[int, str]:
        out = self.p.stdout.read() if self.p.stdout else ""
        self.p.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return self.p.returncode, out + "".join(self.err)

    def output(self) -> str:
        return "".join(self.err)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


PAUSE = 30  # seconds job A stalls in the middle of its commit (longer than its lease: renewed)
LIVE_LEASE = 6  # seconds, renewed every 2 s


def ids_and_count(spark, path, expected: list[int]) -> list[int]:
    got = ids(spark, path)
    assert len(got) == len(expected), f"{len(got)} rows, expected {len(expected)}"
    assert got == expected
    return got


@pytest.mark.parametrize("outcome", ["a-fails", "a-finishes"])
def test_a_live_commit_is_never_touched(spark, s3, bed, prefix, outcome):
    """Job A stalls after 2 of its 4 Completes (its driver alive, renewing its lease); job B
    writes to the same destination meanwhile, and `sealcommit recover` is asked to recover it.

    * `a-fails`: A is an overwrite of the old rows and fails right after the stall (injected),
      so it rolls back. Had B's setup rolled A forward, the old rows would be deleted and then
      A's new ones by A's rollback: the destination would hold only B's rows.
    * `a-finishes`: A appends; the operator forces `recover` while A stalls (completing A's
      commit for it), then A resumes and finishes: every step twice, idempotent.

    Either way A's output and B's are exact, and no `_SUCCESS` lists a file that is not there."""
    dest = f"s3a://{BUCKET}/{prefix}"
    spark.range(0, OLD, 1, 2).selectExpr("id", "id * 2 AS v").write.parquet(dest)
    fails = outcome == "a-fails"
    fault = f"pause:after-completes:2:{PAUSE}" + (",after-completes:3" if fails else "")
    a = Driver(bed, dest=dest, first=10_000, rows=NEW, mode="overwrite" if fails else "append", options={
        "sealcommit.fault.job-commit": fault, "sealcommit.commit.parallelism": "1",
        "sealcommit.journal.lease": f"{LIVE_LEASE}s"})
    try:
        a.wait_for("pausing at after-completes:2", timeout=300)
        paused = time.monotonic()
        [journal] = journals(s3, prefix)
        j = read_json(s3, journal)
        assert j["state"] == "committing" and j["lease"]["lease_ms"] == LIVE_LEASE * 1000, j
        job_a, host = j["job_id"], j["owner"]["host"]

        # Job B appends to the destination while A stalls; its setup leaves A's commit alone.
        spark.range(20_000, 20_010, 1, 1).selectExpr("id", "id * 2 AS v").write.mode("append").parquet(dest)
        assert journals(s3, prefix) == [journal], "A's journal was left alone"
        assert read_json(s3, journal)["state"] == "committing"
        b_success = assert_success_lists_only_what_is_there(s3, prefix)
        assert b_success["jobId"] != job_a and len(b_success["sealcommit"]["files"]) == 1

        # Two leases into the stall (so A has renewed its lease), the operator's recover refuses
        # the live commit, saying who holds it and until when.
        time.sleep(max(0.0, paused + 2 * LIVE_LEASE - time.monotonic()))
        out = cli(bed, "recover", dest)
        assert out.returncode == 3, out.stdout + out.stderr
        assert job_a in out.stderr and f"host {host}" in out.stderr and f"pid {j['owner']['pid']}" in out.stderr, \
            out.stderr
        assert "valid until" in out.stderr and "by the store's clock" in out.stderr and "--force" in out.stderr
        out = cli(bed, "recover", dest, "--abort", "--json")
        assert out.returncode == 3, out.stderr
        assert [(r["job_id"], r["action"], r["lease"]) for r in json.loads(out.stdout)] == [(job_a, "live", "live")]
        took = time.monotonic() - paused
        assert took < PAUSE - 5, f"B and the checks ended {took:.0f} s into A's {PAUSE} s stall: inconclusive"
        assert a.p.poll() is None and "resuming" not in a.output(), "A is still stalled"

        if not fails:
            out = cli(bed, "recover", dest, "--force", "--json")
            assert out.returncode == 0, out.stderr
            assert [(r["job_id"], r["action"], r["files"], r["lease"]) for r in json.loads(out.stdout)] == [
                (job_a, "completed", 4, "live")]
            assert_success_lists_only_what_is_there(s3, prefix)

        code, output = a.finish(timeout=PAUSE + 240)
    finally:
        a.kill()

    if fails:
        assert code != 0 and "job commit stopped at after-completes:3" in output, output[-4000:]
        # A rolled back: the old rows and B's, nothing of A.
        ids_and_count(spark, dest, list(range(OLD)) + list(range(20_000, 20_010)))
    else:
        assert code == 0 and "DONE" in output, output[-4000:]
        ids_and_count(spark, dest, list(range(OLD)) + list(range(10_000, 10_000 + NEW)) + list(range(20_000, 20_010)))
        assert success_json(s3, BUCKET, prefix)["jobId"] == job_a
    assert "resuming after after-completes:2" in output
    assert_success_lists_only_what_is_there(s3, prefix)
    assert journals(s3, prefix) == [] and leases(s3, prefix) == []
    assert pending_uploads(s3, BUCKET, prefix) == []
    assert_all_encrypted(s3, BUCKET, prefix)
