"""The S3A magic committer alone (spark-hadoop-cloud's PathOutputCommitProtocol, no sealcommit),
in its own driver JVM so its jar and settings stay out of the suite's session. Runs the scenarios
in `S3A_MAGIC_DRIVER` (JSON: the bed, `base` URIs per scenario) one after the other and prints,
for each, `RESULT {"scenario": ..., "ok": bool, "rows": [...] | "error": "..."}` between
`MARK <rgw log offset> <proxy log offset>` lines (the logs settled), so the test can count what
each scenario sent over the wire."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conftest  # noqa: E402
from tests.bed.stores import KMS_KEY_2  # noqa: E402

info = json.loads(os.environ["S3A_MAGIC_DRIVER"])
bed = conftest.attach_bed(info)
S3A_COMMITTER = {
    "spark.sql.sources.commitProtocolClass": "org.apache.spark.internal.io.cloud.PathOutputCommitProtocol",
    "spark.sql.parquet.output.committer.class": "org.apache.spark.internal.io.cloud.BindingParquetOutputCommitter",
    "spark.hadoop.mapreduce.outputcommitter.factory.scheme.s3a": "org.apache.hadoop.fs.s3a.commit.S3ACommitterFactory",
    "spark.hadoop.fs.s3a.committer.name": "magic",
    "spark.hadoop.fs.s3a.committer.magic.enabled": "true",
}
# S3A is on the class path (spark_builder); spark-hadoop-cloud replaces the sealcommit jar.
b = conftest.spark_builder(bed, "s3a-magic-driver", master="local[2]").config("spark.jars", str(conftest.CLOUD_JAR))
for k, v in S3A_COMMITTER.items():
    b = b.config(k, v)
spark = b.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
USERS = [(1, "Alice", 100), (2, "Bob", 200), (3, "Charlie", 150)]


def mark():
    w = conftest.Wire(bed)
    w._settle()
    print(f"MARK {bed.rgw.log_offset()} {bed.proxy.log_offset()}", flush=True)


def field(base):
    """The field's job: users written, read back, the high-value ones written."""
    users = spark.createDataFrame(USERS, "id INT, name STRING, amount INT")
    users.write.parquet(f"{base}/users")
    spark.read.parquet(f"{base}/users").createOrReplaceTempView("users")
    spark.sql("SELECT * FROM users WHERE amount > 100").write.parquet(f"{base}/high_value_users")
    return sorted(tuple(r) for r in spark.read.parquet(f"{base}/high_value_users").collect())


def per_write_key(base):
    """The multi-tenant case: this write asks for KMS_KEY_2 (the session's key is KMS_KEY_1)."""
    spark.createDataFrame([(1, "tenant-2")], "id INT, k STRING").write \
        .option("fs.s3a.encryption.key", KMS_KEY_2).parquet(f"{base}/folder2")
    return sorted(tuple(r) for r in spark.read.parquet(f"{base}/folder2").collect())


def dynamic_overwrite(base):
    rows = spark.range(20).selectExpr("CAST(id AS INT) AS id", "CAST(id % 2 AS INT) AS p")
    rows.write.partitionBy("p").parquet(base)
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    try:
        spark.createDataFrame([(100, 1)], "id INT, p INT").write.mode("overwrite").partitionBy("p").parquet(base)
    finally:
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", "static")
    return sorted(tuple(r) for r in spark.read.parquet(base).select("id", "p").collect())


SCENARIOS = {"field": field, "per-write-key": per_write_key, "dynamic-overwrite": dynamic_overwrite}
for name, base in info["scenarios"]:
    mark()
    try:
        result = {"scenario": name, "ok": True, "rows": SCENARIOS[name.split(":")[0]](base)}
    except Exception as e:  # noqa: BLE001 - the message is what the test checks
        result = {"scenario": name, "ok": False, "error": str(e)[:20000]}
    mark()
    print("RESULT " + json.dumps(result), flush=True)
spark.stop()
