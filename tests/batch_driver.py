"""A batch write in its own JVM, for tests that kill the driver (test_recovery.py): writes
`rows` rows (id, v) in 4 partitions as Parquet to `dest` with the write options `options` and
save mode `mode`. Prints `DONE` when the write succeeded, `ERROR <message>` otherwise."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conftest  # noqa: E402

info = json.loads(os.environ["BATCH_DRIVER"])
bed = conftest.attach_bed(info)
spark = conftest.spark_builder(bed, "batch-driver", master="local[2]").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
try:
    spark.range(info["first"], info["first"] + info["rows"], 1, 4).selectExpr("id", "id * 2 AS v") \
        .write.options(**info.get("options", {})).mode(info["mode"]).parquet(info["dest"])
    print("DONE", flush=True)
except Exception as e:  # noqa: BLE001 - the message is what the test checks
    print("ERROR " + str(e).replace("\n", " | ")[:2000], flush=True)
    sys.exit(1)
spark.stop()
