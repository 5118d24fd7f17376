"""Shared fixtures: the real test bed (Ceph RGW, SeaweedFS, nginx, private CA), a Spark session
whose buckets reach the store through the field's three topologies, and helpers that check what
is really on the store with an independent client (boto3).

Topologies (one bucket each, all on the same RGW; S3A and sealcommit read the same per-bucket
`fs.s3a.bucket.<b>.*` settings):
  direct-http   Spark -> http  -> RGW
  via-proxy     Spark -> http  -> nginx -> https (private CA) -> RGW   (the field's Sidekick)
  direct-https  Spark -> https (private CA given as a PEM file)   -> RGW
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.bed import stores
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1, PORTS

ROOT = Path(__file__).resolve().parent.parent
JAR = ROOT / "build" / "libs" / "sealcommit-0.1.0.jar"
# tests/bed/build.sh: the CLI is built for the JNI library's target (glibc 2.17).
CLI = ROOT / "target" / "x86_64-unknown-linux-gnu" / "release" / "sealcommit"
CACHE = Path(os.environ.get("SEALCOMMIT_CACHE", Path.home() / ".cache" / "sealcommit"))

# Spark's scratch space (spark.local.dir: each session's copy of its spark.jars, block manager and
# shuffle files) in one directory per run, removed when the run ends (pytest_unconfigure). A driver
# that a test kills leaves its copies behind, and in /tmp they filled a CI machine's disk. Drivers
# the tests start inherit the variable, so they share the directory.
OWN_SPARK_DIR = None
if not os.environ.get("SPARK_LOCAL_DIRS"):
    OWN_SPARK_DIR = tempfile.mkdtemp(prefix="sealcommit-spark-")
    os.environ["SPARK_LOCAL_DIRS"] = OWN_SPARK_DIR

TOPOLOGIES = {
    "direct-http": "rgw_http",
    "via-proxy": "proxy",
    "direct-https": "rgw_https",
}
PROTOCOL = "io.sealcommit.spark.SealCommitProtocol"
STREAMING_PROTOCOL = "io.sealcommit.spark.SealStreamingCommitProtocol"

import pyspark  # noqa: E402

SPARK_MAJOR = int(pyspark.__version__.split(".")[0])
SPARK_VERSION = tuple(int(x) for x in pyspark.__version__.split(".")[:2])
# Spark 4.1 moved CheckpointFileManager to ...streaming.checkpointing; the jar has a manager for
# each side of the move.
CHECKPOINT_MANAGER = ("io.sealcommit.spark.checkpointing.SealCheckpointFileManager"
                      if SPARK_VERSION >= (4, 1) else "io.sealcommit.spark.SealCheckpointFileManager")


def spark_lines() -> dict[str, dict]:
    """tests/bed/lines.txt: each Spark line CI runs, with the S3A its users pair with it."""
    out = {}
    for row in (ROOT / "tests" / "bed" / "lines.txt").read_text().splitlines():
        if row.strip() and not row.startswith("#"):
            line, pyspark_version, hadoop, hadoop_aws, sdk, more, cloud = row.split()
            out[line] = {"pyspark": pyspark_version, "hadoop": hadoop, "hadoop_aws": hadoop_aws,
                         "sdk": sdk, "more": [] if more == "-" else more.split(","),
                         "cloud": None if cloud == "-" else cloud}
    return out


# The lines the whole suite runs on: the oldest and the newest (tests/run.sh); the packaging tests
# install on both.
WHOLE_SUITE_LINES = [min(spark_lines(), key=lambda v: tuple(map(int, v.split(".")))),
                     max(spark_lines(), key=lambda v: tuple(map(int, v.split("."))))]


def maven_jar(gav: str) -> Path:
    """Where tests/bed/install.sh puts group:artifact:version."""
    _, artifact, version = gav.split(":")
    return CACHE / "jars" / f"{artifact}-{version}.jar"


# Mixing lines: Spark 4 ships Hadoop 3.4/3.5, whose core-default.xml gives these S3A settings with
# time units and SDK v2 credential providers; hadoop-aws 3.3.4 (3.5's S3A) needs plain numbers and
# SDK v1 providers. Used only where Spark 4 runs beside 3.5's S3A (SEALCOMMIT_S3A_LINE=3.5 on
# Spark 4); a line's own S3A needs none of it.
S3A_ON_HADOOP_35 = {
    "fs.s3a.connection.establish.timeout": "30000",
    "fs.s3a.connection.timeout": "200000",
    "fs.s3a.threads.keepalivetime": "60",
    "fs.s3a.multipart.purge.age": "86400",
    # Hadoop 3.5's default provider list names AWS SDK v2 classes.
    "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
}


def line_s3a(spark_line: str, s3a_line: str | None = None) -> dict:
    """The S3A a Spark line runs with (tests/bed/lines.txt; `s3a_line` to mix in another line's):
    `jars` for spark.jars, `conf` the settings that S3A needs against this bed (`fs.s3a.` keys),
    `cloud` spark-hadoop-cloud's jar or None, `hadoop_aws`, `sdk_v2`."""
    row = spark_lines()[s3a_line or spark_line]
    sdk_v2 = row["sdk"].startswith("software.amazon.awssdk:")
    jars = [CACHE / "jars" / f"hadoop-aws-{row['hadoop_aws']}.jar", maven_jar(row["sdk"]), *map(maven_jar, row["more"])]
    conf = {}
    if sdk_v2:
        # Over http SDK v2 signs a 0-byte PUT (S3A's directory markers) aws-chunked, and RGW 16
        # answers 400 XAmzContentSHA256Mismatch; S3A 3.4+ still takes the SDK's unsigned-payload signer.
        conf["fs.s3a.signing-algorithm"] = "AWS4UnsignedPayloadSignerType"
    else:
        # S3A 3.3's uploads (copyFromLocalFile) need commons-collections 3, gone from Hadoop 3.4+.
        jars.append(CACHE / "jars" / "commons-collections-3.2.2.jar")
        if not spark_line.startswith("3."):
            conf.update(S3A_ON_HADOOP_35)
    return {"jars": jars, "conf": conf, "cloud": maven_jar(row["cloud"]) if row["cloud"] else None,
            "hadoop_aws": row["hadoop_aws"], "sdk_v2": sdk_v2}


LINE = f"{SPARK_VERSION[0]}.{SPARK_VERSION[1]}"
# The S3A beside sealcommit (reads, `exists`, and S3A's own writes where a test makes them): the
# running line's. SEALCOMMIT_S3A_LINE=3.5 runs another line's S3A instead ("mixing lines" in
# docs/COMPATIBILITY.md).
S3A_LINE = os.environ.get("SEALCOMMIT_S3A_LINE") or LINE
_S3A = line_s3a(LINE, S3A_LINE)
HADOOP_AWS = _S3A["hadoop_aws"]
SDK_V2 = _S3A["sdk_v2"]
S3A_JARS = _S3A["jars"]
# S3A's committers bound into Spark (PathOutputCommitProtocol): the S3A magic committer alone.
CLOUD_JAR = _S3A["cloud"]
S3A_LINE_CONF = _S3A["conf"]
# hadoop-aws 3.4.1 and 3.4.2 upload local files (copyFromLocalFile: RocksDB's SST files) aws-chunked
# with a trailing checksum even over https, and RGW 16 stores the framing in the object: Spark 4.0
# then fails to load RocksDB state (UNEXPECTED_FILE_SIZE), 4.1 runs on its local copy over a
# corrupt checkpoint (test_lines.py::test_s3a_upload_of_a_local_file_over_https).
S3A_UPLOADS_KEEP_FRAMING = HADOOP_AWS in ("3.4.1", "3.4.2")


def pytest_configure(config):
    config.addinivalue_line("markers", "sdk_v1: pins what S3A on the AWS SDK v1 does (Spark 3.5's S3A); "
                                       "skipped on lines whose S3A is on SDK v2")
    config.addinivalue_line("markers", "s3a_uploads: needs S3A's own uploads of local files (RocksDB's SST "
                                       "files) intact on RGW; skipped with hadoop-aws 3.4.1 and 3.4.2")


def pytest_unconfigure(config):
    if OWN_SPARK_DIR is not None:
        shutil.rmtree(OWN_SPARK_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"S3A on AWS SDK v1 only; Spark {LINE} runs hadoop-aws {HADOOP_AWS} on SDK v2 "
                                   "(test_field_failure.py pins what it does)")
    framing = pytest.mark.skip(reason=f"hadoop-aws {HADOOP_AWS}'s uploads of local files reach RGW 16 with "
                                      "their chunk framing: test_lines.py::test_s3a_upload_of_a_local_file_over_https")
    for item in items:
        if "sdk_v1" in item.keywords and SDK_V2:
            item.add_marker(skip)
        if "s3a_uploads" in item.keywords and S3A_UPLOADS_KEEP_FRAMING:
            item.add_marker(framing)


def field_s3a_conf(bed, line: str, secrets: bool = True) -> dict:
    """The field's S3A settings, unchanged: Spark -> http nginx -> https RGW, SSE-KMS with
    KMS_KEY_1 (the `spark.hadoop.` prefix left off), plus what Spark `line`'s own S3A needs against
    this bed (`line_s3a`). `secrets`: with the access and secret key (without, for a caller that
    passes them in a file)."""
    conf = {
        "fs.s3a.endpoint": bed.proxy.endpoint(PORTS["proxy_http"]),
        "fs.s3a.path.style.access": "true",
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.encryption.algorithm": "SSE-KMS",
        "fs.s3a.encryption.key": KMS_KEY_1,
    }
    if secrets:
        conf.update({"fs.s3a.access.key": ACCESS_KEY, "fs.s3a.secret.key": stores.SECRET_KEY})
    conf.update(line_s3a(line)["conf"])
    return conf


def bed_info(bed) -> dict:
    """What a driver in another process needs to attach to the running bed (`attach_bed`)."""
    return {"base": str(bed.base), "ca_dir": str(bed.ca.dir), "secret_key": stores.SECRET_KEY,
            "ports": dict(PORTS)}


def run_batch_driver(bed, timeout: float, **info):
    """Runs tests/batch_driver.py (a batch write in its own JVM) with `info`; its output."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / "tests" / "batch_driver.py")],
                          env={**os.environ, "BATCH_DRIVER": json.dumps({**bed_info(bed), **info})},
                          capture_output=True, text=True, timeout=timeout)


def attach_bed(info: dict):
    """The running test bed, from another process (a driver a test starts in its own JVM):
    `info` carries the bed's base dir, its CA dir, its ports and the per-run secret key."""
    stores.SECRET_KEY = info["secret_key"]
    PORTS.update(info["ports"])  # the same dict every module imported
    b = stores.Bed(Path(info["base"]))
    b.ca = stores.CA(Path(info["ca_dir"]))
    b.rgw = stores.Rgw(b.base / "rgw", b.ca, http_port=PORTS["rgw_http"], https_port=PORTS["rgw_https"])
    b.proxy = stores.Proxy(b.base / "nginx", b.ca, {})
    return b


@pytest.fixture(scope="session")
def bed(tmp_path_factory):
    base = Path(os.environ.get("SEALCOMMIT_BED_DIR") or tmp_path_factory.mktemp("bed"))
    b = stores.Bed(base).start()
    try:
        yield b
    finally:
        b.stop()


def endpoint(bed, topology: str) -> str:
    return {
        "direct-http": bed.rgw.http_endpoint,
        "via-proxy": bed.proxy.endpoint(PORTS["proxy_http"]),
        "direct-https": bed.rgw.https_endpoint,
    }[topology]


def s3a_conf(bed) -> dict:
    """The `spark.hadoop.*` settings users would have: S3A plus sealcommit's committer."""
    conf = {
        "fs.s3a.access.key": ACCESS_KEY,
        "fs.s3a.secret.key": stores.SECRET_KEY,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.endpoint": bed.rgw.http_endpoint,
        "fs.s3a.endpoint.region": "us-east-1",
        "fs.s3a.encryption.algorithm": "SSE-KMS",
        "fs.s3a.encryption.key": KMS_KEY_1,
        "fs.s3a.attempts.maximum": "1",
        "fs.s3a.retry.limit": "1",
        "sealcommit.tls.ca-file": bed.ca.ca_pem,
    }
    for bucket in TOPOLOGIES:
        conf[f"fs.s3a.bucket.{bucket}.endpoint"] = endpoint(bed, bucket)
    conf.update(S3A_LINE_CONF)
    return conf


def seaweed_keeps_s3a_retries(spark, bucket: str) -> None:
    """S3A on `bucket` (a SeaweedFS bucket) retries as users' S3A does: 3 attempts, 3 retries.
    s3a_conf's single attempt makes RGW's error paths fail fast; on SeaweedFS, under the load of
    two suites at once, it once turned a transient 500 on a GET into a failed read of the stock
    committer's output. sealcommit does not read these settings. Checked to reach S3A: call it
    before the bucket's first use."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hconf.set(f"fs.s3a.bucket.{bucket}.attempts.maximum", "3")
    hconf.set(f"fs.s3a.bucket.{bucket}.retry.limit", "3")
    jvm = spark._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI(f"s3a://{bucket}/"), hconf)
    assert fs.getConf().get("fs.s3a.retry.limit") == "3", f"the retry settings of {bucket} must reach S3A"


def log4j_config(path: Path, levels: dict, target: str = "SYSTEM_ERR") -> Path:
    """A log4j2 properties file as operators write them for Spark: everything at warn through one
    appender (`target` SYSTEM_ERR, or a file path), plus a level per logger name in `levels`
    (e.g. {"io.sealcommit": "debug"}). Lines read `LEVEL logger.name: message`."""
    lines = ["rootLogger.level = warn", "rootLogger.appenderRef.main.ref = main"]
    if target == "SYSTEM_ERR":
        lines += ["appender.main.type = Console", "appender.main.target = SYSTEM_ERR"]
    else:
        lines += ["appender.main.type = File", f"appender.main.fileName = {target}"]
    lines += ["appender.main.name = main", "appender.main.layout.type = PatternLayout",
              "appender.main.layout.pattern = %p %c: %m%n"]
    for i, (name, level) in enumerate(levels.items()):
        lines += [f"logger.l{i}.name = {name}", f"logger.l{i}.level = {level}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def spark_builder(bed, app: str, master: str = "local[2,2]", extra: dict | None = None,
                  log_config: Path | None = None):
    """A session builder with the jar, S3A and sealcommit's settings; `log_config` a log4j2
    properties file for the driver (see `log4j_config`)."""
    from pyspark.sql import SparkSession

    java_options = f"-Djavax.net.ssl.trustStore={bed.ca.truststore} -Djavax.net.ssl.trustStorePassword=changeit"
    if log_config is not None:
        java_options += f" -Dlog4j2.configurationFile=file:{log_config}"

    # S3A on the driver's class path, as images that bake hadoop-aws into $SPARK_HOME/jars have it
    # (spark.jars would copy the SDK bundle, 300-650 MB, into every session's scratch space).
    b = (SparkSession.builder.master(master).appName(app)
         .config("spark.jars", str(JAR))
         .config("spark.driver.extraClassPath", ":".join(str(j) for j in S3A_JARS))
         .config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2")
         .config("spark.sql.sources.commitProtocolClass", PROTOCOL)
         .config("spark.sql.streaming.checkpointFileManagerClass", CHECKPOINT_MANAGER)
         .config("spark.sql.streaming.commitProtocolClass", STREAMING_PROTOCOL)
         # S3A reads https through the JVM trust store; sealcommit uses the PEM file.
         .config("spark.driver.extraJavaOptions", java_options)
         .config("spark.hadoop.sealcommit.staging.dir", str(bed.base / "staging")))
    for k, v in {**s3a_conf(bed), **(extra or {})}.items():
        b = b.config(f"spark.hadoop.{k}", v)
    return b


@pytest.fixture(scope="session")
def spark(bed, s3):  # s3 creates the buckets
    assert JAR.exists(), f"{JAR} missing: run tests/bed/build.sh"
    s = spark_builder(bed, "sealcommit-tests").getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    # S3A caches one FileSystem per bucket, built from the conf of its first use: build them now
    # from the session's settings, so no test's write options decide them for later tests.
    jvm, hconf = s._jvm, s.sparkContext._jsc.hadoopConfiguration()
    for bucket in TOPOLOGIES:
        jvm.org.apache.hadoop.fs.Path(f"s3a://{bucket}/").getFileSystem(hconf)
    yield s
    s.stop()


@pytest.fixture
def dynamic(spark):
    """Dynamic partition overwrite for the test's writes."""
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    yield
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "static")


