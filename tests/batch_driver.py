"""A batch write in its own JVM, for tests that kill the driver (test_recovery.py) or need a
small heap (test_magic.py): writes `rows` rows (id, v) in 4 partitions as Parquet to `dest`, or
with `"lines": true` `rows` 100-character text lines from one task (one file), with the write
options `options`, save mode `mode` and Spark settings `spark_conf`; `log_config` a log4j2
properties file for the driver. Prints `HEAP <bytes>` (the
JVM's maximum heap), then `DONE` when the write succeeded, `ERROR <message>` otherwise."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conftest  # noqa: E402

info = json.loads(os.environ["BATCH_DRIVER"])
bed = conftest.attach_bed(info)
log_config = Path(info["log_config"]) if info.get("log_config") else None
b = conftest.spark_builder(bed, "batch-driver", master="local[2]", log_config=log_config)
for k, v in info.get("spark_conf", {}).items():
    b = b.config(k, v)
spark = b.getOrCreate()
if log_config is None:
    spark.sparkContext.setLogLevel("ERROR")
print(f"HEAP {spark._jvm.java.lang.Runtime.getRuntime().maxMemory()}", flush=True)
try:
    if info.get("lines"):
        from tests.test_magic import lines

        w = lines(spark, info["rows"]).write.format("text")
    else:
        w = spark.range(info["first"], info["first"] + info["rows"], 1, 4) \
            .selectExpr("id", "id * 2 AS v").write.format("parquet")
    w.options(**info.get("options", {})).mode(info["mode"]).save(info["dest"])
    print("DONE", flush=True)
except Exception as e:  # noqa: BLE001 - the message is what the test checks
    print("ERROR " + str(e).replace("\n", " | ")[:2000], flush=True)
    sys.exit(1)
spark.stop()
