"""Speculative execution on a real standalone Spark cluster: a master and two workers on
different loopback addresses (Spark never runs a speculative copy on the host of the original
attempt). One task is forced slow; its speculative copy commits; exactly one attempt per
partition is in the output, and no upload of the losing attempt remains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import conftest
from tests.bed import stores
from tests.conftest import assert_all_encrypted, list_keys, pending_uploads, success_json

BUCKET = "direct-http"
ROWS = 800_000
STALL_AT = 150_000  # in partition 0 (ids 0..199999): ~15 MB written, 2+ parts in magic mode


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOG_DIR": str(base / "logs")}
    cls = str(spark_home() / "bin" / "spark-class")
    # Free ports in this run's slice, like the bed's: on a fixed port a second run's workers (or
    # another service's) would register with, or be, someone else's master.
    ports = stores.free_ports(["master", "master_ui", "worker_ui0", "worker_ui1"], paired=set(), offset=0)
    procs = [subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(ports["master"]), "--webui-port", str(ports["master_ui"])],
                              env=env, stdout=open(base / "master.log", "w"), stderr=subprocess.STDOUT)]
    master = f"spark://127.0.0.1:{ports['master']}"
    for i, host in enumerate(["127.0.0.1", "127.0.0.2"]):
        procs.append(subprocess.Popen(
            [cls, "org.apache.spark.deploy.worker.Worker", "--host", host, "--cores", "2",
             "--memory", "1g", "--webui-port", str(ports[f"worker_ui{i}"]), "--work-dir", str(base / f"w{i}"), master],
            env={**env, "SPARK_LOCAL_IP": host}, stdout=open(base / f"worker{i}.log", "w"),
            stderr=subprocess.STDOUT))
    deadline = time.time() + 90
    while time.time() < deadline:
        registered = (base / "master.log").read_text().count("Registering worker")
        if registered >= 2:
            break
        time.sleep(0.5)
    else:
        for p in procs:
            p.kill()
        pytest.fail("the standalone cluster did not come up: " + (base / "master.log").read_text()[-2000:])
    yield master, base
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


@pytest.mark.parametrize("mode", ["staging", "magic"])
def test_speculative_copy_commits_once_and_the_loser_leaves_nothing(bed, s3, prefix, cluster, mode, tmp_path):
    master, _ = cluster
    markers = tmp_path / "markers"
    markers.mkdir()
    info = {**conftest.bed_info(bed), "master": master, "mode": mode, "markers": str(markers), "rows": ROWS, "stall_at": STALL_AT,
            "dest": f"s3a://{BUCKET}/{prefix}"}
    env = {**os.environ, "SPEC_DRIVER": json.dumps(info), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    wire = conftest.Wire(bed)
    t0 = time.time()
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "spec_driver.py")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert "DONE" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert time.time() - t0 < 110, "the job waited for the stalled attempt instead of its copy"

    # Partition 0 really ran twice, on the two workers.
    p0 = sorted(m.name for m in markers.iterdir() if m.name.startswith("p0-"))
    assert [m.split("-")[1] for m in p0] == ["a0", "a1"], p0
    assert len({m.split("-", 2)[2].split("_w")[-1][:1] for m in p0}) == 2, p0

    keys = [k for k in list_keys(s3, BUCKET, prefix) if not k.endswith("_SUCCESS")]
    assert len(keys) == 4, keys
    seal = success_json(s3, BUCKET, prefix)["sealcommit"]
    assert sorted(f["key"] for f in seal["files"]) == sorted(keys)
    body = b"".join(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys)
    ids = [int(line[:10]) for line in body.splitlines()]
    assert len(ids) == ROWS and sorted(ids) == list(range(ROWS)), "duplicated or lost rows"
    assert_all_encrypted(s3, BUCKET, prefix)
    # In magic mode both attempts of partition 0 opened an upload for the same key (the stalled
    # one had sent parts). In staging mode the committing attempt did, and the killed one does
    # too if Spark closed its writer while aborting it (a staged file's upload starts at its
    # close) before the executor stopped. Either way the loser's upload is aborted (below).
    creates = [r for r in wire.rgw_requests() if r["method"] == "POST" and "part-00000" in r["uri"]
               and r["uri"].endswith("?uploads")]
    assert len(creates) in ((2,) if mode == "magic" else (1, 2)), creates
    assert len({r["uri"] for r in creates}) == 1, creates
    # The stalled attempt is killed after the job ends; its upload must not outlive it.
    deadline = time.time() + 30
    while pending_uploads(s3, BUCKET, prefix) and time.time() < deadline:
        time.sleep(0.5)
    assert pending_uploads(s3, BUCKET, prefix) == []