@pytest.fixture(scope="session")
def s3(bed):
    """boto3 clients per topology bucket (all reach the same RGW over plain http)."""
    client = bed.boto3(bed.rgw.http_endpoint)
    for bucket in [*TOPOLOGIES, "spark-data", "plain"]:
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
    return client


@pytest.fixture
def prefix(request):
    """A fresh key prefix per test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return f"t/{name}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------------
# What is on the store
# ------------------------------------------------------------------------------------------------

def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        kw = dict(Bucket=bucket, Prefix=prefix)
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def pending_uploads(s3, bucket: str, prefix: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def encryption_of(s3, bucket: str, key: str) -> tuple:
    h = s3.head_object(Bucket=bucket, Key=key)
    return h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")


def assert_all_encrypted(s3, bucket: str, prefix: str, kms_key: str = KMS_KEY_1) -> list[str]:
    keys = list_keys(s3, bucket, prefix)
    assert keys, f"nothing under s3://{bucket}/{prefix}"
    wrong = {k: encryption_of(s3, bucket, k) for k in keys}
    wrong = {k: v for k, v in wrong.items() if v != ("aws:kms", kms_key)}
    assert not wrong, f"objects not under SSE-KMS key {kms_key}: {wrong}"
    return keys


def success_json(s3, bucket: str, prefix: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/_SUCCESS")["Body"].read())


class Wire:
    """Counts what crossed the wire between two points of a test: RGW's own log of the S3
    operations it executed (authoritative: `copy_obj` is a CopyObject whatever the path), the
    request lines RGW logged, and nginx's access log (with the x-amz-copy-source header)."""

    def __init__(self, bed):
        self.bed = bed
        self.rgw0 = bed.rgw.log_offset()
        self.proxy0 = bed.proxy.log_offset()

    def _settle(self):
        # RGW and nginx write their logs asynchronously; wait until they stop growing.
        last = None
        for _ in range(20):
            now = (self.bed.rgw.log_offset(), self.bed.proxy.log_offset())
            if now == last:
                return
            last = now
            time.sleep(0.15)

    def rgw_ops(self):
        self._settle()
        return self.bed.rgw.ops_since(self.rgw0)

    def proxy_ops(self):
        self._settle()
        from collections import Counter

        return Counter(stores.classify(r) for r in self.bed.proxy.requests_since(self.proxy0))

    def proxy_requests(self) -> list[dict]:
        self._settle()
        return self.bed.proxy.requests_since(self.proxy0)

    def rgw_requests(self) -> list[dict]:
        self._settle()
        return self.bed.rgw.requests_since(self.rgw0)


def assert_no_copy(wire: Wire):
    ops = wire.rgw_ops()
    assert ops["copy_obj"] == 0, f"RGW executed CopyObject: {ops}"
    proxy = wire.proxy_ops()
    assert proxy["CopyObject"] == 0 and proxy["UploadPartCopy"] == 0, f"copies through the proxy: {proxy}"
    renamed = [r for r in wire.rgw_requests() if "_temporary" in r["uri"] or ".tmp" in r["uri"]]
    assert not renamed, f"temporary objects were written (rename-style commit): {renamed[:3]}"
    return ops


def clean_staging(bed):
    staging = bed.base / "staging"
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_upload_left_pending(request):
    """After every test that touched the store: ListMultipartUploads is empty in every bucket."""
    yield
    if "s3" not in request.fixturenames:
        return
    s3 = request.getfixturevalue("s3")
    left = {}
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        keys = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
        if keys:
            left[bucket] = keys
    assert not left, f"multipart uploads left pending after the test: {left}"
