"""The field job as a PySpark user runs it after `pip install sealcommit` (tests/test_pip.py).

test_pip.py copies this file out of the repository and runs it with the python of a fresh venv
holding only pyspark from PyPI and the sealcommit wheel, with `python -I`: nothing of the
repository is importable. Spark is configured only the way the package's users do it: their own
`fs.s3a.*` settings and S3A jars, then `sealcommit.spark.configure(builder, streaming=True)`.

Settings come from the environment variable PIP_JOB (JSON: endpoint, credentials, S3A jars,
destination, input rows), never from the command line. The job:
  batch      users -> <base>/users (Parquet); read back; SELECT * FROM users WHERE amount > 100
             -> <base>/high_value_users; read back
  streaming  JSON files (local) -> Parquet file sink <base>/stream/out, checkpoint
             <base>/stream/ckpt, one file per micro-batch (availableNow): two batches, then a
             restart from the checkpoint after a third file arrives: one more
and prints `RESULT <json>` with what it read back and what the session was configured with.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

info = json.loads(os.environ["PIP_JOB"])

import pyspark  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

import sealcommit  # noqa: E402
from sealcommit.spark import configure  # noqa: E402

result = {"pyspark": pyspark.__version__, "sealcommit": sealcommit.__version__,
          "sealcommit_file": sealcommit.__file__, "jar": str(sealcommit.jar_path()), "sys_path": sys.path}

# On this pyspark's own builder, without a JVM: what the user set stays as it is.
probe = (SparkSession.builder.config("spark.jars", "/opt/jars/a.jar,/opt/jars/b.jar")
         .config("spark.sql.sources.commitProtocolClass", "com.example.UserProtocol"))
result["probe_returns_builder"] = configure(probe, streaming=True) is probe
result["probe"] = {k: str(v) for k, v in probe._options.items()}

builder = (SparkSession.builder.master("local[2]").appName("pip-field-job")
           .config("spark.jars", ",".join(info["s3a_jars"]))  # hadoop-aws: the user's own
           .config("spark.ui.enabled", "false"))
for k, v in info["hadoop"].items():
    builder = builder.config(f"spark.hadoop.{k}", v)
spark = configure(builder, streaming=True).getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
conf = spark.sparkContext.getConf()
result["spark_version"] = spark.version
result["conf"] = {k: conf.get(k, None) for k in (
    "spark.jars", "spark.sql.sources.commitProtocolClass",
    "spark.sql.streaming.checkpointFileManagerClass", "spark.sql.streaming.commitProtocolClass")}

base = info["base"]
# --- batch: the field scenario ------------------------------------------------------------------
users = spark.createDataFrame([tuple(u) for u in info["users"]], "id INT, name STRING, amount INT")
users.write.mode("overwrite").parquet(f"{base}/users")
back = spark.read.parquet(f"{base}/users")
result["users"] = sorted(list(r) for r in back.collect())
back.createOrReplaceTempView("users")
spark.sql("SELECT * FROM users WHERE amount > 100").write.mode("overwrite").parquet(f"{base}/high_value_users")
result["high_value_users"] = sorted(list(r) for r in spark.read.parquet(f"{base}/high_value_users").collect())

# --- streaming: checkpoint and file sink on s3a ---------------------------------------------------
inbox = Path(tempfile.mkdtemp(prefix="pip-job-inbox-"))


def arrive(i: int) -> None:
    f = inbox / f"part-{i}.json"
    f.write_text("".join(json.dumps({"id": r[0], "event": r[1]}) + "\n" for r in info["stream_files"][i]))
    t = time.time() - 100 + i  # distinct modification times: the source takes the oldest first
    os.utime(f, (t, t))


def run_available_now() -> list:
    q = (spark.readStream.schema("id INT, event STRING").option("maxFilesPerTrigger", 1).json(str(inbox))
         .writeStream.format("parquet").option("path", f"{base}/stream/out")
         .option("checkpointLocation", f"{base}/stream/ckpt").trigger(availableNow=True).start())
    q.awaitTermination(300)
    if q.isActive:
        q.stop()
        raise RuntimeError("the availableNow query did not finish in 300 s")
    if q.exception() is not None:
        raise RuntimeError(f"the streaming query failed: {q.exception()}")
    return [[p["batchId"], p["numInputRows"]] for p in q.recentProgress]


for i in range(len(info["stream_files"]) - 1):
    arrive(i)
result["stream_run_1"] = run_available_now()
arrive(len(info["stream_files"]) - 1)
result["stream_run_2"] = run_available_now()  # restarts from the checkpoint on s3a
sink = spark.read.parquet(f"{base}/stream/out")  # through the sink's log, _spark_metadata
result["stream_rows"] = sorted(list(r) for r in sink.select("id", "event").collect())

spark.stop()
print("RESULT " + json.dumps(result), flush=True)
