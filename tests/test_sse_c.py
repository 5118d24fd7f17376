"""SSE-C: works over https; refused over plain http (the raw key would cross the wire in clear)
unless the user says the http hop is trusted."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os

import pytest

from tests.conftest import list_keys, pending_uploads
from tests.test_batch import A, write

KEY = base64.b64encode(os.urandom(32)).decode()
KEY_MD5 = base64.b64encode(hashlib.md5(base64.b64decode(KEY)).digest()).decode()
SSE_C = {"fs.s3a.encryption.algorithm": "SSE-C", "fs.s3a.encryption.key": KEY}
# The same through sealcommit's own keys, which S3A never reads: S3A (AWS SDK v1) refuses any
# SSE-C request over http itself, even a HEAD, if it ever sees SSE-C settings.
SEAL_SSE_C = {"sealcommit.encryption.algorithm": "SSE-C", "sealcommit.encryption.key": KEY}


def sse_c_args():
    return dict(SSECustomerAlgorithm="AES256", SSECustomerKey=base64.b64decode(KEY).decode("latin-1"))


def get_with_key(s3, bucket, key):
    # boto3 base64-encodes SSECustomerKey itself and computes the MD5.
    return s3.get_object(Bucket=bucket, Key=key, SSECustomerAlgorithm="AES256",
                         SSECustomerKey=base64.b64decode(KEY))["Body"].read()


def check_sse_c_output(s3, bucket, prefix):
    keys = list_keys(s3, bucket, prefix)
    assert f"{prefix}/_SUCCESS" in keys
    rows = []
    for k in keys:
        h = s3.head_object(Bucket=bucket, Key=k, SSECustomerAlgorithm="AES256", SSECustomerKey=base64.b64decode(KEY))
        assert h["SSECustomerAlgorithm"] == "AES256" and h["SSECustomerKeyMD5"] == KEY_MD5, k
        with pytest.raises(Exception, match="400|Bad Request"):
            s3.head_object(Bucket=bucket, Key=k)  # unreadable without the key
        body = get_with_key(s3, bucket, k)
        if k.endswith("_SUCCESS"):
            success = json.loads(body)
            assert success["sealcommit"]["requested_encryption"] == {"algorithm": "SSE-C", "sse_c_key_md5": KEY_MD5}
            assert KEY not in body.decode()
        else:
            rows += [(int(r["id"]), r["name"], int(r["amount"]), r["country"])
                     for r in csv.DictReader(io.StringIO(body.decode()))]
    assert sorted(rows) == sorted(A)
    assert pending_uploads(s3, bucket, prefix) == []


def test_sse_c_over_https(spark, s3, prefix):
    write(spark, A, "csv", f"s3a://direct-https/{prefix}", "errorifexists", False, **SSE_C)
    check_sse_c_output(s3, "direct-https", prefix)


def test_sse_c_over_http_is_refused_without_sending_the_key(spark, s3, bed, prefix):
    with pytest.raises(Exception) as err:
        write(spark, A, "csv", f"s3a://direct-http/{prefix}", "errorifexists", False, **SEAL_SSE_C)
    msg = str(err.value)
    assert "SSE-C sends the raw encryption key" in msg and "sealcommit.sse-c.allow-http=true" in msg, msg
    assert "sealcommit.encryption.algorithm" in msg, msg
    assert KEY not in msg
    assert list_keys(s3, "direct-http", prefix) == []


def test_sse_c_over_http_when_explicitly_allowed(spark, s3, prefix):
    write(spark, A, "csv", f"s3a://direct-http/{prefix}", "errorifexists", False,
          **SEAL_SSE_C, **{"sealcommit.sse-c.allow-http": "true"})
    check_sse_c_output(s3, "direct-http", prefix)
