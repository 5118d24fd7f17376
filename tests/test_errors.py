"""Errors users hit, on the real stack: each fails the job at setup, before any byte of data is
written, with a message naming what is wrong and the setting that fixes it; nothing becomes
visible and no upload is left."""

from __future__ import annotations

import pytest

from tests.bed import stores
from tests.conftest import Wire, list_keys, pending_uploads
from tests.test_batch import A, write

CASES = {
    # RGW accepts `x-amz-server-side-encryption: AES256` and stores the object unencrypted.
    "sse-s3-ignored-by-rgw": ("direct-http", {"fs.s3a.encryption.algorithm": "SSE-S3"},
                              ["the store did not apply the requested encryption", "requested SSE-S3",
                               "the object has none"]),
    # RGW's testing KMS does not know this key: 403 "Failed to retrieve the actual key".
    "unknown-kms-key": ("direct-http", {"fs.s3a.encryption.key": "no-such-key-42"},
                        ["KMS key 'no-such-key-42'", "fs.s3a.encryption.key"]),
    # https to RGW, whose certificate a private CA signed, without that CA.
    "tls-unknown-ca": ("direct-https", {"sealcommit.tls.ca-file": ""},
                       ["certificate", "sealcommit.tls.ca-file"]),
    "unreachable-endpoint": ("direct-http", {"fs.s3a.bucket.direct-http.endpoint": "http://127.0.0.1:9",
                                             "sealcommit.retry.max-attempts": "1"},
                             ["127.0.0.1:9", "cannot be reached", "fs.s3a.endpoint"]),
    # Ceph RGW needs a key id for SSE-KMS (AWS would use its aws/s3 key).
    "sse-kms-without-key": ("direct-http", {"fs.s3a.encryption.key": ""},
                            ["needs a KMS key id", "fs.s3a.encryption.key"]),
    "unknown-algorithm": ("direct-http", {"fs.s3a.encryption.algorithm": "SSE-KMX"},
                          ["'SSE-KMX' is not an encryption algorithm", "fs.s3a.encryption.algorithm"]),
    "malformed-context": ("direct-http", {"fs.s3a.encryption.context": "project"},
                          ["'project' is not of the form key=value", "fs.s3a.encryption.context"]),
    "unreadable-ca-file": ("direct-https", {"sealcommit.tls.ca-file": "/nonexistent/ca.pem"},
                           ["/nonexistent/ca.pem", "sealcommit.tls.ca-file"]),
    "conflicting-per-bucket-settings": (
        "direct-http", {"fs.s3a.bucket.direct-http.encryption.algorithm": "SSE-KMS",
                        "fs.s3a.bucket.direct-http.server-side-encryption-algorithm": "AES256"},
        ["fs.s3a.bucket.direct-http.encryption.algorithm",
         "fs.s3a.bucket.direct-http.server-side-encryption-algorithm"]),
    "unknown-sealcommit-key": ("direct-http", {"sealcommit.part.size": "8M"}, ["sealcommit.part.size"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_error_names_the_problem_and_the_fix(spark, s3, bed, prefix, case):
    bucket, options, expected = CASES[case]
    path = f"s3a://{bucket}/{prefix}"
    wire = Wire(bed)
    with pytest.raises(Exception) as err:
        write(spark, A, "parquet", path, "errorifexists", False, **options)
    msg = str(err.value)
    for fragment in expected:
        assert fragment in msg, msg[:3000]
    assert stores.SECRET_KEY not in msg
    assert list_keys(s3, bucket, prefix) == []
    assert pending_uploads(s3, bucket, prefix) == []
    assert wire.rgw_ops()["init_multipart"] == 0, "the job failed at setup, before any task uploaded"
