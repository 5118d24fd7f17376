"""A batch driver on a standalone Spark cluster with speculation on, for test_speculation.py.
Writes 4 partitions of text through sealcommit; the first attempt of partition 0 stalls after
writing most of its rows, so Spark launches a speculative copy on the other worker. Every
attempt leaves a marker file naming its partition, attempt number and executor directory.
Prints `DONE` when the write succeeded, `ERROR <message>` otherwise."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conftest  # noqa: E402

info = json.loads(os.environ["SPEC_DRIVER"])
bed = conftest.attach_bed(info)
extra = {"sealcommit.mode": info["mode"], "sealcommit.part-size": "5M"}
b = conftest.spark_builder(bed, "speculation", master=info["master"], extra=extra)
for k, v in {"spark.speculation": "true", "spark.speculation.interval": "100ms",
             "spark.speculation.quantile": "0.5", "spark.speculation.multiplier": "2",
             "spark.speculation.minTaskRuntime": "1s", "spark.locality.wait": "0",
             "spark.executor.memory": "768m", "spark.executor.cores": "2", "spark.cores.max": "4",
             "spark.task.maxFailures": "1"}.items():
    b = b.config(k, v)
spark = b.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")

from pyspark import TaskContext  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

markers, rows, stall_at = info["markers"], info["rows"], info["stall_at"]


def line(i):
    tc = TaskContext.get()
    if i % (rows // 4) == 0:
        tag = f"p{tc.partitionId()}-a{tc.attemptNumber()}-{os.getcwd().replace('/', '_')}"
        Path(markers, tag).touch()
    if i == stall_at and tc.attemptNumber() == 0:
        time.sleep(120)
    return f"{i:010d}" + "x" * 90


try:
    spark.range(0, rows, 1, 4).select(F.udf(line, "string")("id").alias("value")) \
        .write.text(info["dest"])
    print("DONE", flush=True)
except Exception as e:  # noqa: BLE001 - the message is what the test checks
    print("ERROR " + str(e).replace("\n", " | ")[:2000], flush=True)
    spark.stop()
    sys.exit(1)
spark.stop()
