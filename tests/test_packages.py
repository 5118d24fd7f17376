"""The Maven layout: `spark-submit --packages io.sealcommit:sealcommit:<version> --repositories
file://.../build/repo` runs the field job (issue 15 item 3).

`gradle publish` (run by tests/bed/build.sh) writes build/repo/io/sealcommit/sealcommit/<version>/.
- The layout: the jar is the one `gradle jar` built, the pom names the coordinates and lists no
  dependencies (Spark, Hadoop, Scala and SLF4J are the cluster's own), the sources jar holds a
  .java file for every class, and each file has the checksums Maven and Ivy check.
- The field job (tests/packages_job.py) through the pyspark venv's own `bin/spark-submit`, on
  Spark 3.5 and 4.3: a fresh Ivy directory per run (no cached jar can answer), the user's S3A
  (hadoop-aws 3.3.4) via `--jars`, SSE-KMS through the nginx http->https proxy. Checked: Ivy found
  sealcommit in the file:// repository and nothing else, the JVM loaded the native library from
  that jar, the exact rows, every object under its expected key with the requested KMS key
  (boto3 and `sealcommit verify --deep`), `_SUCCESS` written by sealcommit, and no CopyObject.
Credentials go to spark-submit in a 0600 properties file, never on its command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from tests.bed import stores
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1
from tests.conftest import (CACHE, CLI, JAR, ROOT, WHOLE_SUITE_LINES, Wire, field_s3a_conf, line_s3a, spark_lines, assert_all_encrypted,
                            assert_no_copy, list_keys, pending_uploads, success_json)

VERSION = re.search(r"sealcommit-(.+)\.jar$", JAR.name).group(1)
COORDS = f"io.sealcommit:sealcommit:{VERSION}"
REPO = ROOT / "build" / "repo"
PUBLISHED = REPO / "io" / "sealcommit" / "sealcommit" / VERSION
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
BUCKET = "spark-data"
USERS = [[1, "Alice", 100], [2, "Bob", 200], [3, "Charlie", 150]]
HIGH = [[2, "Bob", 200], [3, "Charlie", 150]]
PART = re.compile(r"part-\d{5}-[0-9a-f-]{36}-c000(\.snappy)?\.parquet")
# The pyspark venvs tests/bed/install.sh makes (tests/run.sh runs the suite on both lines).
SPARK_LINES = {line: spark_lines()[line]["pyspark"] for line in WHOLE_SUITE_LINES}  # 3.5, 4.3


def published(name: str) -> Path:
    path = PUBLISHED / name
    assert path.is_file(), f"{path} is missing: run tests/bed/build.sh (it runs `gradle jar publish`)"
    return path


# ------------------------------------------------------------------------------------------------
# The layout
# ------------------------------------------------------------------------------------------------

def test_layout_holds_the_jar_a_dependency_free_pom_and_sources():
    jar = published(f"sealcommit-{VERSION}.jar")
    assert jar.read_bytes() == JAR.read_bytes(), f"{jar} is not the jar gradle built ({JAR})"
    with zipfile.ZipFile(jar) as z:
        names = z.namelist()
    assert "native/linux-x86_64/libsealcommit.so" in names

    pom = ET.parse(published(f"sealcommit-{VERSION}.pom")).getroot()
    text = {tag: pom.findtext(f"m:{tag}", namespaces=POM_NS)
            for tag in ("groupId", "artifactId", "version", "packaging", "name", "description")}
    assert (text["groupId"], text["artifactId"], text["version"]) == ("io.sealcommit", "sealcommit", VERSION)
    assert text["packaging"] in (None, "jar")  # absent means jar
    assert text["name"] == "sealcommit" and text["description"]
    assert pom.find("m:dependencies", POM_NS) is None, \
        "the pom lists dependencies: Spark, Hadoop, Scala and SLF4J must stay compileOnly"
    assert pom.find("m:dependencyManagement", POM_NS) is None and pom.find("m:parent", POM_NS) is None
    assert [x.findtext("m:name", namespaces=POM_NS)
            for x in pom.findall("m:licenses/m:license", POM_NS)] == ["Apache-2.0"]

    # A .java file for every top-level class of the jar (spark41's included).
    classes = {n[:-len(".class")] for n in names if n.endswith(".class") and "$" not in n}
    assert "io/sealcommit/spark/SealCommitProtocol" in classes
    with zipfile.ZipFile(published(f"sealcommit-{VERSION}-sources.jar")) as z:
        sources = {n[:-len(".java")] for n in z.namelist() if n.endswith(".java")}
        assert "public class SealCommitProtocol" in z.read("io/sealcommit/spark/SealCommitProtocol.java").decode()
    assert classes - sources == set(), f"classes without sources: {sorted(classes - sources)}"
    assert sources - classes == set(), f"sources without classes: {sorted(sources - classes)}"

    # The artifact's metadata lists this version; every file has its md5 and sha1.
    meta_path = PUBLISHED.parent / "maven-metadata.xml"
    meta = ET.parse(meta_path).getroot()
    assert (meta.findtext("groupId"), meta.findtext("artifactId")) == ("io.sealcommit", "sealcommit")
    assert VERSION in [v.text for v in meta.findall("versioning/versions/version")]
    assert meta.findtext("versioning/release") == VERSION
    files = [*sorted(p for p in PUBLISHED.iterdir() if p.suffix in (".jar", ".pom")), meta_path]
    assert [p.name for p in files[:3]] == [f"sealcommit-{VERSION}-sources.jar", f"sealcommit-{VERSION}.jar",
                                           f"sealcommit-{VERSION}.pom"]
    for path in files:
        data = path.read_bytes()
        for ext, algorithm in (("md5", hashlib.md5), ("sha1", hashlib.sha1)):
            checksum = Path(f"{path}.{ext}")
            assert checksum.is_file(), f"{checksum} is missing"
            assert checksum.read_text().split()[0] == algorithm(data).hexdigest(), f"{checksum} is wrong"


# ------------------------------------------------------------------------------------------------
# spark-submit --packages
# ------------------------------------------------------------------------------------------------

def spark_venv(line: str) -> Path:
    """The pyspark venv of `line`, installed the way tests/run.sh does if it is not there yet."""
    version = SPARK_LINES[line]
    venv = CACHE / f"venv-{version}"
    if not (venv / "bin" / "spark-submit").exists():
        out = subprocess.run(["bash", str(ROOT / "tests" / "bed" / "install.sh")], capture_output=True,
                             text=True, env={**os.environ, "PYSPARK_VERSION": version}, timeout=1800)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return venv


def submit(bed, venv: Path, line: str, base: str, tmp: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Runs tests/packages_job.py with `spark-submit --packages`; its output and its Ivy dir."""
    ivy = tmp / "ivy"
    # Secrets in a file only this user can read, not on spark-submit's command line.
    props = tmp / "secrets.properties"
    props.touch(mode=0o600)
    props.write_text(f"spark.hadoop.fs.s3a.access.key={ACCESS_KEY}\n"
                     f"spark.hadoop.fs.s3a.secret.key={stores.SECRET_KEY}\n")
    assert props.stat().st_mode & 0o077 == 0
    hadoop = field_s3a_conf(bed, line, secrets=False)
    conf = {
        "spark.jars.ivy": str(ivy),
        "spark.sql.sources.commitProtocolClass": "io.sealcommit.spark.SealCommitProtocol",
        "spark.ui.enabled": "false",
        **{f"spark.hadoop.{k}": v for k, v in hadoop.items()},
    }
    cmd = [str(venv / "bin" / "spark-submit"), "--master", "local[2]", "--properties-file", str(props),
           "--packages", COORDS, "--repositories", REPO.resolve().as_uri(),
           "--jars", ",".join(str(j) for j in line_s3a(line)["jars"])]
    for k, v in conf.items():
        cmd += ["--conf", f"{k}={v}"]
    cmd += [str(ROOT / "tests" / "packages_job.py"), base]
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARK_", "PYSPARK_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python, SPARK_LOCAL_IP="127.0.0.1")
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    finally:
        props.unlink()
    (tmp / "spark-submit.log").write_text(out.stdout + out.stderr)
    print(f"spark-submit ({line}) took {time.monotonic() - t0:.1f}s; log in {tmp / 'spark-submit.log'}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    return out, ivy


def tagged(stdout: str, tag: str) -> str:
    lines = [line[len(tag) + 1:] for line in stdout.splitlines() if line.startswith(tag + " ")]
    assert len(lines) == 1, f"expected one {tag} line in the job's output: {stdout[-3000:]}"
    return lines[0]


def verify_deep(bed, uri: str) -> dict:
    env = dict(os.environ, AWS_ENDPOINT_URL=bed.rgw.http_endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=stores.SECRET_KEY, AWS_REGION="us-east-1")
    out = subprocess.run([str(CLI), "verify", uri, "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_1,
                          "--deep", "--json", "--conf", "fs.s3a.path.style.access=true"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.parametrize("line", list(SPARK_LINES))
def test_packages_runs_the_field_job(bed, s3, prefix, tmp_path, line):
    venv = spark_venv(line)
    jar = published(f"sealcommit-{VERSION}.jar")
    base = f"s3a://{BUCKET}/{prefix}"
    wire = Wire(bed)
    out, ivy = submit(bed, venv, line, base, tmp_path)
    log = out.stdout + out.stderr
    assert stores.SECRET_KEY not in log

    # The Spark line asked for, and sealcommit resolved from the file:// repository, alone.
    assert tagged(out.stdout, "SPARK").startswith(SPARK_LINES[line][:4])
    # (repo-1: the first --repositories entry; Ivy asks ~/.m2, its own cache, Maven Central and
    # spark-packages before it.)
    assert f"found io.sealcommit#sealcommit;{VERSION} in repo-1" in log, log[:4000]
    assert f"downloading file:{jar.resolve()} ..." in log, log[:4000]
    fetched = sorted(p.name for p in (ivy / "jars").iterdir())
    assert fetched == [f"io.sealcommit_sealcommit-{VERSION}.jar"], f"Ivy fetched {fetched}"
    ivy_jar = ivy / "jars" / fetched[0]
    assert ivy_jar.read_bytes() == jar.read_bytes()
    # Spark's jars: the user's S3A and the one Ivy fetched.
    assert sorted(tagged(out.stdout, "JARS").split(",")) == sorted([ivy_jar.as_uri(), *(j.as_uri() for j in line_s3a(line)["jars"])])
    # The committer's native library came from that jar: its one load line per JVM.
    loaded = re.findall(r"sealcommit (\S+) \(revision (\w+)\) loaded its native library for (\S+) from (.+)", log)
    assert len(loaded) == 1, f"expected one load line: {loaded}\n{log[-4000:]}"
    (version, revision, platform, where) = loaded[0]
    assert (version, platform) == (VERSION, "linux-x86_64") and where.startswith("the jar "), loaded

    # The exact rows, read back by the job after each write.
    assert json.loads(tagged(out.stdout, "USERS")) == USERS
    assert json.loads(tagged(out.stdout, "HIGH")) == HIGH

    # What is on the store: data files and _SUCCESS, under the requested KMS key, nothing else.
    assert_all_encrypted(s3, BUCKET, prefix, KMS_KEY_1)
    assert pending_uploads(s3, BUCKET, prefix) == []
    for table, rows in (("users", USERS), ("high_value_users", HIGH)):
        keys = list_keys(s3, BUCKET, f"{prefix}/{table}/")
        names = sorted(k[len(f"{prefix}/{table}/"):] for k in keys)
        assert names[0] == "_SUCCESS" and names[1:] and all(PART.fullmatch(n) for n in names[1:]), names
        success = success_json(s3, BUCKET, f"{prefix}/{table}")
        assert success["committer"] == "sealcommit"
        assert (success["sealcommit"]["version"], success["sealcommit"]["revision"]) == (VERSION, revision)
        assert success["sealcommit"]["verified"] is True
        assert sorted(f["key"] for f in success["sealcommit"]["files"]) == sorted(
            k for k in keys if not k.endswith("/_SUCCESS"))
        report = verify_deep(bed, f"{base}/{table}")
        assert report["mismatches"] == 0 and len(report["objects"]) == len(keys), report
        assert report["parquet_rows"] == len(rows), report
    assert list_keys(s3, BUCKET, f"{prefix}/") == sorted(list_keys(s3, BUCKET, f"{prefix}/users/")
                                                         + list_keys(s3, BUCKET, f"{prefix}/high_value_users/"))
    assert_no_copy(wire)
