"""Structured Streaming through sealcommit on real Ceph RGW with SSE-KMS: checkpoint files
written by SealCheckpointFileManager (one conditional PUT each, no temp file, no rename) and
file-sink data committed by SealStreamingCommitProtocol (multipart uploads completed at batch
commit). Checked on the store with boto3 and on the wire with RGW's and nginx's logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import functions as F

from tests.conftest import (
    CHECKPOINT_MANAGER, ROOT, Wire, assert_all_encrypted, assert_no_copy, bed_info,
    list_keys, log4j_config, pending_uploads, seaweed_keeps_s3a_retries,
)

STREAM_TOPOLOGIES = ["direct-http", "via-proxy"]


def run_until(query, batch: int, timeout: float = 180) -> int:
    """Waits until `query` has completed micro-batch `batch`; returns the last batch id."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if query.exception() is not None:
            raise AssertionError(f"the query failed: {query.exception()}")
        p = query.lastProgress
        if p and p["batchId"] >= batch:
            return p["batchId"]
        time.sleep(0.25)
    raise AssertionError(f"the query did not reach batch {batch} in {timeout}s: {query.lastProgress}")


def stop_between_batches(query, timeout: float = 60):
    """Stops `query` right after a micro-batch ends. `stop()` interrupts a running batch, and a
    task killed just after uploading leaves its upload pending until that batch runs again
    (after a restart); a test that never restarts must not stop inside a batch."""
    t0, seen_active = time.time(), False
    while time.time() - t0 < timeout and query.isActive:
        if query.status["isTriggerActive"]:
            seen_active = True
        elif seen_active:
            break
        time.sleep(0.02)
    query.stop()


def s3a_writes(wire: Wire) -> list[dict]:
    """Write requests sent by S3A (AWS SDK v1) rather than by the engine."""
    return [r for r in wire.rgw_requests()
            if r["method"] in ("PUT", "POST", "DELETE") and "aws-sdk-java" in r["agent"]]


def committed_batches(s3, bucket: str, checkpoint_prefix: str) -> list[int]:
    return sorted(int(k.rsplit("/", 1)[1]) for k in list_keys(s3, bucket, f"{checkpoint_prefix}/commits/"))


def offset_log(s3, bucket: str, checkpoint_prefix: str) -> dict[int, tuple[dict, int]]:
    """Batch id -> (the batch's metadata, the rate source's end offset) from the checkpoint's
    offset log (`v1`, the metadata, then one offset per source). The rate source's offset is whole
    seconds since the query first started, and at offset s it has produced exactly the values
    0 .. s * rowsPerSecond - 1: the deterministic input every sink is compared with."""
    out = {}
    for k in list_keys(s3, bucket, f"{checkpoint_prefix}/offsets/"):
        name = k.rsplit("/", 1)[1]
        if name.isdigit():
            lines = s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode().splitlines()
            out[int(name)] = (json.loads(lines[1]), int(lines[2]))
    return out


def rate_rows(offsets: dict, rows_per_second: int, last: int) -> list[int]:
    """How many rows the rate source fed each of batches 0..last."""
    ends = [offsets[b][1] for b in range(last + 1)]
    return [rows_per_second * (end - start) for start, end in zip([0] + ends, ends)]


def assert_progress_matches(query, per_batch: list[int]):
    """The query's own progress reports (numInputRows) agree with the offset log, batch by
    batch: the expected counts are what Spark read, not an interpretation of the log."""
    reported = {}
    for p in query.recentProgress:
        reported[p["batchId"]] = max(reported.get(p["batchId"], 0), p["numInputRows"])
    assert {b: reported.get(b) for b in range(len(per_batch))} == dict(enumerate(per_batch)), reported


def sink_log_batches(s3, bucket: str, sink_prefix: str) -> list[int]:
    """Batch ids in a file sink's log (`_spark_metadata/<id>` or `<id>.compact`)."""
    return sorted(int(k.rsplit("/", 1)[1].split(".")[0])
                  for k in list_keys(s3, bucket, f"{sink_prefix}/_spark_metadata/"))


