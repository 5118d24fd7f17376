"""The pip package for PySpark users (python/): `bash python/build.sh` writes
build/python/sealcommit-<version>-py3-none-any.whl carrying the jar, and
`sealcommit.spark.configure(builder)` is all a PySpark job adds to its own settings.

* unit: `configure` on pyspark's real builder (no JVM) never overrides a user setting, appends
  to the user's `spark.jars`, and picks the checkpoint manager class of the Spark line;
* end to end, on Spark 3.5.7 and 4.3.0: a fresh venv with `pyspark==<line>` from PyPI and only
  the wheel runs the field job (tests/pip_job.py, copied out of the repository) against the test
  bed through the nginx http->https proxy under SSE-KMS: batch (users, read back, filtered
  write) and streaming (file source -> Parquet file sink, checkpoint on s3a, three batches over
  a restart). Checked on the store with boto3 and `sealcommit verify`, and on the wire (no copy).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.bed import stores
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1
from tests.conftest import (
    CLI, JAR, ROOT, STREAMING_PROTOCOL, PROTOCOL, Wire, assert_all_encrypted,
    assert_no_copy, field_s3a_conf, line_s3a, list_keys, spark_lines, WHOLE_SUITE_LINES, pending_uploads, success_json,
)

VERSION = re.fullmatch(r"sealcommit-(.+)\.jar", JAR.name).group(1)
WHEEL = ROOT / "build" / "python" / f"sealcommit-{VERSION}-py3-none-any.whl"
LINES = [spark_lines()[line]["pyspark"] for line in WHOLE_SUITE_LINES]  # 3.5.7, 4.3.0
CKPT_35 = "io.sealcommit.spark.SealCheckpointFileManager"
CKPT_41 = "io.sealcommit.spark.checkpointing.SealCheckpointFileManager"

USERS = [[1, "Alice", 100], [2, "Bob", 200], [3, "Charlie", 150]]
HIGH_VALUE = [[2, "Bob", 200], [3, "Charlie", 150]]
# One JSON file per micro-batch: batches 0 and 1 in the first run, 2 after the restart.
STREAM_FILES = [[[i, f"a{i}"] for i in range(4)], [[i, f"b{i}"] for i in range(10, 13)],
                [[i, f"c{i}"] for i in range(20, 25)]]


def _run(cmd, timeout: float, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, \
        f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    return p


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The wheel, built from the jar in build/libs by python/build.sh."""
    assert JAR.exists(), f"{JAR} missing: run tests/bed/build.sh"
    if WHEEL.exists():
        WHEEL.unlink()
    # The suite's own python (a venv, so pip is there even where the system python has none).
    p = _run(["bash", ROOT / "python" / "build.sh"], timeout=600, cwd=ROOT,
             env={**os.environ, "PYTHON": sys.executable})
    assert p.stdout.strip().splitlines()[-1] == str(WHEEL.relative_to(ROOT)), p.stdout
    with zipfile.ZipFile(WHEEL) as z:
        names = z.namelist()
        assert z.read(f"sealcommit/jars/{JAR.name}") == JAR.read_bytes()
        meta = z.read(f"sealcommit-{VERSION}.dist-info/METADATA").decode()
    assert {"sealcommit/__init__.py", "sealcommit/spark.py", "sealcommit/py.typed"} <= set(names), names
    # Users bring their own pyspark: the wheel requires nothing.
    assert "Requires-Dist" not in meta, meta
    return WHEEL


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed (no dependencies) into a directory of its own, for in-process tests."""
    target = tmp_path_factory.mktemp("pip-target")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--target", target, wheel], timeout=300)
    return target


@pytest.fixture
def sc_spark(installed, monkeypatch):
    """`sealcommit.spark` imported from the installed wheel (with this venv's pyspark)."""
    monkeypatch.syspath_prepend(str(installed))
    for name in [m for m in sys.modules if m == "sealcommit" or m.startswith("sealcommit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delenv("SPARK_HOME", raising=False)
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    import sealcommit
    import sealcommit.spark

    assert Path(sealcommit.__file__).is_relative_to(installed), sealcommit.__file__
    assert sealcommit.__version__ == VERSION
    assert sealcommit.jar_path() == installed / "sealcommit" / "jars" / JAR.name
    return sealcommit.spark


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory):
    """`fresh_venv(line)`: a new venv (made once per line) with `pyspark==<line>` from PyPI (pip's
    cache makes it a copy) and the wheel, and nothing else; its python."""
    made: dict[str, Path] = {}

    def make(line: str) -> Path:
        if line not in made:
            d = tmp_path_factory.mktemp(f"venv-{line}")
            t0 = time.monotonic()
            _run([sys.executable, "-m", "venv", d], timeout=300)
            py = d / "bin" / "python"
            _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"pyspark=={line}",
                  wheel], timeout=900)
            pkgs = {p["name"].lower() for p in json.loads(_run([py, "-m", "pip", "list", "--format=json",
                                                                  "--disable-pip-version-check"], 60).stdout)}
            assert pkgs - {"pip", "setuptools"} == {"pyspark", "py4j", "sealcommit"}, pkgs
            print(f"fresh venv for pyspark {line}: {time.monotonic() - t0:.0f}s", file=sys.stderr)
            made[line] = py
        return made[line]

    return make


