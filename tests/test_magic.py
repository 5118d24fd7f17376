"""Magic mode (`sealcommit.mode=magic`) on real RGW with SSE-KMS: task output streams into its
multipart upload while the task writes, with bounded memory and no local disk; everything else
(what becomes visible, when, under which key) is as in staging mode."""

from __future__ import annotations

import math
import threading
import time

import pytest

from tests.conftest import Wire, run_batch_driver, assert_all_encrypted, assert_no_copy, list_keys, success_json

BUCKET = "direct-http"
PART = 5 << 20
IN_FLIGHT = 2
BOUND = PART * (IN_FLIGHT + 1)  # one part filling, IN_FLIGHT being uploaded
MAGIC = {"sealcommit.mode": "magic", "sealcommit.part-size": "5M",
         "sealcommit.magic.parts-in-flight": str(IN_FLIGHT)}
LINE = 101  # bytes per line of `lines()`, newline included


def lines(spark, n: int):
    """n distinct 100-character lines in ONE partition (one task, one file)."""
    return spark.range(0, n, 1, 1).selectExpr(
        "concat(lpad(CAST(id AS STRING), 10, '0'), repeat('x', 90)) AS value")


class LocalFiles(threading.Thread):
    """Records every file that appears under the staging directory while it runs."""

    def __init__(self, bed):
        super().__init__(daemon=True)
        self.root = bed.base / "staging"
        self.seen: set[str] = set()
        self.running = True

    def run(self):
        while self.running:
            if self.root.exists():
                self.seen |= {str(p) for p in self.root.rglob("*") if p.is_file()}
            time.sleep(0.01)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.join()


def test_a_file_larger_than_the_heap_streams_within_the_memory_bound_without_local_disk(spark, s3, bed, prefix):
    """One task of a JVM with a 512 MB heap (Spark's minimum is 450 MB) writes a 606 MB file."""
    path = f"s3a://{BUCKET}/{prefix}"
    rows = 6_000_000
    wire = Wire(bed)
    with LocalFiles(bed) as local:
        out = run_batch_driver(bed, 600, dest=path, rows=rows, lines=True, mode="errorifexists",
                               options=MAGIC, spark_conf={"spark.driver.memory": "512m"})
    assert "DONE" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    heap = int(out.stdout.split("HEAP ", 1)[1].split()[0])
    assert heap <= 512 << 20 and rows * LINE > heap, heap
    assert local.seen == set(), f"magic mode wrote local files: {sorted(local.seen)[:3]}"

    seal = success_json(s3, BUCKET, prefix)["sealcommit"]
    size = sum(f["size"] for f in seal["files"])
    assert len(seal["files"]) == 1 and size == rows * LINE
    assert size >= 35 * BOUND
    # The engine's own accounting of part buffers: never more than the bound.
    assert 0 < seal["buffer_peak"] <= BOUND, seal["buffer_peak"]
    requests = seal["requests"]
    assert requests["CreateMultipartUpload"] == 1
    assert requests["UploadPart"] == math.ceil(size / PART)
    assert requests["CompleteMultipartUpload"] == 1
    assert "HeadObject" not in requests  # the Create response proved the encryption
    assert_no_copy(wire)
    assert_all_encrypted(s3, BUCKET, prefix)
    back = spark.read.text(path)
    assert back.count() == rows
    assert back.selectExpr("min(value)", "max(value)").first() == (
        "0000000000" + "x" * 90, f"{rows - 1:010d}" + "x" * 90)

    # The watcher can see a task's local files: staging mode's are there while it writes.
    with LocalFiles(bed) as local:
        lines(spark, 300_000).write.text(f"{path}-staging")
    assert any("part-00000" in f for f in local.seen), sorted(local.seen)


def test_magic_partitioned_parquet_retries_overwrite_and_failures(spark, s3, bed, prefix, dynamic):
    from pyspark.sql import functions as F

    path = f"s3a://{BUCKET}/{prefix}"
    df = spark.range(1000).selectExpr("CAST(id AS INT) AS id", "CAST(id % 10 AS INT) AS p")
    # Every task's first attempt fails after its files were streamed: retried, counted once.
    df.repartition(4).write.options(**MAGIC) \
        .option("sealcommit.fault.task-commit", "fail-after-upload:0").partitionBy("p").parquet(path)
    expected = [(i, i % 10) for i in range(1000)]
    assert sorted(spark.read.parquet(path).select("id", "p").collect()) == expected
    assert_all_encrypted(s3, BUCKET, prefix)

    # Dynamic partition overwrite of one partition.
    spark.createDataFrame([(5000 + i, 3) for i in range(7)], "id INT, p INT") \
        .write.options(**MAGIC).mode("overwrite").partitionBy("p").parquet(path)
    expected = sorted([r for r in expected if r[1] != 3] + [(5000 + i, 3) for i in range(7)])
    assert sorted(spark.read.parquet(path).select("id", "p").collect()) == expected

    # A task failing in the middle of writing: its streams are aborted, nothing new is visible.
    before = sorted(list_keys(s3, BUCKET, prefix))
    boom = F.udf(lambda i: 1 // (i - 700), "int")
    with pytest.raises(Exception, match="ZeroDivisionError"):
        df.withColumn("x", boom("id")).write.options(**MAGIC).mode("append") \
            .partitionBy("p").parquet(path)
    assert sorted(list_keys(s3, BUCKET, prefix)) == before
    assert sorted(spark.read.parquet(path).select("id", "p").collect()) == expected
