"""The field failure, reproduced with the stock committer on each Spark line with the S3A its
users pair with it (tests/bed/lines.txt: 3.5 + hadoop-aws 3.3.4/AWS SDK v1, 4.x + 3.4/3.5/SDK v2),
then fixed by sealcommit in the very same setup. docs/COMPATIBILITY.md's per-line table cites these.

(a) SeaweedFS with bucket-default SSE-KMS behind the http->https proxy (the Sidekick topology),
    no encryption settings on S3A. SDK v1: the task PUTs succeed, then the rename's CopyObject
    carries the source's KMS key and SDK v1 refuses it ("HTTPS must be used when sending customer
    encryption keys (SSE-C) to S3") — exactly the report. SDK v2 has no such check: the copy goes
    out, SeaweedFS copies SSE-KMS objects, and the stock job commits — by copying every file.
(c) The same SeaweedFS bucket, with sealcommit told what the bucket default must apply: every
    object is checked against it, and a bucket default other than expected fails the job.
(b) Ceph RGW over https, the private CA in a JVM trust store, SSE-KMS: the rename's CopyObject
    reaches the store and gets 501 NotImplemented (every line).
(d) Ceph RGW behind the http->https proxy, SSE-KMS set on S3A (the field's topology on RGW).
    SDK v1 refuses the encrypted writes over http client-side; SDK v2 sends them, and the rename's
    CopyObject gets 501 from RGW at task commit.
(e) Structured Streaming with Spark's own checkpoint manager over S3A, SSE-KMS, http: SDK v1 refuses
    client-side; SDK v2 writes the first checkpoint file's temp object, whose rename gets 501, and
    the `.tmp` object stays behind.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.bed.stores import KMS_KEY_1, PORTS
from tests.conftest import (
    CHECKPOINT_MANAGER, PROTOCOL, SDK_V2, STREAMING_PROTOCOL, Wire, list_keys,
    pending_uploads, seaweed_keeps_s3a_retries,
)
from tests.test_batch import SCHEMA, A, read

STOCK = "org.apache.spark.sql.execution.datasources.SQLHadoopMapReduceCommitProtocol"
FIELD_BUCKET = "spark-data"  # on SeaweedFS, bucket-default SSE-KMS
FIELD_KEY = "spark-encryption-key"
# AWS SDK v1's client-side refusal of encrypted requests over http (the field's error).
SDK_V1_REFUSAL = "HTTPS must be used when sending customer encryption keys (SSE-C) to S3"


def is_501(msg: str) -> bool:
    return "501" in msg and "Not Implemented" in msg.replace("NotImplemented", "Not Implemented")


@pytest.fixture(scope="module")
def seaweed_field_bucket(bed, spark):
    """`spark-data` on SeaweedFS with bucket-level SSE-KMS, reached through the proxy; S3A and
    sealcommit send no encryption header for it (the field's setup)."""
    sw = bed.boto3(bed.seaweed.http_endpoint)
    sw.create_bucket(Bucket=FIELD_BUCKET)
    sw.put_bucket_encryption(Bucket=FIELD_BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": FIELD_KEY}}]})
    # SeaweedFS's local KMS creates a key on its first use without a lock held across the check
    # and the insert: two first PUTs at once (two tasks) could each make one, and the object
    # sealed under the losing key could never be read. One PUT first creates the key.
    sw.put_object(Bucket=FIELD_BUCKET, Key="key-warm-up", Body=b"x")
    sw.delete_object(Bucket=FIELD_BUCKET, Key="key-warm-up")
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hconf.set(f"fs.s3a.bucket.{FIELD_BUCKET}.endpoint", f"http://127.0.0.1:{PORTS['sw_proxy_http']}")
    # An empty per-bucket algorithm turns the global SSE-KMS off for this bucket, for S3A and
    # sealcommit alike: the bucket's default encryption applies.
    hconf.set(f"fs.s3a.bucket.{FIELD_BUCKET}.encryption.algorithm", "")
    hconf.set(f"fs.s3a.bucket.{FIELD_BUCKET}.encryption.key", "")
    seaweed_keeps_s3a_retries(spark, FIELD_BUCKET)
    return sw


def read_or_diagnose(spark, bed, sw, path: str) -> list:
    """The rows under `path`; if S3A cannot read them, fails with what SeaweedFS answers to a plain
    GET of each object and the errors it logged, so a store fault is told from a bad commit."""
    try:
        return read(spark, "parquet", path)
    except Exception as err:
        answers = {}
        for k in list_keys(sw, FIELD_BUCKET, path.removeprefix(f"s3a://{FIELD_BUCKET}/") + "/"):
            try:
                answers[k] = f"{len(sw.get_object(Bucket=FIELD_BUCKET, Key=k)['Body'].read())} bytes"
            except Exception as get_err:
                answers[k] = str(get_err)[:200]
        log = (bed.seaweed.base / "weed.log").read_text(errors="replace").splitlines()
        errors = [line for line in log if line.startswith("E")][-20:]
        raise AssertionError(f"S3A could not read {path}: {str(err)[:1500]}\n"
                             f"plain GETs now: {answers}\nSeaweedFS errors: {errors}") from err


def stock_write(spark, df, path):
    """Writes with Spark's stock commit protocol (FileOutputCommitter over S3A)."""
    spark.conf.set("spark.sql.sources.commitProtocolClass", STOCK)
    try:
        df.write.parquet(path)
    finally:
        spark.conf.set("spark.sql.sources.commitProtocolClass", PROTOCOL)


def stock_write_fails(spark, df, path) -> str:
    """Writes with Spark's stock commit protocol and returns the error it fails with."""
    with pytest.raises(Exception) as err:
        stock_write(spark, df, path)
    return str(err.value)


def test_a_stock_committer_fails_like_the_field_and_sealcommit_commits(spark, bed, seaweed_field_bucket, prefix):
    sw = seaweed_field_bucket
    path = f"s3a://{FIELD_BUCKET}/{prefix}/users"
    df = spark.createDataFrame(A, SCHEMA)

    wire = Wire(bed)
    if not SDK_V2:
        msg = stock_write_fails(spark, df, path)
        assert SDK_V1_REFUSAL in msg, msg[:3000]
        assert "copyFile" in msg or "copyObject" in msg, "the failure must come from the rename's copy"
        proxy = wire.proxy_ops()
        assert proxy["PutObject"] > 0, f"the task PUTs went through first: {proxy}"
        assert proxy["CopyObject"] == 0  # refused client-side, before the wire
    else:
        # SDK v2 sends the copy; SeaweedFS copies SSE-KMS objects: the stock job commits, by copying
        # each task file into place (twice with the v1 algorithm: task commit, then job commit).
        stock_write(spark, df, path)
        assert read_or_diagnose(spark, bed, sw, path) == sorted(A)
        proxy = wire.proxy_ops()
        files = [k for k in list_keys(sw, FIELD_BUCKET, f"{prefix}/users/") if k.endswith(".parquet")]
        assert files and proxy["CopyObject"] >= 2 * len(files), (proxy, files)
        for k in files:
            assert sw.head_object(Bucket=FIELD_BUCKET, Key=k).get("ServerSideEncryption") == "aws:kms", k

    wire = Wire(bed)
    df.write.mode("overwrite").parquet(path)  # the stock run left _temporary/ behind
    assert read_or_diagnose(spark, bed, sw, path) == sorted(A)
    proxy = wire.proxy_ops()
    assert proxy["CopyObject"] == 0 and proxy["UploadPartCopy"] == 0, proxy
    assert proxy["CompleteMultipartUpload"] == 2, proxy  # one per task
    keys = list_keys(sw, FIELD_BUCKET, f"{prefix}/users/")
    assert keys and f"{prefix}/users/_SUCCESS" in keys
    assert not [k for k in keys if "_temporary" in k], f"the stock committer's leftovers survived: {keys}"
    for k in keys:
        h = sw.head_object(Bucket=FIELD_BUCKET, Key=k)
        assert h.get("ServerSideEncryption") == "aws:kms", (k, h.get("ServerSideEncryption"))
    assert pending_uploads(sw, FIELD_BUCKET, f"{prefix}/users/") == []


def test_b_stock_committer_gets_501_on_rgw_https_and_sealcommit_commits(spark, s3, bed, prefix):
    path = f"s3a://direct-https/{prefix}/users"
    df = spark.createDataFrame(A, SCHEMA).coalesce(1)

    wire = Wire(bed)
    msg = stock_write_fails(spark, df, path)
    assert is_501(msg), msg[:3000]
    assert wire.rgw_ops()["copy_obj"] > 0, "the stock rename reached RGW as CopyObject"

    wire = Wire(bed)
    df.write.mode("overwrite").parquet(path)
    assert read(spark, "parquet", path) == sorted(A)
    assert wire.rgw_ops()["copy_obj"] == 0
    keys = list_keys(s3, "direct-https", f"{prefix}/users/")
    assert not [k for k in keys if "_temporary" in k], f"the stock committer's leftovers survived: {keys}"
    assert pending_uploads(s3, "direct-https", f"{prefix}/users/") == []


def test_c_bucket_default_encryption_is_verified_on_every_object(spark, bed, seaweed_field_bucket, prefix):
    sw = seaweed_field_bucket
    path = f"s3a://{FIELD_BUCKET}/{prefix}/users"
    df = spark.createDataFrame(A, SCHEMA)
    expect = {"sealcommit.bucket-default.algorithm": "SSE-KMS"}

    wire = Wire(bed)
    df.write.options(**expect).option("sealcommit.bucket-default.key", FIELD_KEY).parquet(path)
    assert read_or_diagnose(spark, bed, sw, path) == sorted(A)
    sent = [r for r in wire.proxy_requests() if r["method"] in ("PUT", "POST")]
    assert sent and not [r for r in sent if r["sse"]], f"encryption headers were sent: {sent[:3]}"
    seal = json.loads(sw.get_object(Bucket=FIELD_BUCKET, Key=f"{prefix}/users/_SUCCESS")["Body"].read())["sealcommit"]
    assert seal["verified"] and seal["files"]
    assert {(f["encryption"]["algorithm"], f["encryption"].get("kms_key_id")) for f in seal["files"]} == {
        ("SSE-KMS", FIELD_KEY)}

    other = f"s3a://{FIELD_BUCKET}/{prefix}/other"
    with pytest.raises(Exception) as err:
        df.write.options(**expect).option("sealcommit.bucket-default.key", "some-other-key").parquet(other)
    msg = str(err.value)
    assert "bucket's default encryption" in msg and "sealcommit.bucket-default.algorithm" in msg, msg[:2000]
    assert FIELD_KEY in msg, "the error says what the bucket applied"
    assert list_keys(sw, FIELD_BUCKET, f"{prefix}/other") == []


def test_d_stock_committer_through_the_proxy_to_rgw_fails_per_sdk_and_sealcommit_commits(spark, s3, bed, prefix):
    """The field's topology on RGW: http -> proxy -> https, SSE-KMS set on S3A."""
    bucket = "via-proxy"
    path = f"s3a://{bucket}/{prefix}/users"
    df = spark.createDataFrame(A, SCHEMA).coalesce(1)

    wire = Wire(bed)
    msg = stock_write_fails(spark, df, path)
    proxy = wire.proxy_ops()
    if not SDK_V2:
        # Refused client-side: no encrypted write ever reaches the wire.
        assert SDK_V1_REFUSAL in msg, msg[:3000]
        assert proxy["CopyObject"] == 0 and wire.rgw_ops()["copy_obj"] == 0, proxy
    else:
        # The task's SSE-KMS PUT goes out over http and succeeds; its rename's CopyObject reaches
        # RGW, gets 501 (not retried), and the task fails at commit.
        assert is_501(msg) and "AWSUnsupportedFeatureException" in msg, msg[:3000]
        # FileOutputCommitter's task commit: attempt directory -> task directory.
        assert re.search(r"copyFile\(\S*/_temporary/0/_temporary/attempt_\S+, \S*/_temporary/0/task_", msg), \
            "the failure must come from the task commit's rename: " + msg[:3000]
        assert proxy["PutObject"] >= 1 and proxy["CopyObject"] >= 1, proxy
        assert wire.rgw_ops()["copy_obj"] >= 1
        assert [r for r in wire.proxy_requests() if r["method"] == "PUT" and r["sse"]], \
            "the task PUTs carried SSE-KMS over http"

    wire = Wire(bed)
    df.write.mode("overwrite").parquet(path)
    assert read(spark, "parquet", path) == sorted(A)
    assert_no_copy_ops(wire)
    keys = list_keys(s3, bucket, f"{prefix}/users/")
    assert not [k for k in keys if "_temporary" in k], f"the stock committer's leftovers survived: {keys}"
    for k in keys:
        h = s3.head_object(Bucket=bucket, Key=k)
        assert (h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")) == ("aws:kms", KMS_KEY_1), k


def assert_no_copy_ops(wire: Wire):
    assert wire.rgw_ops()["copy_obj"] == 0
    proxy = wire.proxy_ops()
    assert proxy["CopyObject"] == 0 and proxy["UploadPartCopy"] == 0, proxy


def test_e_stock_checkpoint_manager_fails_per_sdk(spark, s3, bed, prefix):
    """Spark's own checkpoint manager (and file sink commit) over S3A with SSE-KMS over http."""
    bucket = "direct-http"
    ckpt = f"{prefix}/ckpt"
    for key in ("spark.sql.streaming.checkpointFileManagerClass", "spark.sql.streaming.commitProtocolClass"):
        spark.conf.unset(key)
    wire = Wire(bed)
    try:
        q = (spark.readStream.format("rate").option("rowsPerSecond", 5).load().writeStream
             .format("parquet").option("checkpointLocation", f"s3a://{bucket}/{ckpt}")
             .option("path", f"s3a://{bucket}/{prefix}/sink").start())
        try:
            q.awaitTermination(120)
            err = str(q.exception())
        except Exception as e:  # noqa: BLE001 - the failure is what this test looks at
            err = str(e)
        finally:
            q.stop()
    except Exception as e:  # noqa: BLE001 - it may also fail at start
        err = str(e)
    finally:
        spark.conf.set("spark.sql.streaming.checkpointFileManagerClass", CHECKPOINT_MANAGER)
        spark.conf.set("spark.sql.streaming.commitProtocolClass", STREAMING_PROTOCOL)
    keys = list_keys(s3, bucket, ckpt)
    if not SDK_V2:
        assert SDK_V1_REFUSAL in err, err[:2000]
    else:
        # The first checkpoint file (the metadata or offsets/0) is written to a temp object, whose
        # rename gets 501: the query dies before its first batch, and the temp object stays.
        assert is_501(err), err[:2000]
        assert "rename" in err.lower() or "copy" in err.lower(), err[:2000]
        assert wire.rgw_ops()["copy_obj"] >= 1
        assert [k for k in keys if k.endswith(".tmp")], f"no temp object left: {keys}"
    # Either way no micro-batch was ever committed (S3A 3.5 keeps directory markers: `commits/`).
    assert not [k for k in keys if re.search(r"/commits/\d+$", k)], keys