def expected_sink_values(s3, bucket: str, ckpt_prefix: str, sink_prefix: str, rows_per_second: int,
                         minimum: int) -> list[int]:
    """The values a rate -> file sink query must have in its sink: those of every batch in the
    sink's log, which is the commit log's batches or one more (a query stopped between the sink's
    commit and the commit log's entry). At least `minimum` of them."""
    last = committed_batches(s3, bucket, ckpt_prefix)[-1]
    in_sink = sink_log_batches(s3, bucket, sink_prefix)
    assert in_sink and in_sink[-1] in (last, last + 1), (in_sink, last)
    total = sum(rate_rows(offset_log(s3, bucket, ckpt_prefix), rows_per_second, in_sink[-1]))
    assert total >= minimum > 0, (total, minimum)
    return list(range(total))


@pytest.mark.parametrize("topology", STREAM_TOPOLOGIES)
def test_stateful_query_commits_checkpoints_and_sink_without_rename(spark, s3, bed, prefix, topology):
    """Rate source -> windowed aggregation with a watermark -> Parquet file sink, 10+ batches."""
    ckpt, sink = f"{prefix}/ckpt", f"{prefix}/sink"
    src = spark.readStream.format("rate").option("rowsPerSecond", 20).load()
    agg = (src.withWatermark("timestamp", "1 second").groupBy(F.window("timestamp", "1 second"))
           .agg(F.count("*").alias("n"), F.min("value").alias("lo"), F.max("value").alias("hi")))
    wire = Wire(bed)
    q = (agg.writeStream.format("parquet").outputMode("append")
         .option("checkpointLocation", f"s3a://{topology}/{ckpt}").option("path", f"s3a://{topology}/{sink}")
         .trigger(processingTime="1 second").start())
    try:
        last = run_until(q, 10)
        t0 = time.time()
        while spark.read.parquet(f"s3a://{topology}/{sink}").count() < 3 and time.time() - t0 < 60:
            last = run_until(q, last + 1)  # until windows close and reach the sink
    finally:
        stop_between_batches(q)
    last = committed_batches(s3, topology, ckpt)[-1]

    # Every micro-batch committed, every checkpoint and sink object under the requested key.
    assert committed_batches(s3, topology, ckpt) == list(range(last + 1))
    keys = assert_all_encrypted(s3, topology, ckpt) + assert_all_encrypted(s3, topology, sink)
    for needed in ("metadata", "offsets/0", "commits/0", "sources/0/0", "state/0/0/1.delta"):
        assert f"{ckpt}/{needed}" in keys, f"{needed} missing from {keys[:20]}"
    assert f"{sink}/_spark_metadata/0" in keys
    assert not [k for k in keys if ".tmp" in k or "_temporary" in k or "/_sealcommit/" in k], keys
    assert pending_uploads(s3, topology, prefix) == []
    # No rename anywhere: no CopyObject, no temporary object ever written, no S3A write.
    ops = assert_no_copy(wire)
    assert ops["put_obj"] > 0 and ops["complete_multipart"] > 0, ops
    assert not s3a_writes(wire), s3a_writes(wire)[:3]

    # What the source fed the query, from the offset log, as Spark itself counted it.
    offsets = offset_log(s3, topology, ckpt)
    per_batch = rate_rows(offsets, 20, last)
    assert_progress_matches(q, per_batch)
    assert sum(per_batch) >= 20 * 5, per_batch  # 10+ one-second triggers: over 5 s of the source

    # The sink holds every window the watermark closed, each once with all its rows, and no
    # other: windows from the source's first value on, contiguous, the last one closed by the
    # watermark of the sink's last batch and the next one still open under it.
    rows = sorted(spark.read.parquet(f"s3a://{topology}/{sink}")
                  .selectExpr("lo", "hi", "n", "unix_millis(window.end) AS end_ms").collect())
    assert len(rows) >= 3, rows
    assert rows[0].lo == 0, f"the first window is missing: {rows}"
    for r in rows:
        assert r.n == r.hi - r.lo + 1, rows
    for a, b in zip(rows, rows[1:]):
        assert b.lo == a.hi + 1, f"lost or duplicated rows between windows: {rows}"
    sink_last = sink_log_batches(s3, topology, sink)[-1]
    assert sink_last in (last, last + 1), (sink_last, last)
    watermark = offsets[sink_last][0]["batchWatermarkMs"]
    assert rows[-1].end_ms <= watermark < rows[-1].end_ms + 1000, (watermark, rows[-1])
    # The rows of the still-open windows were read (and stay in the state store).
    assert sum(r.n for r in rows) < 20 * offsets[sink_last][1], (rows[-1], offsets[sink_last])


