"""Batch writes through SealCommitProtocol on real Ceph RGW with SSE-KMS, through the field's three
topologies: every format, partitioned or not, every save mode. Each check is made on the store
with an independent client (boto3) and on the wire (RGW's op log, nginx's access log)."""

from __future__ import annotations

import subprocess
import urllib.parse

import pytest
from pyspark.sql.utils import AnalysisException

from tests.conftest import (
    ROOT, TOPOLOGIES, Wire, assert_all_encrypted, assert_no_copy, list_keys, pending_uploads,
    success_json,
)
from tests.bed.stores import KMS_KEY_1

HEAD_REVISION = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
SCHEMA = "id INT, name STRING, amount INT, country STRING"
A = [(1, "Alice", 100, "fr"), (2, "Bob", 200, "de"), (3, "Charlie", 150, "fr")]
B = [(4, "Dora", 50, "de"), (5, "Eve", 300, "it")]
C = [(6, "Frank", 120, "fr")]


def write(spark, rows, fmt, path, mode, partitioned, **options):
    w = spark.createDataFrame(rows, SCHEMA).repartition(2).write.format(fmt).mode(mode)
    if fmt == "csv":
        w = w.option("header", "true")
    for k, v in options.items():
        w = w.option(k, v)
    if partitioned:
        w = w.partitionBy("country")
    w.save(path)


def read(spark, fmt, path):
    r = spark.read.format(fmt).schema(SCHEMA)
    if fmt == "csv":
        r = r.option("header", "true")
    return sorted(tuple(row) for row in r.load(path).select("id", "name", "amount", "country").collect())


def check_committed(s3, bucket, prefix, wire, expect_files_min=1, owns_all=True):
    keys = assert_all_encrypted(s3, bucket, prefix)
    assert f"{prefix}/_SUCCESS" in keys
    assert not [k for k in keys if "/_sealcommit/" in k], f"journal left behind: {keys}"
    assert pending_uploads(s3, bucket, prefix) == []
    ops = assert_no_copy(wire)
    # The whole job stays free of S3A writes: every write request came from the engine.
    s3a_writes = [r for r in wire.rgw_requests()
                  if r["method"] in ("PUT", "POST", "DELETE") and "aws-sdk-java" in r["agent"]]
    assert not s3a_writes, f"S3A wrote during the job: {s3a_writes[:3]}"
    success = success_json(s3, bucket, prefix)
    assert success["committer"] == "sealcommit"
    # What committed it: the engine's version and the revision it was built from.
    assert success["sealcommit"]["version"] == "0.1.0"
    assert success["sealcommit"]["revision"] == HEAD_REVISION
    assert success["sealcommit"]["verified"] is True
    files = success["sealcommit"]["files"]
    assert len(files) >= expect_files_min
    for f in files:
        assert f["encryption"] == {"algorithm": "SSE-KMS", "kms_key_id": KMS_KEY_1}, f
    data_keys = sorted(k for k in keys if not k.endswith("/_SUCCESS"))
    committed = sorted(f["key"] for f in files)
    if owns_all:
        assert committed == data_keys
    else:
        assert set(committed) <= set(data_keys)
        assert all(success["jobId"] in k for k in committed)
    return ops, success


@pytest.mark.parametrize("partitioned", [False, True], ids=["flat", "partitioned"])
@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_save_modes(spark, s3, bed, prefix, topology, fmt, partitioned):
    bucket = topology
    path = f"s3a://{bucket}/{prefix}"

    wire = Wire(bed)
    write(spark, A, fmt, path, "errorifexists", partitioned)
    assert read(spark, fmt, path) == sorted(A)
    ops, success = check_committed(s3, bucket, prefix, wire, expect_files_min=2)
    assert ops["complete_multipart"] == len(success["sealcommit"]["files"])
    assert success["sealcommit"]["requests"]["CompleteMultipartUpload"] == ops["complete_multipart"]
    # RGW's Complete response is silent on encryption; the Create response was checked instead.
    assert "HeadObject" not in success["sealcommit"]["requests"], success["sealcommit"]["requests"]
    if topology == "via-proxy":
        assert wire.proxy_ops()["CompleteMultipartUpload"] == ops["complete_multipart"]

    before = list_keys(s3, bucket, prefix)
    with pytest.raises(AnalysisException, match="already exists"):
        write(spark, B, fmt, path, "errorifexists", partitioned)
    assert list_keys(s3, bucket, prefix) == before

    wire = Wire(bed)
    write(spark, B, fmt, path, "append", partitioned)
    assert read(spark, fmt, path) == sorted(A + B)
    check_committed(s3, bucket, prefix, wire, owns_all=False)

    wire = Wire(bed)
    write(spark, C, fmt, path, "ignore", partitioned)
    assert read(spark, fmt, path) == sorted(A + B)
    assert wire.rgw_ops()["put_obj"] == 0

    wire = Wire(bed)
    write(spark, C, fmt, path, "overwrite", partitioned)
    assert read(spark, fmt, path) == sorted(C)
    ops, success = check_committed(s3, bucket, prefix, wire)
    assert success["sealcommit"]["replaced_objects"] > 0


