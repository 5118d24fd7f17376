"""What each Spark line's own S3A does beside sealcommit, and alone (tests/bed/lines.txt; run on
every line by tests/run.sh; docs/COMPATIBILITY.md's per-line table cites these tests).

* The S3A magic committer alone (spark-hadoop-cloud's PathOutputCommitProtocol, where Maven
  Central has it for the line): the field job commits without copies (SDK v2 over http; SDK v1
  only over https, over http it refuses the encrypted writes), a KMS key given per write through
  `df.write.option` is ignored (every object under the session's key: S3A's FileSystem is cached
  per bucket), and dynamic partition overwrite is refused. sealcommit runs the same field job
  with fewer requests.
* RocksDB state over plain http with SSE-KMS: Spark uploads the SST files through S3A
  (`copyFromLocalFile`), beside SealCheckpointFileManager. SDK v1 refuses those PUTs over http;
  SDK v2 sends them aws-chunked, which this bed's stores refuse: https is needed on every line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from pyspark.sql import functions as F

from tests.bed import stores
from tests.bed.stores import KMS_KEY_1, KMS_KEY_2
from tests.conftest import (
    CLOUD_JAR, HADOOP_AWS, LINE, ROOT, S3A_UPLOADS_KEEP_FRAMING, SDK_V2, Wire, assert_all_encrypted,
    assert_no_copy, bed_info, list_keys, pending_uploads,
)
from tests.test_field_failure import SDK_V1_REFUSAL
from tests.test_streaming import committed_batches, run_until

# SDK v2 sends SSE-KMS over http: the field's topology (http -> proxy -> https RGW). SDK v1 refuses
# that client-side, so S3A alone writes encrypted only over https (the CA in the JVM trust store).
MAGIC_BUCKET = "via-proxy" if SDK_V2 else "direct-https"
HIGH = [(2, "Bob", 200), (3, "Charlie", 150)]


def _slice(since_a: list, since_b: list) -> list:
    """The log entries between two offsets, from the entries after each (append-only logs)."""
    return since_a[:len(since_a) - len(since_b)]


@pytest.fixture(scope="module")
def s3a_magic(bed, s3):
    """Runs tests/s3a_magic_driver.py once; per scenario: its result, the RGW requests and the
    proxy requests it made."""
    if CLOUD_JAR is None:
        pytest.skip(f"no spark-hadoop-cloud for Spark {LINE} (tests/bed/lines.txt)")
    prefix = f"t/s3a-magic-{uuid.uuid4().hex[:8]}"
    scenarios = [("field", f"s3a://{MAGIC_BUCKET}/{prefix}/field"),
                 ("per-write-key", f"s3a://{MAGIC_BUCKET}/{prefix}/keys"),
                 ("dynamic-overwrite", f"s3a://{MAGIC_BUCKET}/{prefix}/dpo")]
    if not SDK_V2:
        scenarios.append(("field:http", f"s3a://via-proxy/{prefix}/field-http"))
    env = {**os.environ, "S3A_MAGIC_DRIVER": json.dumps({**bed_info(bed), "scenarios": scenarios})}
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "s3a_magic_driver.py")], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert stores.SECRET_KEY not in p.stdout + p.stderr
    lines = p.stdout.splitlines()
    marks = [tuple(map(int, line.split()[1:])) for line in lines if line.startswith("MARK ")]
    results = [json.loads(line[len("RESULT "):]) for line in lines if line.startswith("RESULT ")]
    assert p.returncode == 0 and len(results) == len(scenarios) and len(marks) == 2 * len(scenarios), \
        p.stdout[-3000:] + p.stderr[-5000:]
    out = {}
    for i, r in enumerate(results):
        (rgw_a, proxy_a), (rgw_b, proxy_b) = marks[2 * i], marks[2 * i + 1]
        rgw = _slice(bed.rgw.requests_since(rgw_a), bed.rgw.requests_since(rgw_b))
        proxy = _slice(bed.proxy.requests_since(proxy_a), bed.proxy.requests_since(proxy_b))
        ops = bed.rgw.ops_since(rgw_a) - bed.rgw.ops_since(rgw_b)  # RGW's own op names
        out[r["scenario"]] = {**r, "rgw": rgw, "proxy": Counter(stores.classify(q) for q in proxy), "ops": ops}
    out["prefix"] = prefix
    return out


def test_s3a_magic_committer_alone_runs_the_field_job_without_copies(s3a_magic, s3):
    r = s3a_magic["field"]
    assert r["ok"], r.get("error", "")[:3000]
    assert [tuple(x) for x in r["rows"]] == HIGH
    assert r["proxy"]["CopyObject"] == 0 and r["proxy"]["UploadPartCopy"] == 0, r["proxy"]
    assert r["ops"]["copy_obj"] == 0, r["ops"]
    prefix = f"{s3a_magic['prefix']}/field"
    keys = assert_all_encrypted(s3, MAGIC_BUCKET, prefix)
    assert f"{prefix}/users/_SUCCESS" in keys and f"{prefix}/high_value_users/_SUCCESS" in keys
    assert not [k for k in keys if "__magic" in k], f"magic paths left: {keys}"
    print(f"S3A magic committer, field job on Spark {LINE} (hadoop-aws {HADOOP_AWS}): "
          f"{len(r['rgw'])} requests at RGW", file=sys.stderr)
    if not SDK_V2:
        # The same job through the http proxy: SDK v1 refuses the encrypted uploads client-side.
        h = s3a_magic["field:http"]
        assert not h["ok"] and SDK_V1_REFUSAL in h["error"], h.get("error", "")[:3000]


def test_s3a_magic_committer_ignores_a_per_write_kms_key(s3a_magic, s3):
    r = s3a_magic["per-write-key"]
    assert r["ok"], r.get("error", "")[:3000]
    assert [tuple(x) for x in r["rows"]] == [(1, "tenant-2")]
    # Asked for KMS_KEY_2; every object is under the session's KMS_KEY_1.
    keys = assert_all_encrypted(s3, MAGIC_BUCKET, f"{s3a_magic['prefix']}/keys/folder2", kms_key=KMS_KEY_1)
    assert [k for k in keys if k.endswith(".parquet")], keys
    assert KMS_KEY_1 != KMS_KEY_2


def test_s3a_magic_committer_refuses_dynamic_partition_overwrite(s3a_magic, s3):
    r = s3a_magic["dynamic-overwrite"]
    assert not r["ok"], r
    assert "PathOutputCommitter does not support dynamicPartitionOverwrite" in r["error"], r["error"][:3000]
    # Nothing was replaced: the first write's 20 rows are all there is.
    prefix = f"{s3a_magic['prefix']}/dpo"
    keys = list_keys(s3, MAGIC_BUCKET, prefix)
    assert sorted({k.split("/")[-2] for k in keys if k.endswith(".parquet")}) == ["p=0", "p=1"], keys
    assert pending_uploads(s3, MAGIC_BUCKET, prefix) == []


def test_sealcommit_runs_the_field_job_with_fewer_requests_than_s3a_magic(s3a_magic, spark, s3, bed, prefix):
    """The same job as the S3A magic committer's above, same bucket, through sealcommit."""
    base = f"s3a://{MAGIC_BUCKET}/{prefix}"
    wire = Wire(bed)
    users = spark.createDataFrame([(1, "Alice", 100), (2, "Bob", 200), (3, "Charlie", 150)],
                                  "id INT, name STRING, amount INT")
    users.write.parquet(f"{base}/users")
    spark.read.parquet(f"{base}/users").createOrReplaceTempView("users_lines")
    spark.sql("SELECT * FROM users_lines WHERE amount > 100").write.parquet(f"{base}/high_value_users")
    assert sorted(tuple(r) for r in spark.read.parquet(f"{base}/high_value_users").collect()) == HIGH
    assert_no_copy(wire)
    ours, theirs = len(wire.rgw_requests()), len(s3a_magic["field"]["rgw"])
    print(f"field job on Spark {LINE}: sealcommit {ours} requests, S3A magic {theirs}", file=sys.stderr)
    assert ours < theirs, (ours, theirs)
    assert_all_encrypted(s3, MAGIC_BUCKET, prefix)


