"""Partition values as real tables have them: every character Spark escapes in paths, characters
that are not URI-safe, unicode, very long values, null and empty. In both modes (staging, magic),
through DataFrame writes, `INSERT ... PARTITION` (also into a partition with its own location),
dynamic partition overwrite of such a partition, the streaming file sink and a MapReduce job:
every row comes back in its partition, counted against what was written, and every object sits at
the key Spark's escaped path names, literally."""

from __future__ import annotations

import collections
import json
import uuid

import pytest

from tests.conftest import assert_all_encrypted, list_keys, pending_uploads, success_json

BUCKET = "direct-http"
SCHEMA = "id INT, p STRING"
MODES = ["staging", "magic"]

VALUES = [
    "New York", " leading and trailing ", "50%", "%25", "a=b", "N/A", "a/b/c", "x:y", "#tag",
    "what?", "a&b", "c+d", "it's", 'say "hi"', "back\\slash", "tab\there", "line\nbreak",
    "{brace}", "[x]", "^caret", "star*", "日本語", "Zürich", "emoji 😀", "München/東京=1%",
    "v" * 150 + "%" * 50,  # 300 characters once escaped: longer than a local file name may be
    "", None,
]

# Spark's ExternalCatalogUtils.escapePathName (on Linux): these become %XX in the directory name.
_ESCAPED = {chr(c) for c in range(0x01, 0x20)} | set("\"#%'*/:=?\\\x7f{[]^")
DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def escape(value: str | None) -> str:
    if value is None or value == "":
        return DEFAULT_PARTITION
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in value)


def rows_for(values, start=0, per_value=lambda i: i % 3 + 1):
    """Rows (id, p): value i gets 1-3 rows, ids unique."""
    rows, nid = [], start
    for i, v in enumerate(values):
        for _ in range(per_value(i)):
            rows.append((nid, v))
            nid += 1
    return rows


def expected_counts(rows) -> dict:
    # Spark writes null and the empty string to the default partition and reads both as null.
    return dict(collections.Counter(None if p in (None, "") else p for _, p in rows))


def counts_read(spark, path: str) -> dict:
    df = spark.read.schema(SCHEMA).parquet(path)
    return {r["p"]: r["n"] for r in df.groupBy("p").count().withColumnRenamed("count", "n").collect()}


def ids_read(spark, path: str) -> list:
    return sorted((r["id"], r["p"]) for r in spark.read.schema(SCHEMA).parquet(path).collect())


def normalized(rows) -> list:
    return sorted((i, None if p in (None, "") else p) for i, p in rows)


def check_keys(s3, prefix: str, values, bucket: str = BUCKET):
    """Every data object sits under `p=<escaped value>/`, the exact key Spark's path names."""
    keys = assert_all_encrypted(s3, bucket, prefix)
    data = [k for k in keys if not k.rsplit("/", 1)[-1].startswith(("_", "."))
            and "/_spark_metadata/" not in k]
    dirs = {k[len(prefix) + 1:].rsplit("/", 1)[0] for k in data}
    assert dirs == {f"p={escape(v)}" for v in values}, sorted(dirs ^ {f"p={escape(v)}" for v in values})
    assert pending_uploads(s3, bucket, prefix) == []
    return data


@pytest.mark.parametrize("mode", MODES)
def test_dataframe_write_keeps_every_row_in_its_partition(spark, s3, prefix, mode):
    path = f"s3a://{BUCKET}/{prefix}"
    rows = rows_for(VALUES)
    (spark.createDataFrame(rows, SCHEMA).repartition(3).write.option("sealcommit.mode", mode)
     .partitionBy("p").parquet(path))
    assert counts_read(spark, path) == expected_counts(rows)
    assert ids_read(spark, path) == normalized(rows)
    data = check_keys(s3, prefix, VALUES)
    files = success_json(s3, BUCKET, prefix)["sealcommit"]["files"]
    assert sorted(f["key"] for f in files) == sorted(data)


