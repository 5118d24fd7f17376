"""One committer's side of the benchmark, in its own Spark driver JVM (run by bench.py).

Reads its task from the BENCH_TASK environment variable (JSON): the bed to attach to, the
committer, and the measurements to make. Prints one JSON record per measurement on stdout.

Job commit time is Spark's own figure: FileFormatWriter logs "Write Job <id> committed. Elapsed
time: N ms" around FileCommitProtocol.commitJob, whichever committer it is; a log4j appender sends
that logger's lines (with epoch milliseconds) to a file. For sealcommit the same file gets the
engine's job commit line (logger io.sealcommit.engine.commit), which splits the job into phases
from the tasks' pendingsets: task uploads and task commits (task-seconds summed over the tasks,
and the longest task) and the engine's job commit. Requests come from the RGW log: all the job's
requests by operation, and those that completed inside the commit window.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bed import stores  # noqa: E402
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1  # noqa: E402
from tests.conftest import CLOUD_JAR, JAR, LINE, S3A_JARS, S3A_LINE_CONF, attach_bed  # noqa: E402

TASK = json.loads(os.environ["BENCH_TASK"])
BUCKET = TASK["bucket"]

SSE_KMS = {"fs.s3a.encryption.algorithm": "SSE-KMS", "fs.s3a.encryption.key": KMS_KEY_1}
S3A_COMMITTER = {
    "spark.sql.sources.commitProtocolClass": "org.apache.spark.internal.io.cloud.PathOutputCommitProtocol",
    "spark.sql.parquet.output.committer.class":
        "org.apache.spark.internal.io.cloud.BindingParquetOutputCommitter",
    "spark.hadoop.mapreduce.outputcommitter.factory.scheme.s3a":
        "org.apache.hadoop.fs.s3a.commit.S3ACommitterFactory",
}
# What each committer needs on top of the shared S3A settings (spark.* as is, the rest as
# spark.hadoop.*). FileOutputCommitter renames (CopyObject), which RGW refuses for SSE-KMS
# objects, so it runs unencrypted: the only way it works at all here.
COMMITTERS = {
    "sealcommit-staging": {"spark.sql.sources.commitProtocolClass": "io.sealcommit.spark.SealCommitProtocol",
                           **SSE_KMS},
    "sealcommit-magic": {"spark.sql.sources.commitProtocolClass": "io.sealcommit.spark.SealCommitProtocol",
                         "sealcommit.mode": "magic", **SSE_KMS},
    "s3a-magic": {**S3A_COMMITTER, "fs.s3a.committer.name": "magic", "fs.s3a.committer.magic.enabled": "true",
                  **SSE_KMS},
    "s3a-directory": {**S3A_COMMITTER, "fs.s3a.committer.name": "directory",
                      "fs.s3a.committer.staging.conflict-mode": "append", **SSE_KMS},
    # The same on Spark 4.1 with S3A 3.4.2 (SDK v2); its magic committer keeps the commit data of
    # its tasks in memory instead of writing .pending/.pendingset objects (HADOOP-19047).
    "sealcommit-staging-4.1": {"spark.sql.sources.commitProtocolClass": "io.sealcommit.spark.SealCommitProtocol",
                               **SSE_KMS},
    "sealcommit-magic-4.1": {"spark.sql.sources.commitProtocolClass": "io.sealcommit.spark.SealCommitProtocol",
                             "sealcommit.mode": "magic", **SSE_KMS},
    "s3a-3.4-magic": {**S3A_COMMITTER, "fs.s3a.committer.name": "magic", "fs.s3a.committer.magic.enabled": "true",
                      "fs.s3a.committer.magic.track.commits.in.memory.enabled": "true", **SSE_KMS},
    "s3a-3.4-directory": {**S3A_COMMITTER, "fs.s3a.committer.name": "directory",
                          "fs.s3a.committer.staging.conflict-mode": "append", **SSE_KMS},
    "foc-v1": {"mapreduce.fileoutputcommitter.algorithm.version": "1"},
    "foc-v2": {"mapreduce.fileoutputcommitter.algorithm.version": "2"},
}
CHECKPOINT_MANAGERS = {
    "sealcommit": ("io.sealcommit.spark.SealCheckpointFileManager", SSE_KMS),
    "s3a-filecontext": ("org.apache.spark.sql.execution.streaming.FileContextBasedCheckpointFileManager", {}),
    "s3a-abortable": ("org.apache.spark.internal.io.cloud.AbortableStreamBasedCheckpointFileManager", SSE_KMS),
    # Spark 4.1 moved the checkpoint managers to a `checkpointing` package (sealcommit's follows).
    # S3A 3.4.2 (SDK v2) sends SSE-KMS PUTs over http, so the abortable manager runs encrypted.
    "sealcommit-4.1": ("io.sealcommit.spark.checkpointing.SealCheckpointFileManager", SSE_KMS),
    "s3a-3.4-filecontext": (
        "org.apache.spark.sql.execution.streaming.checkpointing.FileContextBasedCheckpointFileManager", {}),
    "s3a-3.4-abortable": ("org.apache.spark.internal.io.cloud.AbortableStreamBasedCheckpointFileManager", SSE_KMS),
}

LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
appender.bench.type = File
appender.bench.name = bench
appender.bench.fileName = {log}
appender.bench.layout.type = PatternLayout
appender.bench.layout.pattern = %d{UNIX_MILLIS} %m%n
logger.ffw.name = org.apache.spark.sql.execution.datasources.FileFormatWriter
logger.ffw.level = info
logger.ffw.additivity = false
logger.ffw.appenderRef.bench.ref = bench
logger.seal.name = io.sealcommit.engine.commit
logger.seal.level = info
logger.seal.additivity = false
logger.seal.appenderRef.bench.ref = bench
"""


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def session(bed, extra: dict, work: Path):
    from pyspark.sql import SparkSession

    log = work / "spark-commit.log"
    props = work / "log4j2.properties"
    props.write_text(LOG4J.replace("{log}", str(log)))
    hadoop = {
        **S3A_LINE_CONF,
        "fs.s3a.access.key": ACCESS_KEY,
        "fs.s3a.secret.key": stores.SECRET_KEY,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.endpoint": bed.rgw.https_endpoint,
        "fs.s3a.endpoint.region": "us-east-1",
        "sealcommit.tls.ca-file": bed.ca.ca_pem,
        "sealcommit.staging.dir": str(work / "staging"),
        "fs.s3a.buffer.dir": str(work / "s3a-buffer"),
        "fs.s3a.committer.staging.tmp.path": f"file://{work}/s3a-staging",
    }
    b = (SparkSession.builder.master(TASK.get("master", "local[2]")).appName(f"bench-{TASK['name']}")
         # S3A on the class path (as in images with hadoop-aws in $SPARK_HOME/jars): spark.jars would
         # copy the SDK bundle into the session's scratch space.
         .config("spark.jars", ",".join(str(j) for j in [JAR, CLOUD_JAR]))
         .config("spark.driver.extraClassPath", ":".join(str(j) for j in S3A_JARS))
         .config("spark.ui.enabled", "false")
         .config("spark.driver.memory", TASK.get("driver_memory", "3g"))
         .config("spark.sql.shuffle.partitions", "2")
         .config("spark.driver.extraJavaOptions",
                 f"-Djavax.net.ssl.trustStore={bed.ca.truststore} -Djavax.net.ssl.trustStorePassword=changeit "
                 f"-Dlog4j2.configurationFile=file:{props}"))
    for k, v in {**hadoop, **extra}.items():
        b = b.config(k if k.startswith("spark.") else f"spark.hadoop.{k}", v)
    return b.getOrCreate(), log


