"""A Hadoop MapReduce job (local job runner, in the test's JVM) committing through
`SealCommitterFactory` on real RGW with SSE-KMS: task pendingsets are saved on the store, the
job commit completes them; a failed job commit leaves nothing."""

from __future__ import annotations

import pytest

from tests.conftest import Wire, assert_all_encrypted, assert_no_copy, list_keys, success_json

BUCKET = "direct-http"
LINES = 600


def run_mr_job(spark, src, dest: str, extra: dict | None = None) -> bool:
    """A map-only identity job: TextInputFormat -> TextOutputFormat on s3a://, two map tasks."""
    jvm = spark._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration(spark.sparkContext._jsc.hadoopConfiguration())
    conf.set("mapreduce.framework.name", "local")
    conf.set("mapreduce.outputcommitter.factory.scheme.s3a", "io.sealcommit.hadoop.SealCommitterFactory")
    conf.set("mapreduce.input.fileinputformat.split.maxsize", str(src.stat().st_size // 2 + 1))
    for k, v in (extra or {}).items():
        conf.set(k, v)
    job = jvm.org.apache.hadoop.mapreduce.Job.getInstance(conf, "sealcommit-mapreduce")
    job.setNumReduceTasks(0)
    lib = jvm.org.apache.hadoop.mapreduce.lib
    lib.input.FileInputFormat.addInputPath(job, jvm.org.apache.hadoop.fs.Path(src.as_uri()))
    lib.output.FileOutputFormat.setOutputPath(job, jvm.org.apache.hadoop.fs.Path(dest))
    return job.waitForCompletion(False)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"line {i:05d}\n" for i in range(LINES)))
    return src


def test_mapreduce_job_commits_through_the_engine(spark, s3, bed, prefix, source):
    wire = Wire(bed)
    assert run_mr_job(spark, source, f"s3a://{BUCKET}/{prefix}")
    keys = sorted(list_keys(s3, BUCKET, prefix))
    assert keys == [f"{prefix}/_SUCCESS", f"{prefix}/part-m-00000", f"{prefix}/part-m-00001"]
    body = b"".join(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys[1:])
    got = sorted(line.split(b"\t", 1)[1].decode() for line in body.splitlines())
    assert got == [f"line {i:05d}" for i in range(LINES)]
    assert_all_encrypted(s3, BUCKET, prefix)
    seal = success_json(s3, BUCKET, prefix)["sealcommit"]
    assert sorted(f["key"] for f in seal["files"]) == keys[1:]
    # Each task's pendingset went to the store (one PUT each) and is gone after the commit.
    saved = [r for r in wire.rgw_requests()
             if r["uri"].split("?")[0].endswith(".pendingset") and r["method"] == "PUT"]
    assert len(saved) == 2, saved
    assert_no_copy(wire)


def test_failed_mapreduce_job_commit_leaves_nothing(spark, s3, prefix, source):
    ok = run_mr_job(spark, source, f"s3a://{BUCKET}/{prefix}",
                    {"sealcommit.fault.job-commit": "after-journal"})
    assert not ok
    assert list_keys(s3, BUCKET, prefix) == []


def test_failed_mapreduce_task_leaves_no_upload(spark, s3, bed, prefix, source):
    """A task attempt that dies after starting its uploads (MapReduce names files part-m-NNNNN,
    which carry no job id): the job's abort finds them through the task's saved intent."""
    wire, tag = Wire(bed), prefix.rsplit("-", 1)[-1]
    ok = run_mr_job(spark, source, f"s3a://{BUCKET}/{prefix}",
                    {"sealcommit.fault.task-commit": "crash-after-upload:0"})
    assert not ok
    started = [r for r in wire.rgw_requests() if r["method"] == "POST" and "?uploads" in r["uri"] and tag in r["uri"]
               and "uploadId" not in r["uri"]]
    assert len(started) == 2, started  # both tasks uploaded, then "died"
    aborted = [r for r in wire.rgw_requests() if r["method"] == "DELETE" and "uploadId=" in r["uri"] and tag in r["uri"]]
    assert len(aborted) == 2, aborted
    assert list_keys(s3, BUCKET, prefix) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