def test_three_requests_per_file_and_a_head_each_when_asked(spark, s3, bed, prefix):
    """Each file costs CreateMultipartUpload, UploadPart and CompleteMultipartUpload: its
    encryption is proven by the Create response (RGW's Complete says nothing). With
    sealcommit.verify=head every object is HEADed as well."""
    path = f"s3a://direct-https/{prefix}"
    wire = Wire(bed)
    write(spark, A, "parquet", path, "errorifexists", True)
    ops, success = check_committed(s3, "direct-https", prefix, wire, expect_files_min=2)
    files = len(success["sealcommit"]["files"])
    assert (ops["init_multipart"], ops["complete_multipart"]) == (files, files)
    engine = [r for r in wire.rgw_requests() if "aws-sdk-rust" in r["agent"]]
    assert len(engine) >= 3 * files and not [r for r in engine if r["method"] == "HEAD"], engine
    assert "HeadObject" not in success["sealcommit"]["requests"]

    wire = Wire(bed)
    write(spark, B, "parquet", f"{path}-head", "errorifexists", True, **{"sealcommit.verify": "head"})
    ops, success = check_committed(s3, "direct-https", f"{prefix}-head", wire, expect_files_min=2)
    heads = {urllib.parse.unquote(r["uri"]) for r in wire.rgw_requests()
             if "aws-sdk-rust" in r["agent"] and r["method"] == "HEAD"}
    data = {f"/direct-https/{f['key']}" for f in success["sealcommit"]["files"]}
    assert data <= heads, (data, heads)
    assert success["sealcommit"]["requests"]["HeadObject"] >= len(data)


def test_failed_task_attempt_is_never_visible(spark, s3, bed, prefix):
    """The first attempt of every task uploads its files, then fails (injected); Spark retries
    it. Only the retry's uploads are completed; the failed attempt's are aborted."""
    path = f"s3a://direct-http/{prefix}"
    wire = Wire(bed)
    write(spark, A + B, "parquet", path, "errorifexists", False,
          **{"sealcommit.fault.task-commit": "fail-after-upload:0"})
    assert read(spark, "parquet", path) == sorted(A + B)
    ops, success = check_committed(s3, "direct-http", prefix, wire)
    files = len(success["sealcommit"]["files"])
    assert files == 2
    # Each task uploaded twice (attempt 0 and 1); attempt 0's uploads were aborted.
    assert ops["init_multipart"] == 2 * files, ops
    assert ops["abort_multipart"] == files, ops
    assert ops["complete_multipart"] == files, ops


def test_job_failing_in_tasks_leaves_nothing(spark, s3, bed, prefix):
    from pyspark.sql.functions import udf

    @udf("int")
    def explode(x):
        raise ValueError("boom")

    path = f"s3a://direct-http/{prefix}"
    df = spark.createDataFrame(A, SCHEMA).withColumn("amount", explode("amount"))
    with pytest.raises(Exception, match="boom"):
        df.write.parquet(path)
    assert list_keys(s3, "direct-http", prefix) == []
    assert pending_uploads(s3, "direct-http", prefix) == []


@pytest.mark.parametrize("point", ["after-journal", "before-replace"])
def test_failed_job_commit_rolls_back_and_keeps_old_data(spark, s3, bed, prefix, point):
    path = f"s3a://direct-http/{prefix}"
    write(spark, A, "parquet", path, "errorifexists", True)
    before = sorted(list_keys(s3, "direct-http", prefix))
    with pytest.raises(Exception, match=f"job commit stopped at {point}"):
        write(spark, C, "parquet", path, "overwrite", True, **{"sealcommit.fault.job-commit": point})
    assert read(spark, "parquet", path) == sorted(A)
    assert sorted(list_keys(s3, "direct-http", prefix)) == before
    assert pending_uploads(s3, "direct-http", prefix) == []


def test_failure_after_publishing_keeps_new_data_and_journal(spark, s3, bed, prefix):
    """Once old objects start being replaced, rolling back would lose data: the commit keeps the
    new output and its journal instead, and says so."""
    path = f"s3a://direct-http/{prefix}"
    write(spark, A, "parquet", path, "errorifexists", False)
    with pytest.raises(Exception) as err:
        write(spark, C, "parquet", path, "overwrite", False, **{"sealcommit.fault.job-commit": "before-success"})
    msg = str(err.value)
    assert "failed after its new files were completed and verified" in msg, msg
    assert "_sealcommit/" in msg and ".journal" in msg, msg
    assert read(spark, "parquet", path) == sorted(C)
    keys = list_keys(s3, "direct-http", prefix)
    assert [k for k in keys if "/_sealcommit/" in k and k.endswith(".journal")], keys
    assert f"{prefix}/_SUCCESS" not in keys
    assert pending_uploads(s3, "direct-http", prefix) == []