def commit_lines(log: Path, offset: int) -> list[tuple[int, int]]:
    """(end epoch ms, elapsed ms) of each job commit Spark logged since `offset`."""
    if not log.exists():
        return []
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [(int(m.group(1)), int(m.group(2)))
            for m in re.finditer(r"^(\d+) Write Job \S+ committed\. Elapsed time: (\d+) ms", text, re.M)]


ENGINE_COMMIT = re.compile(
    r"^\d+ job \S+ committed \d+ files .* in (\d+) ms, \d+ objects replaced; (\d+) tasks: "
    r"uploads (\d+) ms in all \(longest (\d+) ms\), task commits (\d+) ms in all \(longest (\d+) ms\)",
    re.M)


def engine_phases(log: Path, offset: int) -> list[dict]:
    """The phases of each sealcommit job commit logged since `offset`, in seconds: task uploads and
    task commits summed over the tasks and the longest task, and the engine's job commit."""
    if not log.exists():
        return []
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    out = []
    for m in ENGINE_COMMIT.finditer(text):
        commit, tasks, up, up_max, tc, tc_max = (int(g) for g in m.groups())
        out.append({"tasks": tasks, "task_upload_s": up / 1000, "task_upload_longest_s": up_max / 1000,
                    "task_commit_s": tc / 1000, "task_commit_longest_s": tc_max / 1000,
                    "engine_commit_s": commit / 1000})
    return out


