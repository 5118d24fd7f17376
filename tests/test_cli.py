"""`sealcommit verify` against the real store: the operator's proof of which key each object uses."""

from __future__ import annotations

import json
import os
import subprocess

from tests.bed import stores
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1, KMS_KEY_2
from tests.conftest import ROOT
from tests.test_batch import A, write

CLI = ROOT / "target" / "release" / "sealcommit"


def cli(bed, *args):
    env = dict(os.environ, AWS_ENDPOINT_URL=bed.rgw.https_endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=stores.SECRET_KEY, AWS_REGION="us-east-1", AWS_CA_BUNDLE=bed.ca.ca_pem)
    return subprocess.run([str(CLI), *args, "--conf", "fs.s3a.path.style.access=true"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_verify_reports_keys_and_fails_on_mismatch(spark, bed, prefix):
    uri = f"s3a://direct-http/{prefix}"
    write(spark, A, "parquet", uri, "errorifexists", False)

    ok = cli(bed, "verify", uri, "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_1, "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert len(report["objects"]) == 3 and report["mismatches"] == 0  # two parts and _SUCCESS
    assert {o["encryption"]["kms_key_id"] for o in report["objects"]} == {KMS_KEY_1}

    wrong = cli(bed, "verify", uri, "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_2)
    assert wrong.returncode == 1
    assert f"expected SSE-KMS with KMS key '{KMS_KEY_2}'" in wrong.stdout, wrong.stdout
    assert "3 objects, 3 mismatches" in wrong.stdout
    assert stores.SECRET_KEY not in wrong.stdout + wrong.stderr


def test_verify_with_a_bad_ca_file_names_the_setting(bed, prefix, tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    out = cli(bed, "verify", f"s3a://direct-http/{prefix}", "--conf", f"sealcommit.tls.ca-file={bad}")
    assert out.returncode == 2
    assert "sealcommit.tls.ca-file" in out.stderr and "no PEM certificate" in out.stderr, out.stderr
