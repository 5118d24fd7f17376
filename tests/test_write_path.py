"""More of the write path on real RGW with SSE-KMS: dynamic partition overwrite without rename,
SQL entry points, ORC and text, and per-write KMS keys in one session."""

from __future__ import annotations

import threading

import pytest

from tests.bed.stores import KMS_KEY_1, KMS_KEY_2
from tests.conftest import Wire, assert_all_encrypted, assert_no_copy, list_keys, pending_uploads, success_json

BUCKET = "direct-http"


def rows_1000(spark):
    return spark.range(1000).selectExpr("CAST(id AS INT) AS id", "CAST(id % 10 AS INT) AS p")


def test_dynamic_partition_overwrite_replaces_only_written_partitions(spark, s3, bed, prefix, dynamic):
    path = f"s3a://{BUCKET}/{prefix}"
    rows_1000(spark).repartition(4).write.partitionBy("p").parquet(path)
    old_p3 = [k for k in list_keys(s3, BUCKET, prefix) if "/p=3/" in k]
    assert old_p3

    wire = Wire(bed)
    spark.createDataFrame([(5000 + i, 3) for i in range(7)], "id INT, p INT") \
        .write.mode("overwrite").partitionBy("p").parquet(path)
    back = sorted(spark.read.parquet(path).select("id", "p").collect())
    # Partition 3 replaced, the 900 rows of the others untouched: not 1000 + 7, not 1334.
    assert back == sorted([(i, i % 10) for i in range(1000) if i % 10 != 3] + [(5000 + i, 3) for i in range(7)])
    keys = list_keys(s3, BUCKET, prefix)
    assert not set(old_p3) & set(keys), "the replaced partition's old files are gone"
    assert_no_copy(wire)
    assert_all_encrypted(s3, BUCKET, prefix)
    assert success_json(s3, BUCKET, prefix)["sealcommit"]["replaced_objects"] == len(old_p3)


def test_failed_dynamic_overwrite_keeps_every_partition(spark, s3, prefix, dynamic):
    path = f"s3a://{BUCKET}/{prefix}"
    rows_1000(spark).write.partitionBy("p").parquet(path)
    with pytest.raises(Exception, match="job commit stopped at before-replace"):
        spark.createDataFrame([(1, 3)], "id INT, p INT").write.mode("overwrite") \
            .option("sealcommit.fault.job-commit", "before-replace").partitionBy("p").parquet(path)
    assert sorted(spark.read.parquet(path).select("id", "p").collect()) == [(i, i % 10) for i in range(1000)]
    assert pending_uploads(s3, BUCKET, prefix) == []


def test_sql_insert_overwrite_partition_and_ctas(spark, s3, bed, prefix):
    loc = f"s3a://{BUCKET}/{prefix}"
    t, c = f"t_{prefix.rsplit('-', 1)[-1]}", f"c_{prefix.rsplit('-', 1)[-1]}"
    wire = Wire(bed)
    spark.sql(f"CREATE TABLE {t} (id INT, name STRING, p INT) USING parquet PARTITIONED BY (p) "
              f"LOCATION '{loc}/t'")
    spark.sql(f"INSERT INTO {t} VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 2)")
    spark.sql(f"INSERT INTO {t} SELECT 4, 'd', 1")
    spark.sql(f"INSERT OVERWRITE {t} PARTITION (p = 2) SELECT 9, 'z'")
    assert sorted(tuple(r) for r in spark.table(t).collect()) == [(1, "a", 1), (4, "d", 1), (9, "z", 2)]
    spark.sql(f"CREATE TABLE {c} USING orc LOCATION '{loc}/c' AS SELECT * FROM {t} WHERE p = 1")
    assert sorted(tuple(r) for r in spark.table(c).collect()) == [(1, "a", 1), (4, "d", 1)]
    assert_no_copy(wire)
    assert_all_encrypted(s3, BUCKET, prefix)
    spark.sql(f"DROP TABLE {t}")
    spark.sql(f"DROP TABLE {c}")


@pytest.mark.parametrize("fmt", ["orc", "text"])
def test_orc_and_text(spark, s3, bed, prefix, fmt):
    path = f"s3a://{BUCKET}/{prefix}"
    df = spark.createDataFrame([("a",), ("b",), ("c",)], "value STRING")
    wire = Wire(bed)
    df.write.format(fmt).save(path)
    assert sorted(r[0] for r in spark.read.format(fmt).load(path).collect()) == ["a", "b", "c"]
    assert_no_copy(wire)
    assert_all_encrypted(s3, BUCKET, prefix)