RGW_LINE = re.compile(r"^(\S+) \S+\s+\d+ req \d+ [\d.]+s s3:(\w+) completing", re.M)


def rgw_ops(bed, offset: int, window: tuple[int, int] | None = None) -> dict:
    """RGW operations since `offset`, optionally only those completing inside `window` (epoch ms)."""
    from datetime import datetime

    with open(bed.rgw.log_file, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    ops: dict[str, int] = {}
    for m in RGW_LINE.finditer(text):
        if window:
            t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000
            if not window[0] - 5 <= t <= window[1] + 5:
                continue
        ops[m.group(2)] = ops.get(m.group(2), 0) + 1
    return dict(sorted(ops.items()))


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def clear(s3, prefix: str) -> None:
    """Deletes everything under `prefix` and every upload left there (between measurements)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})
    for u in s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])


def data_files(s3, prefix: str) -> tuple[int, int]:
    n = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            if o["Key"].endswith(".parquet"):
                n, size = n + 1, size + o["Size"]
    return n, size


def batch(spark, log: Path, bed, s3, m: dict) -> dict:
    """One commit scenario, repeated: `tasks` tasks each writing `parts` partition files of
    `rows_per_file` rows (small files), or `tasks` unpartitioned files of `mib` MiB."""
    from pyspark.sql import functions as F

    tasks, parts, repeats = m["tasks"], m.get("parts", 1), m["repeats"]
    files = tasks * parts
    if "mib" in m:
        # id (8 B) + uuid (36 B + 4 B length) + a double (8 B), uncompressed: 56 B a row.
        rows = m["mib"] * (1 << 20) // 56 * tasks
        df = spark.range(0, rows, 1, tasks).select("id", F.expr("uuid()").alias("u"), F.rand(7).alias("r"))
        options = {"compression": "none", "parquet.enable.dictionary": "false"}
        partition_by: list[str] = []
    else:
        rows = tasks * parts * m.get("rows_per_file", 10)
        df = spark.range(0, rows, 1, tasks).withColumn("p", F.col("id") % parts)
        options, partition_by = {}, ["p"]
    runs = []
    for rep in range(repeats):
        prefix = f"{TASK['name']}/{m['scenario']}/{rep}"
        uri = f"s3a://{BUCKET}/{prefix}"
        log_off, rgw_off = log.stat().st_size if log.exists() else 0, bed.rgw.log_offset()
        t0 = time.monotonic()
        w = df.write.mode("errorifexists").options(**options)
        if partition_by:
            w = w.partitionBy(*partition_by)
        w.parquet(uri)
        wall = time.monotonic() - t0
        time.sleep(0.5)  # let RGW flush its log
        commits = commit_lines(log, log_off)
        assert len(commits) == 1, f"expected one job commit in Spark's log, found {commits}"
        end, elapsed = commits[0]
        phases = engine_phases(log, log_off)
        written, size = data_files(s3, prefix)
        assert written == files, f"{TASK['name']} wrote {written} files, expected {files}"
        runs.append({"commit_s": elapsed / 1000, "job_s": wall, "bytes": size,
                     "requests": rgw_ops(bed, rgw_off),
                     "commit_requests": rgw_ops(bed, rgw_off, (end - elapsed, end)),
                     "phases": phases[0] if len(phases) == 1 else None})
        clear(s3, prefix)
        if m.get("gc"):
            bed.rgw.collect_garbage()
    median_run = sorted(runs, key=lambda r: r["commit_s"])[len(runs) // 2]
    # sealcommit only: the job's phases (task-seconds for the tasks), each summarized over the runs.
    phases = None
    if all(r["phases"] for r in runs):
        phases = {k.removesuffix("_s") + "_seconds": summary([r["phases"][k] for r in runs])
                  for k in runs[0]["phases"] if k.endswith("_s")}
    return {"scenario": m["scenario"], "committer": TASK["name"], "files": files, "phases": phases,
            "bytes": runs[0]["bytes"], "repeats": repeats,
            "commit_seconds": summary([r["commit_s"] for r in runs]),
            "job_seconds": summary([r["job_s"] for r in runs]),
            # Requests vary by a few retries at most; the median run's are reported.
            "requests": median_run["requests"], "commit_requests": median_run["commit_requests"],
            "peak_memory_bytes": None}


def streaming(spark, bed, s3, m: dict) -> dict:
    """Micro-batches of a rate source into the noop sink: the only S3 writes are the checkpoint's
    (offsets/N and commits/N per batch); Spark reports their latency as walCommit and
    commitOffsets."""
    prefix = f"{TASK['name']}/{m['scenario']}"
    rgw_off = bed.rgw.log_offset()
    q = (spark.readStream.format("rate").option("rowsPerSecond", 100).load()
         .writeStream.format("noop").option("checkpointLocation", f"s3a://{BUCKET}/{prefix}/checkpoint")
         .trigger(processingTime="200 milliseconds").start())
    steady_off = steady_from = None
    try:
        deadline = time.monotonic() + 300
        while len(q.recentProgress) < m["batches"] + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            if q.exception():
                raise RuntimeError(str(q.exception()))
            if steady_off is None and q.recentProgress:
                # From here on: steady state, no startup objects (metadata, sources, probe).
                steady_off, steady_from = bed.rgw.log_offset(), q.recentProgress[-1]["batchId"]
        progress = q.recentProgress
        steady_to = progress[-1]["batchId"]
    finally:
        q.stop()
    time.sleep(0.5)
    ops = rgw_ops(bed, rgw_off)
    # Requests of the batches that ran wholly between the two offsets (±1 batch in flight).
    steady_ops = rgw_ops(bed, steady_off)
    steady_batches = max(1, steady_to - steady_from)
    # Batch 0 creates the checkpoint (metadata, sources); the steady state is the rest.
    steady = [p for p in progress if p["batchId"] >= 1][: m["batches"]]
    assert len(steady) == m["batches"], f"only {len(steady)} batches ran"
    wal = [p["durationMs"].get("walCommit", 0) / 1000 for p in steady]
    com = [p["durationMs"].get("commitOffsets", 0) / 1000 for p in steady]
    batches = progress[-1]["batchId"] + 1
    clear(s3, prefix)
    return {"scenario": m["scenario"], "committer": TASK["name"], "files": 2 * len(steady), "bytes": None,
            "repeats": len(steady), "offsets_seconds": summary(wal), "commits_seconds": summary(com),
            "batch_commit_seconds": summary([a + b for a, b in zip(wal, com)]),
            "batches": batches, "requests": ops,
            "requests_per_batch": {k: round(v / steady_batches, 2) for k, v in steady_ops.items()},
            "steady_batches": steady_batches,
            "peak_memory_bytes": None}


def magic_memory(spark, log: Path, bed, s3, m: dict) -> dict:
    """One file of `mib` MiB written in magic mode by one task: the part buffers' peak, as the
    engine accounts it into _SUCCESS."""
    from pyspark.sql import functions as F

    rows = m["mib"] * (1 << 20) // 56
    prefix = f"{TASK['name']}/{m['scenario']}"
    uri = f"s3a://{BUCKET}/{prefix}"
    (spark.range(0, rows, 1, 1).select("id", F.expr("uuid()").alias("u"), F.rand(7).alias("r"))
     .write.options(compression="none", **{"parquet.enable.dictionary": "false"}).parquet(uri))
    success = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/_SUCCESS")["Body"].read())
    peak = success["sealcommit"]["buffer_peak"]
    _, size = data_files(s3, prefix)
    clear(s3, prefix)
    if m.get("gc"):
        bed.rgw.collect_garbage()
    return {"scenario": m["scenario"], "committer": TASK["name"], "files": 1, "bytes": size, "repeats": 1,
            "peak_memory_bytes": int(peak)}


def main() -> None:
    if TASK["line"] != LINE:
        raise SystemExit(f"{TASK['name']} is measured on Spark {TASK['line']}, this is {LINE}")
    bed = attach_bed(TASK["bed"])
    work = Path(TASK["work"])
    work.mkdir(parents=True, exist_ok=True)
    if TASK["kind"] == "streaming":
        cls, extra = CHECKPOINT_MANAGERS[TASK["name"]]
        extra = {**extra, "spark.sql.streaming.checkpointFileManagerClass": cls}
    else:
        extra = COMMITTERS[TASK["name"]]
    spark, log = session(bed, extra, work)
    s3 = bed.boto3(bed.rgw.http_endpoint)
    try:
        for m in TASK["measurements"]:
            t0 = time.monotonic()
            fn = {"batch": batch, "streaming": streaming, "magic-memory": magic_memory}[m["kind"]]
            rec = fn(spark, bed, s3, m) if m["kind"] == "streaming" else fn(spark, log, bed, s3, m)
            emit(rec)
            print(f"[bench] {TASK['name']} {m['scenario']}: {time.monotonic() - t0:.0f}s", file=sys.stderr,
                  flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
