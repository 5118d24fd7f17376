"""A streaming driver in its own JVM, for tests that must kill a driver or run two at once
(test_streaming.py). Rate source -> Parquet file sink through sealcommit, 1-second trigger.
Prints `BATCH <id> ROWS <numInputRows>` as batches complete and `ERROR <message>` if the query
fails; exits when batch `until` is done (0), on failure (1), or never if it is killed first.

With `slow`, every row of partition 1 sleeps 1.5 s, so each batch has a window in which
partition 0's file is uploaded and pending while partition 1 still runs."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conftest  # noqa: E402
from tests.test_streaming import stop_between_batches  # noqa: E402

info = json.loads(os.environ["STREAM_DRIVER"])

bed = conftest.attach_bed(info)
log_config = Path(info["log_config"]) if info.get("log_config") else None
spark = conftest.spark_builder(bed, "stream-driver", master="local[2]", log_config=log_config).getOrCreate()
spark.sparkContext.setLogLevel("ERROR")

from pyspark.sql import functions as F  # noqa: E402

src = (spark.readStream.format("rate").option("rowsPerSecond", info.get("rows_per_second", 2))
       .option("numPartitions", 2).load())
if info.get("slow"):
    src = src.where(F.expr(
        "length(if(spark_partition_id() = 1, "
        "reflect('java.lang.Thread', 'sleep', cast(1500 as bigint)), '')) >= 0"))
q = (src.select("value", "timestamp").writeStream.format("parquet")
     .option("checkpointLocation", info["checkpoint"]).option("path", info["sink"])
     .trigger(processingTime="1 second").start())
seen = -1
try:
    while True:
        if q.exception() is not None:
            raise RuntimeError(str(q.exception()))
        for p in q.recentProgress:  # every batch, even two completed within one poll
            if p["batchId"] > seen:
                seen = p["batchId"]
                print(f"BATCH {seen} ROWS {p['numInputRows']}", flush=True)
        if seen >= info["until"]:
            break
        time.sleep(0.2)
    stop_between_batches(q)
except Exception as e:  # noqa: BLE001 - the message is what the test checks
    print("ERROR " + str(e).replace("\n", " | "), flush=True)
    spark.stop()
    sys.exit(1)
spark.stop()