@pytest.mark.parametrize("mode", MODES)
def test_insert_into_partitions_static_dynamic_and_own_location(spark, s3, prefix, mode):
    # Over https: adding a partition with its own location makes Spark's catalog create the
    # directory through S3A, whose SSE-KMS PUT SDK v1 refuses over plain http.
    bucket = "direct-https"
    table = f"pv_{mode}_{uuid.uuid4().hex[:8]}"
    path = f"s3a://{bucket}/{prefix}/table"
    elsewhere = f"s3a://{bucket}/{prefix}/elsewhere/x y=50%"
    spark.conf.set("sealcommit.mode", mode)  # session conf reaches the job's Hadoop conf
    try:
        spark.sql(f"CREATE TABLE {table} ({SCHEMA}) USING parquet PARTITIONED BY (p) LOCATION '{path}'")
        static = ["a=b", "N/A", "50%", "x:y", "日本語", "it's", "back\\slash"]
        expected = []
        nid = 0
        for v in static:
            spark.sql(f"INSERT INTO {table} PARTITION (p={sql_literal(v)}) "
                      f"SELECT id FROM VALUES ({nid}), ({nid + 1}) AS t(id)")
            expected += [(nid, v), (nid + 1, v)]
            nid += 2
        # A partition with its own location (Spark writes it through newTaskTempFileAbsPath).
        spark.sql(f"ALTER TABLE {table} ADD PARTITION (p='own location') LOCATION '{elsewhere}'")
        spark.sql(f"INSERT INTO {table} PARTITION (p='own location') SELECT id FROM VALUES ({nid}) AS t(id)")
        expected.append((nid, "own location"))
        nid += 1
        # Dynamic partition values in one insert.
        dyn = rows_for(["New York", "#tag", "what?", "Zürich/東京"], start=nid)
        spark.createDataFrame(dyn, SCHEMA).createOrReplaceTempView(f"{table}_src")
        spark.sql(f"INSERT INTO {table} SELECT id, p FROM {table}_src")
        expected += dyn
        got = sorted((r["id"], r["p"]) for r in spark.table(table).collect())
        assert got == sorted(expected)
        assert len(got) == len(static) * 2 + 1 + len(dyn)
        own = list_keys(s3, bucket, f"{prefix}/elsewhere/x y=50%/")
        assert [k for k in own if k.endswith(".parquet")], own
        check_keys(s3, f"{prefix}/table", static + ["New York", "#tag", "what?", "Zürich/東京"], bucket)
    finally:
        spark.conf.unset("sealcommit.mode")
        spark.sql(f"DROP TABLE IF EXISTS {table}")


def sql_literal(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.mark.parametrize("mode", MODES)
def test_dynamic_overwrite_replaces_exactly_the_escaped_partitions(spark, s3, prefix, mode, dynamic):
    path = f"s3a://{BUCKET}/{prefix}"
    first = rows_for(VALUES)
    spark.createDataFrame(first, SCHEMA).repartition(2).write.option("sealcommit.mode", mode).partitionBy("p").parquet(path)
    replaced = ["a=b", "N/A", "50%", "München/東京=1%"]
    second = rows_for(replaced, start=10_000, per_value=lambda i: 4)
    (spark.createDataFrame(second, SCHEMA).write.mode("overwrite").option("sealcommit.mode", mode)
     .partitionBy("p").parquet(path))
    expected = [r for r in first if r[1] not in replaced] + second
    assert counts_read(spark, path) == expected_counts(expected)
    assert ids_read(spark, path) == normalized(expected)
    check_keys(s3, prefix, VALUES)


@pytest.mark.parametrize("mode", MODES)
def test_streaming_file_sink_keeps_every_row_in_its_partition(spark, s3, prefix, mode, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # null and "" both go to __HIVE_DEFAULT_PARTITION__: one in each batch, since Spark 3.5's file
    # sink would ask one task for the same file twice (sealcommit then fails the task).
    assert VALUES[-2:] == ["", None]
    batches = [rows_for(VALUES[:14] + [""]), rows_for(VALUES[14:-2] + [None], start=1000)]
    path = f"s3a://{BUCKET}/{prefix}/sink"
    written = []
    for n, rows in enumerate(batches):
        (src / f"{n}.json").write_text("".join(json.dumps({"id": i, "p": p}) + "\n" for i, p in rows))
        written += rows
        q = (spark.readStream.schema(SCHEMA).json(str(src)).writeStream.format("parquet")
             .option("sealcommit.mode", mode).partitionBy("p")
             .option("checkpointLocation", f"s3a://{BUCKET}/{prefix}/ckpt")
             .trigger(availableNow=True).start(path))
        q.awaitTermination(300)
        assert q.exception() is None, q.exception()
        assert counts_read(spark, path) == expected_counts(written)
    assert ids_read(spark, path) == normalized(written)
    check_keys(s3, f"{prefix}/sink", VALUES)


def test_mapreduce_output_dir_with_escaped_characters(spark, s3, prefix, tmp_path):
    from tests.test_mapreduce import run_mr_job

    src = tmp_path / "in.txt"
    src.write_text("".join(f"line {i:05d}\n" for i in range(300)))
    out = f"{prefix}/p=a%3Db/city=New York/ü"
    assert run_mr_job(spark, src, f"s3a://{BUCKET}/{out}")
    keys = sorted(list_keys(s3, BUCKET, prefix))
    assert keys == [f"{out}/_SUCCESS", f"{out}/part-m-00000", f"{out}/part-m-00001"]
    body = b"".join(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys[1:])
    assert sorted(line.split(b"\t", 1)[1].decode() for line in body.splitlines()) == \
        [f"line {i:05d}" for i in range(300)]