def causes(query) -> str:
    """The query's failure with every Java cause (pyspark's message shows only the top one)."""
    e = query._jsq.exception()
    e = e.get() if e.isDefined() else None
    out = []
    while e is not None and len(out) < 20:
        out.append(e.toString())
        e = e.getCause()
    return "\n".join(out)


def test_rocksdb_state_over_plain_http(spark, s3, bed, prefix):
    """RocksDB state beside SealCheckpointFileManager over http with SSE-KMS: the checkpoint files
    go through sealcommit, the SST files through S3A (`copyFromLocalFile`). Measured: no line's S3A
    uploads them over plain http here. SDK v1 refuses the encrypted PUT client-side; S3A 3.4/3.5
    on SDK v2 sends it, signed aws-chunked whatever `fs.s3a.signing-algorithm` says (its file
    upload goes through the SDK's transfer manager), and RGW 16 answers 400
    XAmzContentSHA256Mismatch (SeaweedFS 4.48: 400 BadDigest; without SSE-KMS too). Over https
    it runs (test_streaming.py::test_rocksdb_state_store_on_sealcommit, on every line)."""
    bucket = "direct-http"
    name = f"rocks_http_{prefix.split('-')[-1]}"
    spark.conf.set("spark.sql.streaming.stateStore.providerClass",
                   "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
    wire = Wire(bed)
    try:
        src = spark.readStream.format("rate").option("rowsPerSecond", 20).load()
        agg = src.groupBy((F.col("value") % 5).alias("k")).agg(F.count("*").alias("n"), F.max("value").alias("hi"))
        q = (agg.writeStream.format("memory").queryName(name).outputMode("complete")
             .option("checkpointLocation", f"s3a://{bucket}/{prefix}/ckpt")
             .trigger(processingTime="1 second").start())
        try:
            with pytest.raises(AssertionError, match="the query failed"):
                run_until(q, 6)
            error = causes(q)
        finally:
            q.stop()
    finally:
        spark.conf.unset("spark.sql.streaming.stateStore.providerClass")
    assert re.search(r"SSTs/\S+\.sst", error), error[:3000]
    if not SDK_V2:
        assert SDK_V1_REFUSAL in error, error[:3000]
    else:
        assert "XAmzContentSHA256Mismatch" in error, error[:3000]
        sst_puts = [r for r in wire.rgw_requests()
                    if r["method"] == "PUT" and r["uri"].split("?")[0].endswith(".sst")]
        assert sst_puts and all(r["status"] == 400 and "aws-sdk-java/2" in r["agent"] for r in sst_puts), sst_puts[:3]
    # The checkpoint files sealcommit wrote before the failure are under the key; at most the
    # first batch (state without SST files yet) was committed, and nothing was copied.
    assert_all_encrypted(s3, bucket, f"{prefix}/ckpt")
    assert committed_batches(s3, bucket, f"{prefix}/ckpt") in ([], [0])
    assert_no_copy(wire)


@pytest.mark.parametrize("size", [1_246, 100_000])
def test_s3a_upload_of_a_local_file_over_https(spark, s3, prefix, tmp_path, size):
    """S3A's own upload of a local file to RGW over https (the way Spark uploads RocksDB's SST
    files), read back with boto3. hadoop-aws 3.4.1 and 3.4.2 (SDK 2.24.6, 2.29.52) send it
    aws-chunked with a trailing checksum even over https, and RGW 16 stores the chunk framing as
    the object's bytes (`4de\r\n<data>\r\n0\r\nx-amz-checksum-crc32:…`); 3.3.4 and 3.5.0
    (SDK 2.35.4) upload it intact."""
    data = os.urandom(size)
    local = tmp_path / "f.bin"
    local.write_bytes(data)
    jvm, hconf = spark._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    dest = jvm.org.apache.hadoop.fs.Path(f"s3a://direct-https/{prefix}/f.bin")
    dest.getFileSystem(hconf).copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(local.as_uri()), dest)
    stored = s3.get_object(Bucket="direct-https", Key=f"{prefix}/f.bin")["Body"].read()
    if S3A_UPLOADS_KEEP_FRAMING:
        assert len(stored) > size and data[:100] in stored and b"x-amz-checksum" in stored, \
            (size, len(stored), stored[:80], stored[-80:])
    else:
        assert stored == data, (size, len(stored))