@pytest.mark.parametrize("bucket", STREAM_TOPOLOGIES)
def test_foreach_batch_writes_parquet_through_seal_commit_protocol(spark, s3, bed, prefix, bucket):
    ckpt, out = f"{prefix}/ckpt", f"{prefix}/out"

    def write_batch(df, batch_id):
        df.withColumn("batch", F.lit(batch_id)).write.mode("append").parquet(f"s3a://{bucket}/{out}")

    wire = Wire(bed)
    q = (spark.readStream.format("rate").option("rowsPerSecond", 10).load()
         .writeStream.foreachBatch(write_batch).option("checkpointLocation", f"s3a://{bucket}/{ckpt}")
         .trigger(processingTime="1 second").start())
    try:
        run_until(q, 10)
    finally:
        stop_between_batches(q)
    last = committed_batches(s3, bucket, ckpt)[-1]
    assert committed_batches(s3, bucket, ckpt) == list(range(last + 1))
    keys = assert_all_encrypted(s3, bucket, ckpt) + assert_all_encrypted(s3, bucket, out)
    assert f"{out}/_SUCCESS" in keys
    assert_no_copy(wire)
    assert not s3a_writes(wire), s3a_writes(wire)[:3]
    # Each committed batch wrote exactly the rows the source fed it, and nothing else is there.
    per_batch = rate_rows(offset_log(s3, bucket, ckpt), 10, last)
    assert_progress_matches(q, per_batch)
    assert sum(per_batch) >= 10 * last, per_batch  # each batch after the first: a new second
    expected, start = [], 0
    for batch, n in enumerate(per_batch):
        expected += [(batch, v) for v in range(start, start + n)]
        start += n
    got = sorted((r.batch, r.value)
                 for r in spark.read.parquet(f"s3a://{bucket}/{out}").select("batch", "value").collect())
    assert got == expected, f"lost or duplicated rows: {len(got)} rows, expected {len(expected)}"


# ------------------------------------------------------------------------------------------------
# The checkpoint file manager's contract, called directly in the Spark JVM
# ------------------------------------------------------------------------------------------------

def manager(spark, root: str, **settings):
    jvm = spark._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration(spark.sparkContext._jsc.hadoopConfiguration())
    for k, v in settings.items():
        conf.set(k, v)
    cls = jvm
    for part in CHECKPOINT_MANAGER.split("."):
        cls = getattr(cls, part)
    return cls(jvm.org.apache.hadoop.fs.Path(root), conf)


def jpath(spark, p: str):
    return spark._jvm.org.apache.hadoop.fs.Path(p)


