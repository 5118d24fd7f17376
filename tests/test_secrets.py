"""No secret (secret key, session token, SSE-C key) reaches a log, an exception, `_SUCCESS`, a
journal or the local staging area."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys

from tests.bed import stores
from tests.conftest import ROOT, bed_info, list_keys, log4j_config

PROBES = ["sse-kms", "sse-c-https", "sse-c-http", "token", "bad-kms"]


def test_no_secret_in_logs_errors_or_files(bed, s3, prefix, tmp_path):
    sse_c_key = base64.b64encode(os.urandom(32)).decode()
    token = "sc-token-" + secrets.token_hex(16)
    s3.create_bucket(Bucket="tokens")
    config = log4j_config(tmp_path / "log4j2.properties", {"io.sealcommit": "debug"})
    env = dict(os.environ, LEAK_PROBE=json.dumps({
        **bed_info(bed), "prefix": prefix, "sse_c_key": sse_c_key, "session_token": token,
        "log_config": str(config)}))
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "leak_probe.py")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    results = {line.split(":")[0][6:]: line for line in out.stdout.splitlines() if line.startswith("PROBE ")}
    assert sorted(results) == sorted(PROBES), text[-4000:]
    assert results["sse-kms"].endswith(": ok") and results["sse-c-https"].endswith(": ok"), results
    assert "sealcommit.sse-c.allow-http" in results["sse-c-http"], results["sse-c-http"]
    # RGW ignores a session token on a static user's requests, so this write succeeds; the token
    # still went out signed on every request of the engine.
    assert results["token"].endswith(": ok"), results["token"]
    assert "KMS key 'missing-key'" in results["bad-kms"], results["bad-kms"]
    assert "DEBUG io.sealcommit.engine.store: " in out.stderr, "the engine's debug log was not captured"

    # Everything that was written, on the store and on local disk.
    stored = []
    for bucket in ("direct-http", "direct-https", "tokens"):
        for key in list_keys(s3, bucket, prefix):
            kw = {}
            if "/ssec" in key:
                kw = dict(SSECustomerAlgorithm="AES256", SSECustomerKey=base64.b64decode(sse_c_key))
            stored.append(s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read().decode("latin-1"))
    assert len(stored) >= 4  # two data files and _SUCCESS of the kms write, at least
    staging = [p.read_text("latin-1") for p in (bed.base / "staging").rglob("*") if p.is_file()]

    raw_sse_c = base64.b64decode(sse_c_key).decode("latin-1")
    for name, value in [("secret key", stores.SECRET_KEY), ("access key", stores.ACCESS_KEY), ("session token", token),
                        ("SSE-C key", sse_c_key), ("raw SSE-C key", raw_sse_c)]:
        assert value not in text, f"{name} leaked into the driver's output"
        assert not [s for s in stored if value in s], f"{name} leaked into an object on the store"
        assert not [s for s in staging if value in s], f"{name} leaked into the staging area"