# ------------------------------------------------------------------------------------------------
# configure(), without a JVM
# ------------------------------------------------------------------------------------------------

def _ckpt_for(version: str) -> str:
    return CKPT_41 if tuple(map(int, version.split(".")[:2])) >= (4, 1) else CKPT_35


def _installed_ckpt() -> str:
    import pyspark

    return _ckpt_for(pyspark.__version__)


@pytest.mark.parametrize("version,cls", [
    ("3.5.0", CKPT_35), ("3.5.7", CKPT_35), ("4.0.1", CKPT_35), ("4.0.0-preview2", CKPT_35),
    ("4.1.0", CKPT_41), ("4.1.0.dev0", CKPT_41), ("4.1.4", CKPT_41), ("4.3.0", CKPT_41), ("5.0.0", CKPT_41),
])
def test_checkpoint_manager_class_follows_the_spark_line(sc_spark, version, cls):
    assert sc_spark.checkpoint_manager_class(version) == cls
    assert sc_spark.settings(True, version)["spark.sql.streaming.checkpointFileManagerClass"] == cls


def test_checkpoint_manager_class_of_the_installed_and_the_spark_home_spark(sc_spark, tmp_path, monkeypatch):
    import pyspark

    assert sc_spark.spark_version() == pyspark.__version__
    assert sc_spark.checkpoint_manager_class() == _installed_ckpt()
    # pyspark launches $SPARK_HOME's Spark when it is set: its version decides.
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "spark-core_2.13-4.1.1.jar").write_bytes(b"")
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    assert sc_spark.spark_version() == "4.1.1"
    assert sc_spark.checkpoint_manager_class() == CKPT_41
    with pytest.raises(ValueError, match="not a Spark version"):
        sc_spark.checkpoint_manager_class("four")