def write_with_key(spark, path, key):
    spark.createDataFrame([(1, key)], "id INT, k STRING").write.option("fs.s3a.encryption.key", key).parquet(path)


@pytest.mark.parametrize("order", [(KMS_KEY_1, KMS_KEY_2), (KMS_KEY_2, KMS_KEY_1)], ids=["key1-first", "key2-first"])
def test_per_write_kms_keys_in_one_session(spark, s3, prefix, order):
    """The multi-tenant case: one session, one bucket, each write under its own key, with no
    FileSystem cache setting."""
    for i, key in enumerate(order):
        write_with_key(spark, f"s3a://{BUCKET}/{prefix}/folder{i + 1}", key)
    for i, key in enumerate(order):
        assert_all_encrypted(s3, BUCKET, f"{prefix}/folder{i + 1}/", kms_key=key)
        back = spark.read.parquet(f"s3a://{BUCKET}/{prefix}/folder{i + 1}").collect()
        assert [tuple(r) for r in back] == [(1, key)], back


def test_per_write_kms_keys_from_two_threads_at_once(spark, s3, prefix):
    errors = []

    def run(folder, key):
        try:
            for n in range(3):
                write_with_key(spark, f"s3a://{BUCKET}/{prefix}/{folder}/{n}", key)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=("folder1", KMS_KEY_1)),
               threading.Thread(target=run, args=("folder2", KMS_KEY_2))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for folder, key in (("folder1", KMS_KEY_1), ("folder2", KMS_KEY_2)):
        keys = assert_all_encrypted(s3, BUCKET, f"{prefix}/{folder}/", kms_key=key)
        assert sorted(k for k in keys if k.endswith("_SUCCESS")) == [
            f"{prefix}/{folder}/{n}/_SUCCESS" for n in range(3)]
        for n in range(3):
            back = spark.read.parquet(f"s3a://{BUCKET}/{prefix}/{folder}/{n}").collect()
            assert [tuple(r) for r in back] == [(1, key)], back


def test_key_pinned_per_output_with_table_options(spark, s3, prefix):
    """A table's OPTIONS reach the job configuration of every write to it: the way to pin a KMS
    key to one output location, whatever the session's default key."""
    name = f"pinned_{prefix.rsplit('-', 1)[-1]}"
    loc = f"s3a://{BUCKET}/{prefix}"
    spark.sql(f"CREATE TABLE {name} (id INT) USING parquet LOCATION '{loc}' "
              f"OPTIONS ('fs.s3a.encryption.key' '{KMS_KEY_2}')")
    try:
        spark.sql(f"INSERT INTO {name} VALUES (1), (2)")
        spark.createDataFrame([(3,)], "id INT").write.insertInto(name)
        assert sorted(r.id for r in spark.table(name).collect()) == [1, 2, 3]
        assert_all_encrypted(s3, BUCKET, prefix, kms_key=KMS_KEY_2)
    finally:
        spark.sql(f"DROP TABLE {name}")


def test_concurrent_jobs_on_one_table_keep_each_others_uploads(spark, s3, prefix):
    """Job B's tasks have uploaded (pending) while job A writes another partition of the same
    table and commits: A's commit must not abort or replace B's uploads."""
    import time

    from pyspark.sql import functions as F

    path = f"s3a://{BUCKET}/{prefix}"
    stall = F.udf(lambda i: (time.sleep(8) if i == 1750 else None) or i, "long")
    errors = []

    def job_b():
        try:
            spark.range(1000, 2000, 1, 4).select(stall("id").alias("id")).selectExpr(
                "CAST(id AS INT) AS id", "2 AS p").write.mode("append").partitionBy("p").parquet(path)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    b = threading.Thread(target=job_b)
    b.start()
    deadline = time.time() + 60
    while not pending_uploads(s3, BUCKET, prefix) and time.time() < deadline:
        time.sleep(0.2)
    assert pending_uploads(s3, BUCKET, prefix), "job B never had a task committed"
    spark.range(0, 1000, 1, 2).selectExpr("CAST(id AS INT) AS id", "1 AS p") \
        .write.mode("append").partitionBy("p").parquet(path)
    b_pending = pending_uploads(s3, BUCKET, prefix)
    b.join()
    assert not errors, errors
    assert b_pending, "job A committed while job B's uploads were pending"
    back = sorted(spark.read.parquet(path).select("id", "p").collect())
    assert back == [(i, 1) for i in range(1000)] + [(i, 2) for i in range(1000, 2000)]
    assert_all_encrypted(s3, BUCKET, prefix)