def read_all(spark, m, p: str) -> bytes:
    stream = m.open(jpath(spark, p))
    try:
        return bytes(spark._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_file(spark, m, p: str, data: bytes, overwrite: bool):
    out = m.createAtomic(jpath(spark, p), overwrite)
    out.write(bytearray(data))
    out.close()


def test_create_only_loser_gets_file_already_exists_and_the_winner_stays(spark, s3, bed, prefix):
    """Two writers both found commits/7 absent (Spark's check) and both write it: the
    conditional PUT lets exactly one win; the other gets FileAlreadyExistsException, which
    Spark's metadata log turns into its 'concurrent queries' error."""
    bucket = "direct-http"
    root = f"s3a://{bucket}/{prefix}"
    m = manager(spark, root)
    target = f"{root}/commits/7"
    a = m.createAtomic(jpath(spark, target), False)
    b = m.createAtomic(jpath(spark, target), False)
    a.write(bytearray(b"v1\n{\"writer\":\"a\"}"))
    b.write(bytearray(b"v1\n{\"writer\":\"b\"}"))
    assert not m.exists(jpath(spark, target)), "visible before close"
    b.close()
    with pytest.raises(Py4JJavaError) as err:
        a.close()
    assert "FileAlreadyExistsException" in str(err.value) and "commits/7" in str(err.value)
    a.cancel()  # what Spark does after a failed close: must be harmless
    assert read_all(spark, m, target) == b"v1\n{\"writer\":\"b\"}"
    assert list_keys(s3, bucket, prefix) == [f"{prefix}/commits/7"]

    # Many writers at once, from threads: still exactly one winner.
    results = []
    target = f"{root}/offsets/3"

    def race(i):
        out = m.createAtomic(jpath(spark, target), False)
        out.write(bytearray(f"writer {i}".encode()))
        try:
            out.close()
            results.append(("ok", i))
        except Py4JJavaError as e:
            results.append(("exists" if "FileAlreadyExistsException" in str(e) else str(e), i))
    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    winners = [i for r, i in results if r == "ok"]
    assert len(winners) == 1 and sorted(r for r, _ in results).count("exists") == 5, results
    assert read_all(spark, m, target) == f"writer {winners[0]}".encode()
    assert_all_encrypted(s3, bucket, prefix)


def test_cancel_list_exists_delete_and_overwrite(spark, s3, bed, prefix):
    bucket = "via-proxy"
    root = f"s3a://{bucket}/{prefix}"
    m = manager(spark, root)
    wire = Wire(bed)
    out = m.createAtomic(jpath(spark, f"{root}/state/0/0/1.delta"), True)
    out.write(bytearray(os.urandom(100_000)))
    out.cancel()
    out.close()  # after cancel: nothing happens
    assert list_keys(s3, bucket, prefix) == []
    assert wire.rgw_ops()["put_obj"] == 0, "a cancelled stream sent data"

    write_file(spark, m, f"{root}/state/0/0/1.delta", b"one", overwrite=True)
    write_file(spark, m, f"{root}/state/0/0/1.delta", b"two", overwrite=True)
    write_file(spark, m, f"{root}/state/0/1/1.delta", b"x", overwrite=True)
    assert read_all(spark, m, f"{root}/state/0/0/1.delta") == b"two"
    listed = sorted((s.getPath().getName(), s.isDirectory(), s.getLen())
                    for s in m.list(jpath(spark, f"{root}/state/0")))
    assert listed == [("0", True, 0), ("1", True, 0)]
    files = [s.getPath().toString() for s in m.list(jpath(spark, f"{root}/state/0/0"))]
    assert files == [f"{root}/state/0/0/1.delta"]
    assert len(m.list(jpath(spark, f"{root}/nothing-here"))) == 0
    assert m.exists(jpath(spark, f"{root}/state/0/0/1.delta")) and m.exists(jpath(spark, f"{root}/state"))
    assert not m.exists(jpath(spark, f"{root}/state/0/0/2.delta"))
    with pytest.raises(Py4JJavaError) as err:
        m.open(jpath(spark, f"{root}/state/0/0/2.delta"))
    assert "FileNotFoundException" in str(err.value)
    m.delete(jpath(spark, f"{root}/state/0"))
    m.delete(jpath(spark, f"{root}/never-written"))
    assert list_keys(s3, bucket, prefix) == []
    assert_no_copy(wire)


@pytest.fixture(scope="module")
def seaweed_bucket(bed, spark):
    """A bucket on SeaweedFS (which honours If-None-Match on CompleteMultipartUpload)."""
    sw = bed.boto3(bed.seaweed.http_endpoint)
    try:
        sw.create_bucket(Bucket="sw-ckpt")
    except sw.exceptions.BucketAlreadyOwnedByYou:
        pass
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hconf.set("fs.s3a.bucket.sw-ckpt.endpoint", bed.seaweed.http_endpoint)
    # SeaweedFS creates KMS keys on demand, but not with ':' in the id (KMS_KEY_1 is an ARN).
    hconf.set("fs.s3a.bucket.sw-ckpt.encryption.key", "checkpoint-key")
    seaweed_keeps_s3a_retries(spark, "sw-ckpt")
    return sw


def test_large_checkpoint_files_stay_create_only_on_both_stores(spark, s3, bed, prefix, seaweed_bucket):
    """Past the multipart threshold: overwritable files go multipart; create-only files keep
    their guarantee: one conditional PUT on RGW (which ignores If-None-Match on Complete), a
    conditional CompleteMultipartUpload on SeaweedFS (which honours it)."""
    small = {"sealcommit.checkpoint.multipart-threshold": "64K", "sealcommit.checkpoint.memory-buffer": "16K"}
    data = os.urandom(300_000)

    root = f"s3a://direct-http/{prefix}"
    m = manager(spark, root, **small)
    wire = Wire(bed)
    write_file(spark, m, f"{root}/state/0/0/5.snapshot", data, overwrite=True)
    ops = wire.rgw_ops()
    assert ops["init_multipart"] == 1 and ops["complete_multipart"] == 1, ops
    # The first create-only write to a bucket probes how the store treats conditional writes
    # (once per process): it runs here, uncounted, whichever test ran before this one.
    write_file(spark, m, f"{root}/_spark_metadata/0", b"{}", overwrite=False)
    wire = Wire(bed)
    write_file(spark, m, f"{root}/_spark_metadata/9.compact", data, overwrite=False)
    ops = wire.rgw_ops()
    assert ops["init_multipart"] == 0 and ops["put_obj"] == 1, ops
    with pytest.raises(Py4JJavaError) as err:
        write_file(spark, m, f"{root}/_spark_metadata/9.compact", b"other", overwrite=False)
    assert "FileAlreadyExistsException" in str(err.value)
    assert read_all(spark, m, f"{root}/_spark_metadata/9.compact") == data
    assert read_all(spark, m, f"{root}/state/0/0/5.snapshot") == data
    assert_all_encrypted(s3, "direct-http", prefix)

    sw = seaweed_bucket
    root = f"s3a://sw-ckpt/{prefix}"
    m = manager(spark, root, **small)
    write_file(spark, m, f"{root}/_spark_metadata/9.compact", data, overwrite=False)
    with pytest.raises(Py4JJavaError) as err:
        write_file(spark, m, f"{root}/_spark_metadata/9.compact", os.urandom(200_000), overwrite=False)
    assert "FileAlreadyExistsException" in str(err.value)
    assert read_all(spark, m, f"{root}/_spark_metadata/9.compact") == data
    h = sw.head_object(Bucket="sw-ckpt", Key=f"{prefix}/_spark_metadata/9.compact")
    assert (h["ServerSideEncryption"], h["SSEKMSKeyId"]) == ("aws:kms", "checkpoint-key")
    assert "-" in h["ETag"], "expected a multipart object"
    assert sw.list_multipart_uploads(Bucket="sw-ckpt").get("Uploads", []) == []


# ------------------------------------------------------------------------------------------------
# Drivers in their own JVM: killed in the middle of a batch, or two on one checkpoint
# ------------------------------------------------------------------------------------------------

def start_driver(bed, info: dict, log) -> subprocess.Popen:
    # The checkpoint module's INFO lines (its conditional-write probe) on the driver's stderr.
    config = log4j_config(bed.base / "stream-driver-log4j2.properties", {"io.sealcommit.engine.checkpoint": "info"})
    env = dict(os.environ, STREAM_DRIVER=json.dumps({
        **bed_info(bed), **info, "log_config": str(config)}))
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "stream_driver.py")], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=log, text=True)