def test_configure_fills_in_and_never_overrides(sc_spark):
    from pyspark.sql import SparkSession

    jar = str(sc_spark.jar_path())
    b = (SparkSession.builder.config("spark.jars", "/opt/jars/hadoop-aws-3.3.4.jar,/opt/jars/sdk.jar")
         .config("spark.sql.sources.commitProtocolClass", "com.example.UserProtocol")
         .config("spark.hadoop.fs.s3a.encryption.algorithm", "SSE-KMS"))
    before = dict(b._options)
    assert sc_spark.configure(b, streaming=True, spark_version="4.1.0") is b
    assert b._options == {
        **before,
        "spark.jars": f"/opt/jars/hadoop-aws-3.3.4.jar,/opt/jars/sdk.jar,{jar}",
        "spark.sql.sources.commitProtocolClass": "com.example.UserProtocol",  # the user's, kept
        "spark.sql.streaming.checkpointFileManagerClass": CKPT_41,
        "spark.sql.streaming.commitProtocolClass": STREAMING_PROTOCOL,
    }
    # A second call adds nothing: the jar is there once.
    sc_spark.configure(b, streaming=True, spark_version="4.1.0")
    assert b._options["spark.jars"].count("sealcommit-") == 1

    # Nothing set: the jar alone, the protocol, the classes of the installed Spark.
    b = sc_spark.configure(SparkSession.builder, streaming=True)
    assert b._options == {"spark.jars": jar, "spark.sql.sources.commitProtocolClass": PROTOCOL,
                          "spark.sql.streaming.checkpointFileManagerClass": _installed_ckpt(),
                          "spark.sql.streaming.commitProtocolClass": STREAMING_PROTOCOL}
    # streaming=False: batch only.
    b = sc_spark.configure(SparkSession.builder, streaming=False)
    assert b._options == {"spark.jars": jar, "spark.sql.sources.commitProtocolClass": PROTOCOL}
    # The user's own checkpoint manager and sealcommit jar (another build) stay.
    b = (SparkSession.builder.config("spark.jars", "/opt/sealcommit-0.0.9.jar")
         .config("spark.sql.streaming.checkpointFileManagerClass", "com.example.Manager"))
    sc_spark.configure(b)
    assert b._options["spark.jars"] == "/opt/sealcommit-0.0.9.jar"
    assert b._options["spark.sql.streaming.checkpointFileManagerClass"] == "com.example.Manager"
    # Settings given as a SparkConf or a map count as set too.
    from pyspark import SparkConf

    b = SparkSession.builder.config(conf=SparkConf(loadDefaults=False).set("spark.jars", "x.jar"))
    b = sc_spark.configure(b.config(map={"spark.sql.streaming.commitProtocolClass": "com.example.P"}))
    assert b._options["spark.jars"] == f"x.jar,{jar}"
    assert b._options["spark.sql.streaming.commitProtocolClass"] == "com.example.P"
    with pytest.raises(TypeError, match="SparkSession.Builder"):
        sc_spark.configure({"spark.jars": "x.jar"})


