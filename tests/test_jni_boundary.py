"""The JNI boundary in a real JVM (under -Xcheck:jni): which exception class each engine error
becomes, the fields a SealCommitException carries, and the typed records listings return.

tests/jvm/BoundaryProbe.java calls the engine through io.sealcommit.Native and the shim classes
against the real RGW bed and prints one RESULT line (JSON) per case:
- a bad setting at job open/setup, and a settings array that is not key/value pairs →
  SealCommitException, operation the engine call, no status, not retryable;
- an unreachable endpoint → SealCommitException, the S3 request named, no status, retryable;
- an unknown bucket → status 404, code NoSuchBucket, bucket and exact key, not retryable;
- a checkpoint read of a missing key → java.io.FileNotFoundException;
- a create-only write over an existing key → org.apache.hadoop.fs.FileAlreadyExistsException;
- a call on a handle that is not live → IllegalStateException;
- cpList → NativeEntry[] with exact sizes, directory flags and URIs (keys with spaces, unicode,
  '%', '=', ':'), and SealCheckpointFs.list's FileStatus built from them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pyspark
import pytest

from tests.bed import stores
from tests.conftest import JAR, ROOT, s3a_conf

BUCKET = "direct-http"
NAMES = ["plain", "with space.txt", "ünïcödé-ß.json", "100%25 done", "k=v=w", "a:b"]


def jdk_tool(name: str) -> str:
    java = shutil.which("java")
    assert java, "no java on PATH"
    tool = Path(java).resolve().parent / name
    return str(tool) if tool.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def probe(bed, s3, tmp_path_factory):
    """Every case's result, by case name; `prefix` the key prefix the probe wrote under."""
    assert JAR.exists(), f"{JAR} is missing: run tests/bed/build.sh"
    work = tmp_path_factory.mktemp("boundary")
    classpath = f"{work}:{JAR}:{Path(pyspark.__file__).parent / 'jars'}/*"
    subprocess.run([jdk_tool("javac"), "-Xlint:all,-path", "-Werror", "-encoding", "UTF-8", "-d", str(work),
                    "-cp", classpath, str(ROOT / "tests" / "jvm" / "BoundaryProbe.java")],
                   check=True, capture_output=True, text=True, timeout=120)
    settings = {**s3a_conf(bed), "sealcommit.staging.dir": str(work / "staging"),
                "sealcommit.retry.max-attempts": "2"}
    props = work / "settings.properties"
    # java.util.Properties: escape backslashes and the separators in values.
    props.write_text("".join(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in settings.items()),
                     encoding="utf-8")
    prefix = f"boundary-{uuid.uuid4().hex[:8]}"
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([jdk_tool("java"), "-Xcheck:jni", "-Xmx256m", "-cp", classpath,
                          "io.sealcommit.BoundaryProbe", str(props), BUCKET, prefix, missing],
                         cwd=work, capture_output=True, text=True, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert "FATAL ERROR" not in log and not list(work.glob("hs_err*")), log[-5000:]
    # -Xcheck:jni's complaints about the JNI layer (unchecked exceptions, bad references).
    assert "WARNING in native method" not in log, log[-5000:]
    assert stores.SECRET_KEY not in log
    results = {}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            print(r)
            results[r.pop("case")] = r
    return {"results": results, "prefix": prefix, "missing": missing}


def seal_failure(r: dict) -> dict:
    assert r.get("class") == "io.sealcommit.SealCommitException", r
    return r


def test_bad_setting_is_a_seal_commit_exception_naming_the_call(probe):
    r = seal_failure(probe["results"]["bad-setting"])
    assert "'SSE-KMX' is not an encryption algorithm" in r["message"], r
    assert "fs.s3a.encryption.algorithm" in r["message"], r
    assert r["operation"] == "jobOpen", r
    assert (r["bucket"], r["key"], r["status"], r["code"], r["retryable"]) == (None, None, -1, None, False), r


def test_settings_not_in_pairs_are_refused(probe):
    r = seal_failure(probe["results"]["odd-settings"])
    assert r["message"] == "invalid configuration: settings: 1 strings are not key, value pairs", r
    assert (r["operation"], r["status"], r["code"], r["retryable"]) == ("jobOpen", -1, None, False), r


def test_unreachable_endpoint_is_retryable_without_status(probe):
    r = seal_failure(probe["results"]["unreachable-endpoint"])
    assert "127.0.0.1:9" in r["message"] and "cannot be reached" in r["message"], r
    # The S3 request that could not be sent (cpExists's HEAD), not the engine call.
    assert (r["operation"], r["bucket"], r["key"]) == ("HeadObject", BUCKET, f"{probe['prefix']}/cp/x"), r
    assert (r["status"], r["code"], r["retryable"]) == (-1, None, True), r


def test_unknown_bucket_carries_status_code_bucket_and_key(probe):
    missing, prefix = probe["missing"], probe["prefix"]
    r = seal_failure(probe["results"]["missing-bucket-write"])
    key = f"{prefix}/cp/a b%=ü"
    assert r["message"].startswith(f"PutObject s3a://{missing}/{key} failed: HTTP 404 NoSuchBucket"), r
    assert (r["operation"], r["bucket"], r["key"]) == ("PutObject", missing, key), r
    assert (r["status"], r["code"], r["retryable"]) == (404, "NoSuchBucket", False), r
    # Job setup against the same bucket: its first request (the journal PUT) gets the same.
    s = seal_failure(probe["results"]["missing-bucket-setup"])
    assert s["message"].startswith(f"PutObject s3a://{missing}/{prefix}/out/_sealcommit/"), s
    assert (s["operation"], s["bucket"], s["status"], s["code"], s["retryable"]) == (
        "PutObject", missing, 404, "NoSuchBucket", False), s
    assert s["key"].startswith(f"{prefix}/out/_sealcommit/"), s


def test_missing_checkpoint_file_is_file_not_found(probe):
    r = probe["results"]["missing-key"]
    assert r["class"] == "java.io.FileNotFoundException", r
    assert r["message"].endswith("not found") and "no such file" in r["message"], r


def test_create_only_over_existing_is_file_already_exists(probe):
    r = probe["results"]["create-only-over-existing"]
    assert r["class"] == "org.apache.hadoop.fs.FileAlreadyExistsException", r
    assert "offsets/0 already exists" in r["message"], r


def test_call_on_a_handle_that_is_not_live(probe):
    r = probe["results"]["handle-not-live"]
    assert (r["class"], r["message"]) == ("java.lang.IllegalStateException",
                                          "sealcommit handle used after close"), r


def test_listing_is_typed_and_exact(probe, s3):
    prefix = probe["prefix"]
    r = probe["results"]["list"]
    assert "class" not in r, r
    v = r["value"]
    base = f"s3a://{BUCKET}/{prefix}/list"
    expected = {f"{base}/{n}": (False, i * 7) for i, n in enumerate(NAMES)}
    expected[f"{base}/sub dir"] = (True, 0)
    entries = {e["uri"]: (e["dir"], e["size"]) for e in v["entries"]}
    assert entries == expected, v["entries"]
    # Files carry their store modification time; recent, in milliseconds.
    for e in v["entries"]:
        if not e["dir"]:
            assert v["now"] - 600_000 < e["modified"] <= v["now"] + 60_000, e
    assert v["missing_dir"] == 0
    # The objects are really there under exactly those keys.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/list/")["Contents"]
    assert {o["Key"]: o["Size"] for o in listed} == {
        **{f"{prefix}/list/{n}": i * 7 for i, n in enumerate(NAMES)}, f"{prefix}/list/sub dir/inner": 3}
    # SealCheckpointFs.list: Hadoop FileStatus from the same records, paths unchanged.
    statuses = {s["path"]: (s["dir"], s["size"]) for s in v["statuses"]}
    assert statuses == expected, v["statuses"]