def sink_values(spark, uri: str) -> list[int]:
    return sorted(r.value for r in spark.read.parquet(uri).select("value").collect())


def test_driver_killed_mid_batch_restarts_exactly_once(spark, s3, bed, prefix, tmp_path):
    bucket = "direct-http"
    info = {"checkpoint": f"s3a://{bucket}/{prefix}/ckpt", "sink": f"s3a://{bucket}/{prefix}/sink",
            "slow": True, "until": 1000}
    with open(tmp_path / "first.log", "w") as log:
        first = start_driver(bed, info, log)
        # Kill it while a batch (>= 2) has an upload pending: partition 0's file is uploaded and
        # waits for the batch commit while partition 1 still sleeps.
        t0, killed_in = time.time(), None
        try:
            while time.time() - t0 < 240 and first.poll() is None:
                done = committed_batches(s3, bucket, f"{prefix}/ckpt")
                if done and done[-1] >= 1 and pending_uploads(s3, bucket, f"{prefix}/sink"):
                    first.send_signal(signal.SIGKILL)
                    killed_in = done[-1] + 1
                    break
                time.sleep(0.05)
        finally:
            if first.poll() is None:
                first.kill()
            first.wait()
    assert killed_in is not None, (tmp_path / "first.log").read_text()[-3000:]
    # The dead driver left its batch half done: a pending upload, and no commit for the batch.
    assert pending_uploads(s3, bucket, f"{prefix}/sink"), "no upload pending at the kill"
    assert committed_batches(s3, bucket, f"{prefix}/ckpt")[-1] == killed_in - 1

    with open(tmp_path / "second.log", "w") as log:
        second = start_driver(bed, {**info, "slow": False, "until": killed_in + 2}, log)
        out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out + (tmp_path / "second.log").read_text()[-3000:]

    assert committed_batches(s3, bucket, f"{prefix}/ckpt")[-1] >= killed_in + 2
    # The second driver re-ran the killed batch from its logged offsets, and reported reading
    # what the offset log says each of its batches holds.
    per_batch = rate_rows(offset_log(s3, bucket, f"{prefix}/ckpt"), 2, killed_in + 2)
    reported = dict(tuple(map(int, line.split()[1::2]))  # BATCH <id> ROWS <n>
                    for line in out.splitlines() if line.startswith("BATCH "))
    assert {b: reported.get(b) for b in range(killed_in, killed_in + 3)} == {
        b: per_batch[b] for b in range(killed_in, killed_in + 3)}, out
    values = sink_values(spark, info["sink"])
    expected = expected_sink_values(s3, bucket, f"{prefix}/ckpt", f"{prefix}/sink", 2,
                                    minimum=2 * (killed_in + 2))
    assert values == expected, f"lost or duplicated rows: {len(values)} rows, expected {len(expected)}"
    keys = assert_all_encrypted(s3, bucket, prefix)
    assert not [k for k in keys if ".tmp" in k or "_temporary" in k], keys
    assert pending_uploads(s3, bucket, prefix) == [], "the killed batch's upload was not cleaned up"
    probes = [line for line in (tmp_path / "second.log").read_text().splitlines() if "If-None-Match" in line]
    assert len(probes) == 1 and "ignores it on CompleteMultipartUpload" in probes[0], probes