def test_configure_keeps_what_spark_defaults_conf_sets(sc_spark, tmp_path, monkeypatch):
    # A builder setting replaces spark-defaults.conf's for the same key: the file's spark.jars
    # (the user's hadoop-aws) must stay, and its classes count as the user's.
    from pyspark.sql import SparkSession

    (tmp_path / "spark-defaults.conf").write_text(
        "# operators' defaults\n"
        "spark.jars   /opt/jars/hadoop-aws-3.3.4.jar,/opt/jars/sdk.jar\n"
        "spark.sql.streaming.checkpointFileManagerClass=com.example.Manager\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert sc_spark.spark_defaults()["spark.jars"] == "/opt/jars/hadoop-aws-3.3.4.jar,/opt/jars/sdk.jar"
    b = sc_spark.configure(SparkSession.builder, streaming=True, spark_version="3.5.7")
    assert b._options == {
        "spark.jars": f"/opt/jars/hadoop-aws-3.3.4.jar,/opt/jars/sdk.jar,{sc_spark.jar_path()}",
        "spark.sql.sources.commitProtocolClass": PROTOCOL,
        "spark.sql.streaming.commitProtocolClass": STREAMING_PROTOCOL,
    }
    # The builder's own value still wins over the file's.
    b = sc_spark.configure(SparkSession.builder.config("spark.jars", "a.jar"), streaming=False)
    assert b._options["spark.jars"] == f"a.jar,{sc_spark.jar_path()}"


def test_configure_under_spark_submit_leaves_spark_jars_alone(sc_spark, monkeypatch):
    # The JVM is already running (spark-submit sets PYSPARK_GATEWAY_PORT): spark.jars would
    # replace --jars and could not reach the driver's class path anyway.
    from pyspark.sql import SparkSession

    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    b = sc_spark.configure(SparkSession.builder.config("spark.jars", "a.jar"), streaming=False)
    assert b._options == {"spark.jars": "a.jar", "spark.sql.sources.commitProtocolClass": PROTOCOL}


# ------------------------------------------------------------------------------------------------
# End to end: a fresh venv, pyspark from PyPI, only the wheel
# ------------------------------------------------------------------------------------------------

def _clean_env(venv_python: Path, **extra) -> dict:
    """The environment of a user's shell with the fresh venv activated; nothing pointing at the
    repository or at another Spark."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYSPARK", "SPARK_", "VIRTUAL_ENV")) and k != "SPARK_HOME"}
    bindir = venv_python.parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bindir.parent)
    env.update(extra)
    return env


def _line(pyspark_version: str) -> str:
    return ".".join(pyspark_version.split(".")[:2])


@pytest.mark.parametrize("line", LINES)
def test_fresh_venv_runs_the_field_job_batch_and_streaming(line, fresh_venv, bed, s3, prefix, tmp_path):
    s3a_jars = line_s3a(_line(line))["jars"]  # the line's own S3A
    for jar in s3a_jars:
        assert jar.exists(), f"{jar} missing: run tests/bed/install.sh"
    assert CLI.exists(), f"{CLI} missing: run tests/bed/build.sh"
    py = fresh_venv(line)
    job = tmp_path / "user" / "job.py"  # outside the repository
    job.parent.mkdir()
    shutil.copy(ROOT / "tests" / "pip_job.py", job)

    bucket = "spark-data"
    hadoop = field_s3a_conf(bed, _line(line))  # through the nginx http -> https proxy
    proxy = hadoop["fs.s3a.endpoint"]
    info = {"base": f"s3a://{bucket}/{prefix}", "hadoop": hadoop, "s3a_jars": [str(j) for j in s3a_jars],
            "users": USERS, "stream_files": STREAM_FILES}

    wire = Wire(bed)
    t0 = time.monotonic()
    # `-I`: neither the script's directory nor PYTHONPATH nor user site-packages on sys.path.
    p = subprocess.run([str(py), "-I", str(job)], cwd=job.parent, capture_output=True, text=True, timeout=900,
                       env=_clean_env(py, PIP_JOB=json.dumps(info)))
    took = time.monotonic() - t0
    out = [line_ for line_ in p.stdout.splitlines() if line_.startswith("RESULT ")]
    assert p.returncode == 0 and out, f"the job failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-8000:]}"
    print(f"pyspark {line}: the job ran in {took:.0f}s", file=sys.stderr)
    r = json.loads(out[-1][len("RESULT "):])

    # What ran: this line's pyspark from the venv, the wheel's package and jar, nothing of the repo.
    venv = py.parent.parent
    assert r["pyspark"] == line and r["spark_version"] == line, r
    assert r["sealcommit"] == VERSION
    assert Path(r["sealcommit_file"]).is_relative_to(venv), r["sealcommit_file"]
    assert Path(r["jar"]) == Path(r["sealcommit_file"]).parent / "jars" / JAR.name
    assert not [p_ for p_ in r["sys_path"] if p_ and Path(p_).resolve().is_relative_to(ROOT)], r["sys_path"]
    # configure() on this line's builder: the user's settings kept, the jar appended.
    ckpt_class = _ckpt_for(line)
    assert r["probe_returns_builder"] is True
    assert r["probe"] == {"spark.jars": f"/opt/jars/a.jar,/opt/jars/b.jar,{r['jar']}",
                          "spark.sql.sources.commitProtocolClass": "com.example.UserProtocol",
                          "spark.sql.streaming.checkpointFileManagerClass": ckpt_class,
                          "spark.sql.streaming.commitProtocolClass": STREAMING_PROTOCOL}, r["probe"]
    assert r["conf"] == {"spark.jars": ",".join([*info["s3a_jars"], r["jar"]]),
                         "spark.sql.sources.commitProtocolClass": PROTOCOL,
                         "spark.sql.streaming.checkpointFileManagerClass": ckpt_class,
                         "spark.sql.streaming.commitProtocolClass": STREAMING_PROTOCOL}, r["conf"]

    # Batch: exactly the field's rows, committed by sealcommit under the KMS key.
    assert r["users"] == sorted(USERS)
    assert r["high_value_users"] == HIGH_VALUE
    for table in ("users", "high_value_users"):
        keys = assert_all_encrypted(s3, bucket, f"{prefix}/{table}")
        success = success_json(s3, bucket, f"{prefix}/{table}")
        assert success["committer"] == "sealcommit" and success["sealcommit"]["version"] == VERSION
        assert success["sealcommit"]["verified"] is True
        data = sorted(k for k in keys if not k.endswith("/_SUCCESS"))
        assert data and all(k.endswith(".parquet") for k in data), keys
        assert sorted(f["key"] for f in success["sealcommit"]["files"]) == data
        assert all(f["encryption"] == {"algorithm": "SSE-KMS", "kms_key_id": KMS_KEY_1}
                   for f in success["sealcommit"]["files"])

    # Streaming: one batch per file, the third after a restart from the checkpoint on s3a.
    assert r["stream_run_1"] == [[0, 4], [1, 3]], r["stream_run_1"]
    assert r["stream_run_2"] == [[2, 5]], r["stream_run_2"]
    assert r["stream_rows"] == sorted(row for f in STREAM_FILES for row in f)
    ckpt, sink = f"{prefix}/stream/ckpt", f"{prefix}/stream/out"
    ckpt_keys = set(assert_all_encrypted(s3, bucket, ckpt))
    for b in range(3):
        for needed in (f"offsets/{b}", f"commits/{b}", f"sources/0/{b}"):
            assert f"{ckpt}/{needed}" in ckpt_keys, f"{needed} missing: {sorted(ckpt_keys)}"
    assert f"{ckpt}/metadata" in ckpt_keys
    sink_keys = assert_all_encrypted(s3, bucket, sink)
    sink_log = sorted(k for k in sink_keys if "/_spark_metadata/" in k)
    assert sink_log == [f"{sink}/_spark_metadata/{b}" for b in range(3)], sink_log
    assert len([k for k in sink_keys if k.endswith(".parquet")]) == 3, sink_keys
    everything = list_keys(s3, bucket, prefix)
    assert not [k for k in everything if ".tmp" in k or "_temporary" in k or "/_sealcommit/" in k], everything
    assert pending_uploads(s3, bucket, prefix) == []

    # On the wire: every write went through the proxy, none was a copy, none came from S3A.
    ops = assert_no_copy(wire)
    proxy_ops = wire.proxy_ops()
    assert proxy_ops["PutObject"] > 0 and proxy_ops["CompleteMultipartUpload"] > 0, proxy_ops
    s3a_writes = [q for q in wire.rgw_requests()
                  if q["method"] in ("PUT", "POST", "DELETE") and "aws-sdk-java" in q["agent"]]
    assert not s3a_writes, f"S3A wrote: {s3a_writes[:3]}"
    assert ops["copy_obj"] == 0

    # And what an operator sees: `sealcommit verify` over everything the job wrote.
    # `--deep` also opens every Parquet footer: the rows the job wrote, 3 + 2 + 12.
    v = subprocess.run([str(CLI), "verify", f"s3a://{bucket}/{prefix}", "--expect-algorithm", "SSE-KMS",
                        "--expect-key", KMS_KEY_1, "--conf", "fs.s3a.path.style.access=true", "--deep",
                        "--json", "--no-progress"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "AWS_ENDPOINT_URL": proxy, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                            "AWS_SECRET_ACCESS_KEY": stores.SECRET_KEY, "AWS_REGION": "us-east-1"})
    assert v.returncode == 0, f"sealcommit verify failed:\n{v.stdout}\n{v.stderr}"
    report = json.loads(v.stdout)
    assert report["mismatches"] == 0, report
    assert sorted(o["uri"] for o in report["objects"]) == sorted(f"s3a://{bucket}/{k}" for k in everything)
    assert report["parquet_files"] == len([k for k in everything if k.endswith(".parquet")])
    assert report["parquet_rows"] == len(USERS) + len(HIGH_VALUE) + sum(map(len, STREAM_FILES)), report
    assert stores.SECRET_KEY not in p.stdout + p.stderr + v.stdout + v.stderr
