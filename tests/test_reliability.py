"""Batch jobs through a proxy that injects faults into 5 % of the S3 requests (503 SlowDown,
500, connection resets, delays, and lost responses: the request applied, the response dropped).
Every job that succeeds has complete, verified output with no duplicate; every job that fails
leaves nothing visible (or, if it failed after publishing, a journal that `sealcommit recover`
rolls forward); no upload is left. The figures go to docs/RELIABILITY.md."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.bed.stores import KMS_KEY_1, free_ports
from tests.conftest import encryption_of, list_keys
from tests.test_cli import cli

BUCKET = "soak"
# Free loopback ports for the fault proxies (a second run on the machine picks others).
_PROXY_PORTS = free_ports(["faulty", "lossy"], paired=set(), offset=0)
PORT, LOSSY_PORT = _PROXY_PORTS["faulty"], _PROXY_PORTS["lossy"]
JOBS = 50
ROWS = 200
RATE = 0.05


@pytest.fixture(scope="module")
def faulty(bed, s3, spark, tmp_path_factory):
    """The bucket `soak`, reached by Spark (S3A and sealcommit) only through the fault proxy."""
    s3.create_bucket(Bucket=BUCKET)
    log = tmp_path_factory.mktemp("faults") / "faults.jsonl"
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).parent / "bed" / "faultproxy.py"),
                              "--listen", str(PORT), "--upstream", f"127.0.0.1:{bed.rgw.http_port}",
                              "--rate", str(RATE), "--seed", "20261124", "--log", str(log)])
    time.sleep(0.5)
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hconf.set(f"fs.s3a.bucket.{BUCKET}.endpoint", f"http://127.0.0.1:{PORT}")
    yield log
    proxy.terminate()
    proxy.wait(timeout=10)


def rows_of(s3, keys, field: str = "id") -> list[int]:
    out = []
    for k in keys:
        body = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
        out += [json.loads(line)[field] for line in body.splitlines()]
    return out


def test_fifty_jobs_under_five_percent_faults(spark, s3, bed, prefix, faulty):
    outcomes, t0 = [], time.time()
    for i in range(JOBS):
        dest = f"s3a://{BUCKET}/{prefix}/job-{i:02d}"
        try:
            spark.range(i * 1000, i * 1000 + ROWS, 1, 4).write.json(dest)
            outcomes.append(("ok", ""))
        except Exception as e:  # noqa: BLE001 - classified below
            outcomes.append(("failed", str(e).splitlines()[0][:300]))
    seconds = time.time() - t0

    published_failures, verified_rows = 0, 0
    for i, (outcome, why) in enumerate(outcomes):
        key = f"{prefix}/job-{i:02d}"
        keys = list_keys(s3, BUCKET, key + "/")
        if outcome == "failed" and keys:
            # Only a failure after publishing may leave objects, with its journal: roll forward.
            assert any(k.endswith(".journal") for k in keys), (why, keys)
            published_failures += 1
            assert cli(bed, "recover", f"s3a://{BUCKET}/{key}", "--conf",
                       f"fs.s3a.bucket.{BUCKET}.endpoint={bed.rgw.https_endpoint}").returncode == 0
            keys = list_keys(s3, BUCKET, key + "/")
            outcome = "ok"
        if outcome == "failed":
            assert keys == [], (why, keys)
            continue
        success = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{key}/_SUCCESS")["Body"].read())
        data = sorted(k for k in keys if not k.endswith("_SUCCESS"))
        assert data == sorted(f.lstrip("/") for f in success["filenames"]), "only committed files, all of them"
        rows = sorted(rows_of(s3, data))
        assert rows == list(range(i * 1000, i * 1000 + ROWS)), f"rows lost or duplicated: {len(rows)} of {ROWS}"
        verified_rows += len(rows)
        assert {encryption_of(s3, BUCKET, k) for k in keys} == {("aws:kms", KMS_KEY_1)}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    ok = sum(1 for o, _ in outcomes if o == "ok")
    # A run where every job failed cleanly would check nothing: at least half the jobs must succeed (50 of 50
    # in docs/RELIABILITY.md), and every row of each that did was read back.
    assert ok >= JOBS // 2, Counter(w for o, w in outcomes if o == "failed")
    assert verified_rows == (ok + published_failures) * ROWS, (verified_rows, ok, published_failures)
    report("batch", faulty, f"jobs={JOBS} ok={ok} failed={JOBS - ok} "
           f"failed_after_publish={published_failures} seconds={seconds:.0f}")
    print("RELIABILITY failures: " + json.dumps(Counter(w for o, w in outcomes if o == "failed")))


def report(what: str, log: Path, outcome: str):
    """Prints the figures for docs/RELIABILITY.md and checks faults were injected; resets the log."""
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text("")
    kinds = Counter(r["kind"] for r in requests)
    lost_completes = sum(1 for r in requests if r["kind"] == "lost" and r["method"] == "POST"
                         and "uploadId=" in r["path"])
    faults = len(requests) - kinds["none"]
    print(f"\nRELIABILITY {what}: {outcome} requests={len(requests)} faults={faults} "
          f"({100 * faults / max(1, len(requests)):.1f} %) {dict(kinds)} lost_completes={lost_completes}")
    assert faults > 0, "the proxy injected nothing"


def test_streaming_query_under_five_percent_faults(spark, s3, prefix, faulty):
    from tests.test_streaming import (
        assert_progress_matches, committed_batches, expected_sink_values, offset_log, rate_rows,
        stop_between_batches,
    )

    sink = f"{prefix}/sink"
    q = (spark.readStream.format("rate").option("rowsPerSecond", 20).option("numPartitions", 2).load()
         .select("value").writeStream.format("json")
         .option("checkpointLocation", f"s3a://{BUCKET}/{prefix}/checkpoint")
         .option("path", f"s3a://{BUCKET}/{sink}").trigger(processingTime="1 second").start())
    t0 = time.time()
    try:
        while time.time() - t0 < 120 and q.isActive and (q.lastProgress or {}).get("batchId", -1) < 12:
            time.sleep(0.2)
        assert q.exception() is None, str(q.exception())[:3000]
        batches = q.lastProgress["batchId"]
        assert batches >= 12
    finally:
        stop_between_batches(q)

    logged = set()
    for k in list_keys(s3, BUCKET, f"{sink}/_spark_metadata/"):
        for line in s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode().splitlines()[1:]:
            logged.add(json.loads(line)["path"].split(f"{BUCKET}/", 1)[1])
    files = {k for k in list_keys(s3, BUCKET, f"{sink}/") if "/_spark_metadata/" not in k}
    assert files == logged, "every sink file is in the sink log and nothing else is there"
    # The sink holds exactly the values the source fed the committed batches (offset log,
    # checked against the query's own numInputRows), not merely distinct ones.
    ckpt = f"{prefix}/checkpoint"
    last = committed_batches(s3, BUCKET, ckpt)[-1]
    assert_progress_matches(q, rate_rows(offset_log(s3, BUCKET, ckpt), 20, last))
    expected = expected_sink_values(s3, BUCKET, ckpt, sink, 20, minimum=20 * 12)
    values = sorted(rows_of(s3, sorted(files), "value"))
    assert values == expected, f"values lost or duplicated: {len(values)} values, expected {len(expected)}"
    keys = list_keys(s3, BUCKET, prefix)
    assert {encryption_of(s3, BUCKET, k) for k in keys} == {("aws:kms", KMS_KEY_1)}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    report("streaming", faulty, f"batches={batches + 1} rows={len(values)} seconds={time.time() - t0:.0f}")


def test_create_only_put_whose_response_was_lost_is_recognised_as_its_own(spark, s3, bed, tmp_path):
    """The store applies a create-only checkpoint PUT, the response is lost, the client retries
    and meets 412: the write is still this writer's (its id is on the object), so close()
    succeeds; another writer of the same file still gets FileAlreadyExistsException."""
    from py4j.protocol import Py4JJavaError

    from tests.test_streaming import jpath, manager, read_all

    bucket, port = "lossy", LOSSY_PORT
    s3.create_bucket(Bucket=bucket)
    log = tmp_path / "faults.jsonl"
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).parent / "bed" / "faultproxy.py"),
                              "--listen", str(port), "--upstream", f"127.0.0.1:{bed.rgw.http_port}", "--rate", "0",
                              "--log", str(log), "--lose-first", "commits/5"])
    try:
        time.sleep(0.5)
        root = f"s3a://{bucket}/{tmp_path.name}"
        m = manager(spark, root, **{f"fs.s3a.bucket.{bucket}.endpoint": f"http://127.0.0.1:{port}"})
        out = m.createAtomic(jpath(spark, f"{root}/commits/5"), False)
        out.write(bytearray(b"v1\n{}"))
        out.close()
        puts = [json.loads(line) for line in log.read_text().splitlines()
                if json.loads(line)["method"] == "PUT" and "commits/5" in json.loads(line)["path"]]
        assert [p["kind"] for p in puts] == ["lost", "none"], puts
        assert read_all(spark, m, f"{root}/commits/5") == b"v1\n{}"
        again = m.createAtomic(jpath(spark, f"{root}/commits/5"), False)
        again.write(bytearray(b"v1\n{}"))
        with pytest.raises(Py4JJavaError, match="FileAlreadyExistsException"):
            again.close()
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