def test_second_query_on_the_same_checkpoint_fails_and_the_first_stays_correct(spark, s3, bed, prefix, tmp_path):
    bucket = "direct-http"
    ckpt, sink = f"s3a://{bucket}/{prefix}/ckpt", f"s3a://{bucket}/{prefix}/sink"

    def start(trigger: dict):
        return (spark.readStream.format("rate").option("rowsPerSecond", 10).option("numPartitions", 2).load()
                .select("value", "timestamp").writeStream.format("parquet")
                .option("checkpointLocation", ckpt).option("path", sink).trigger(**trigger).start())

    # The first query runs batch after batch with no pause, so whatever the second one tries
    # to write next, the first has written already (or is writing it).
    q = start({"processingTime": "0 seconds"})
    try:
        run_until(q, 2)
        with open(tmp_path / "second.log", "w") as log:
            second = start_driver(bed, {"checkpoint": ckpt, "sink": sink, "until": 1000,
                                        "rows_per_second": 10}, log)
            out, _ = second.communicate(timeout=300)
        assert second.returncode == 1, out
        error = [line for line in out.splitlines() if line.startswith("ERROR ")]
        assert error, out
        msg = error[0].lower()
        assert "concurrent" in msg or "already exists" in msg or "another writer" in msg, error[0]
        run_until(q, q.lastProgress["batchId"] + 2)
    finally:
        q.stop()  # may interrupt a batch: the restart below runs it again and cleans up after it
    last = committed_batches(s3, bucket, f"{prefix}/ckpt")[-1]
    q = start({"processingTime": "1 second"})
    try:
        run_until(q, last + 2)
    finally:
        stop_between_batches(q)
    values = sink_values(spark, sink)
    expected = expected_sink_values(s3, bucket, f"{prefix}/ckpt", f"{prefix}/sink", 10,
                                    minimum=10 * (last + 2))
    assert values == expected, \
        f"the first query's output lost or duplicated rows: {len(values)} rows, expected {len(expected)}"
    assert pending_uploads(s3, bucket, prefix) == []
    assert_all_encrypted(s3, bucket, prefix)


