"""The field failure, reproduced with the stock committer (Hadoop S3A 3.3.4 + AWS SDK v1), then
fixed by sealcommit in the very same setup.

(a) SeaweedFS with bucket-default SSE-KMS behind the http->https proxy (the Sidekick topology),
    no encryption settings on S3A: the task PUTs succeed, then the rename's CopyObject carries the
    source's KMS key and SDK v1 refuses it ("HTTPS must be used when sending customer encryption
    keys (SSE-C) to S3") — exactly the report.
(c) The same SeaweedFS bucket, with sealcommit told what the bucket default must apply: every
    object is checked against it, and a bucket default other than expected fails the job.
(b) Ceph RGW over https, the private CA in a JVM trust store, SSE-KMS: the rename's CopyObject
    reaches the store and gets 501 NotImplemented.
"""

from __future__ import annotations

import json

import pytest

from tests.bed.stores import PORTS
from tests.conftest import PROTOCOL, Wire, list_keys, pending_uploads
from tests.test_batch import SCHEMA, A, read

STOCK = "org.apache.spark.sql.execution.datasources.SQLHadoopMapReduceCommitProtocol"
FIELD_BUCKET = "spark-data"  # on SeaweedFS, bucket-default SSE-KMS
FIELD_KEY = "spark-encryption-key"


@pytest.fixture(scope="module")
def seaweed_field_bucket(bed, spark):
    """`spark-data` on SeaweedFS with bucket-level SSE-KMS, reached through the proxy; S3A and
    sealcommit send no encryption header for it (the field's setup)."""
    sw = bed.boto3(bed.seaweed.http_endpoint)
    sw.create_bucket(Bucket=FIELD_BUCKET)
    sw.put_bucket_encryption(Bucket=FIELD_BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": FIELD_KEY}}]})
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hconf.set(f"fs.s3a.bucket.{FIELD_BUCKET}.endpoint", f"http://127.0.0.1:{PORTS['sw_proxy_http']}")
    # An empty per-bucket algorithm turns the global SSE-KMS off for this bucket, for S3A and
    # sealcommit alike: the bucket's default encryption applies.
    hconf.set(f"fs.s3a.bucket.{FIELD_BUCKET}.encryption.algorithm", "")
    hconf.set(f"fs.s3a.bucket.{FIELD_BUCKET}.encryption.key", "")
    return sw


def stock_write_fails(spark, df, path) -> str:
    """Writes with Spark's stock commit protocol (FileOutputCommitter over S3A) and returns the
    error it fails with."""
    spark.conf.set("spark.sql.sources.commitProtocolClass", STOCK)
    try:
        with pytest.raises(Exception) as err:
            df.write.parquet(path)
    finally:
        spark.conf.set("spark.sql.sources.commitProtocolClass", PROTOCOL)
    return str(err.value)


def test_a_stock_committer_fails_like_the_field_and_sealcommit_commits(spark, bed, seaweed_field_bucket, prefix):
    sw = seaweed_field_bucket
    path = f"s3a://{FIELD_BUCKET}/{prefix}/users"
    df = spark.createDataFrame(A, SCHEMA)

    wire = Wire(bed)
    msg = stock_write_fails(spark, df, path)
    assert "HTTPS must be used when sending customer encryption keys (SSE-C) to S3" in msg, msg[:3000]
    assert "copyFile" in msg or "copyObject" in msg, "the failure must come from the rename's copy"
    proxy = wire.proxy_ops()
    assert proxy["PutObject"] > 0, f"the task PUTs went through first: {proxy}"
    assert proxy["CopyObject"] == 0  # refused client-side, before the wire

    wire = Wire(bed)
    df.write.mode("overwrite").parquet(path)  # the stock run left _temporary/ behind
    assert read(spark, "parquet", path) == sorted(A)
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
    assert "501" in msg and "Not Implemented" in msg.replace("NotImplemented", "Not Implemented"), msg[:3000]
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
    assert read(spark, "parquet", path) == sorted(A)
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
