"""The field scenario, end to end (README command 1).

Starts a local Ceph RGW with real SSE-KMS and nginx as the http->https proxy (the field's MinIO
Sidekick), then runs the job from the report with sealcommit as Spark's commit protocol:

    users (id, name, amount) -> s3a://spark-data/users (Parquet, SSE-KMS, through the proxy)
    read it back; SELECT * FROM users WHERE amount > 100 -> s3a://spark-data/high_value_users

and prints every committed object with its encryption and KMS key id (`sealcommit verify`), and
the store requests by operation as seen on the wire by the proxy. CopyObject must read 0.
Stops everything it started. Exit status 0 only if every check holds.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bed import stores  # noqa: E402
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1, PORTS  # noqa: E402
from tests.conftest import CLI, JAR, field_s3a_conf, line_s3a  # noqa: E402

USERS = [(1, "Alice", 100), (2, "Bob", 200), (3, "Charlie", 150)]


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="sealcommit-field-"))
    bed = stores.Bed(base, with_seaweed=False)
    banner("Starting Ceph RGW (SSE-KMS, https with a private CA) and nginx (http -> https proxy)")
    bed.start()
    failures = []
    try:
        bed.boto3(bed.rgw.http_endpoint).create_bucket(Bucket="spark-data")
        proxy = bed.proxy.endpoint(PORTS["proxy_http"])
        wire0, rgw0 = bed.proxy.log_offset(), bed.rgw.log_offset()

        from pyspark.sql import SparkSession

        # The field's S3A settings, unchanged, plus the two sealcommit lines.
        hadoop = field_s3a_conf(bed, "3.5")
        builder = (SparkSession.builder.master("local[2]").appName("field-scenario")
                   .config("spark.jars", ",".join(str(j) for j in [JAR, *line_s3a("3.5")["jars"]]))
                   .config("spark.ui.enabled", "false")
                   .config("spark.sql.sources.commitProtocolClass", "io.sealcommit.spark.SealCommitProtocol"))
        for k, v in hadoop.items():
            builder = builder.config(f"spark.hadoop.{k}", v)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")

        banner(f"Spark {spark.version} -> {proxy} (nginx) -> https RGW, SSE-KMS key {KMS_KEY_1}")
        users = spark.createDataFrame(USERS, "id INT, name STRING, amount INT")
        users.write.mode("overwrite").parquet("s3a://spark-data/users")
        back = spark.read.parquet("s3a://spark-data/users")
        back.orderBy("id").show()
        back.createOrReplaceTempView("users")
        high = spark.sql("SELECT * FROM users WHERE amount > 100")
        high.write.mode("overwrite").parquet("s3a://spark-data/high_value_users")
        result = sorted(tuple(r) for r in spark.read.parquet("s3a://spark-data/high_value_users").collect())
        banner("SELECT * FROM users WHERE amount > 100, read back from s3a://spark-data/high_value_users")
        spark.read.parquet("s3a://spark-data/high_value_users").orderBy("id").show()
        spark.stop()
        # What crossed the wire during the Spark job (the CLI below talks to the store too).
        ops = collections.Counter(stores.classify(r) for r in bed.proxy.requests_since(wire0)
                                  if r["port"] == PORTS["proxy_http"])
        rgw_ops = bed.rgw.ops_since(rgw0)
        if result != [(2, "Bob", 200), (3, "Charlie", 150)]:
            failures.append(f"high_value_users holds {result}, expected Bob and Charlie")

        banner("Committed objects (sealcommit verify s3a://spark-data)")
        env = dict(os.environ, AWS_ENDPOINT_URL=proxy, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                   AWS_SECRET_ACCESS_KEY=stores.SECRET_KEY, AWS_REGION="us-east-1")
        verify = subprocess.run([str(CLI), "verify", "s3a://spark-data", "--expect-algorithm", "SSE-KMS",
                                 "--expect-key", KMS_KEY_1, "--conf", "fs.s3a.path.style.access=true"],
                                env=env, text=True, capture_output=True)
        print(verify.stdout + verify.stderr, end="", flush=True)
        if verify.returncode != 0:
            failures.append("an object does not carry the requested SSE-KMS key")

        banner("Store requests by operation during the Spark job (on the wire, from the proxy's log)")
        for op in sorted(set(ops) | {"CopyObject"}):
            print(f"  {op:<26} {ops[op]:>5}")
        print(f"  (RGW's own log: {rgw_ops['copy_obj']} CopyObject executed)")
        if ops["CopyObject"] or ops["UploadPartCopy"] or rgw_ops["copy_obj"]:
            failures.append(f"CopyObject was used: proxy {ops['CopyObject']}, RGW {rgw_ops['copy_obj']}")
    finally:
        banner("Stopping the store and the proxy")
        bed.stop()

    if failures:
        banner("FAILED")
        for f in failures:
            print(f"  - {f}")
        return 1
    banner("OK: the job committed under SSE-KMS through the http proxy with zero CopyObject")
    return 0


if __name__ == "__main__":
    sys.exit(main())