# ------------------------------------------------------------------------------------------------
# RocksDB state on top of sealcommit (the stock manager's failure: test_field_failure.py::test_e)
# ------------------------------------------------------------------------------------------------

@pytest.mark.s3a_uploads
def test_rocksdb_state_store_on_sealcommit(spark, s3, bed, prefix):
    """RocksDB keeps its state in the checkpoint: the zipped metadata goes through
    SealCheckpointFileManager, the SST files through the Hadoop FileSystem (Spark's choice), so
    this runs where S3A itself can write: https with the CA in the JVM trust store."""
    bucket = "direct-https"
    spark.conf.set("spark.sql.streaming.stateStore.providerClass",
                   "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
    try:
        src = spark.readStream.format("rate").option("rowsPerSecond", 20).load()
        agg = src.groupBy((F.col("value") % 5).alias("k")).agg(F.count("*").alias("n"), F.max("value").alias("hi"))
        wire = Wire(bed)
        q = (agg.writeStream.format("memory").queryName(f"rocks_{prefix.split('-')[-1]}").outputMode("complete")
             .option("checkpointLocation", f"s3a://{bucket}/{prefix}/ckpt")
             .trigger(processingTime="1 second").start())
        try:
            run_until(q, 10)
        finally:
            # Between batches: the memory sink then holds the result of the last committed one.
            stop_between_batches(q)
    finally:
        spark.conf.unset("spark.sql.streaming.stateStore.providerClass")
    keys = assert_all_encrypted(s3, bucket, prefix)
    assert [k for k in keys if k.endswith(".zip")], f"no RocksDB checkpoint zip: {keys[:20]}"
    assert [k for k in keys if k.endswith(".sst")], f"no RocksDB SST file: {keys[:20]}"
    assert_no_copy(wire)
    last = committed_batches(s3, bucket, f"{prefix}/ckpt")[-1]
    per_batch = rate_rows(offset_log(s3, bucket, f"{prefix}/ckpt"), 20, last)
    assert_progress_matches(q, per_batch)
    total = sum(per_batch)
    assert total >= 20 * last, per_batch  # each batch after the first: a new second
    # Complete mode: the state of every key counts every value read so far, no more, no less.
    rows = spark.table(f"rocks_{prefix.split('-')[-1]}").collect()
    assert sorted((r.k, r.n, r.hi) for r in rows) == [
        (k, len(range(k, total, 5)), max(range(k, total, 5))) for k in range(5)], (total, rows)
