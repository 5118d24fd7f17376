"""The benchmark suite (docs/BENCHMARKS.md): sealcommit against Hadoop S3A's committers and the
FileOutputCommitter, all in one run on this machine, against Ceph RGW over TLS on loopback.

    python tests/bench/bench.py [--quick] [--only SCENARIO,...]

Starts its own RGW (memstore, private CA), runs each committer in its own Spark driver JVM
(tests/bench/spark_bench.py), runs the engine's `sealcommit bench` for what needs no Spark, and
writes every measurement to docs/benchmarks/results.json; tests/bench/report.py turns that into
docs/BENCHMARKS.md and the charts. Not a test: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bed import stores  # noqa: E402
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1  # noqa: E402
from tests.conftest import CACHE, bed_info, spark_lines  # noqa: E402

BUCKET = "bench"
CLI = ROOT / "target" / "release" / "sealcommit"
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"

# The peer Spark 4 users run: S3A 3.4.x on AWS SDK v2 (magic with in-memory commit tracking, and
# directory), on the Spark line that ships it, beside sealcommit on the same line; each of these runs
# in that line's venv with its S3A (tests/bed/lines.txt).
PEER_LINE = "4.1"
LINE_COMMITTERS = {"sealcommit-staging-4.1": PEER_LINE, "sealcommit-magic-4.1": PEER_LINE,
                   "s3a-3.4-magic": PEER_LINE, "s3a-3.4-directory": PEER_LINE,
                   "sealcommit-4.1": PEER_LINE, "s3a-3.4-filecontext": PEER_LINE, "s3a-3.4-abortable": PEER_LINE}
CHECKPOINT_MANAGERS = ["sealcommit", "s3a-filecontext", "s3a-abortable",
                       "sealcommit-4.1", "s3a-3.4-filecontext", "s3a-3.4-abortable"]
BATCH_COMMITTERS = ["sealcommit-staging", "sealcommit-magic", "s3a-magic", "s3a-directory", "foc-v1", "foc-v2",
                    *(c for c in LINE_COMMITTERS if c not in CHECKPOINT_MANAGERS)]


def plan(quick: bool) -> dict:
    """Sizes and repeats. `--quick` is a smoke run of every path, not a measurement."""
    if quick:
        return {
            "batch": [dict(kind="batch", scenario="files-20", tasks=4, parts=5, repeats=1),
                      dict(kind="batch", scenario="files-4x8MiB", tasks=4, mib=8, repeats=1)],
            "streaming": dict(kind="streaming", scenario="checkpoint", batches=3),
            "magic_memory": [8, 32],
            "cli_commit_files": 500,
            "cli_scale_files": [1000, 10_000],
            "cli_upload_mib": 64,
            "ceiling_uploads": 200,
        }
    return {
        "batch": [dict(kind="batch", scenario="files-100", tasks=10, parts=10, repeats=3),
                  dict(kind="batch", scenario="files-1000", tasks=20, parts=50, repeats=3),
                  dict(kind="batch", scenario="files-10000", tasks=100, parts=100, repeats=2),
                  dict(kind="batch", scenario="files-16x256MiB", tasks=16, mib=256, repeats=1, gc=True)],
        # Fewer repeats where one run takes minutes, none where it takes far longer than the
        # rows it would add to (0 repeats: the row says why, from SKIPPED).
        "repeats": {"s3a-magic": {"files-10000": 0}, "s3a-3.4-magic": {"files-10000": 1},
                    "foc-v1": {"files-1000": 0, "files-10000": 0, "files-16x256MiB": 1},
                    "foc-v2": {"files-1000": 0, "files-10000": 0, "files-16x256MiB": 1}},
        "streaming": dict(kind="streaming", scenario="checkpoint", batches=10),
        "magic_memory": [64, 256, 1024],
        "cli_commit_files": 100_000,
        # Simulated (no store round trip): the driver's time and memory alone.
        "cli_scale_files": [100_000, 1_000_000],
        "cli_upload_mib": 512,
        # The store's own Complete rate at 8-128 in flight, twice (the second time from 128 down).
        "ceiling_uploads": 2000,
    }


# Why a committer's row is not run in the full plan (its repeats are 0 there).
SKIPPED = {
    # Renames one file at a time, about 0.4 s each here (446 s for 1,000 files with v1, 252 s
    # with v2, 2026-11-24): the 100-file row shows its cost per file.
    "foc-v1": "renames one file at a time, about 0.4 s each here; the 100-file row shows its cost per file",
    "foc-v2": "renames one file at a time, about 0.4 s each here; the 100-file row shows its cost per file",
    # 1,406 s at 10,000 files (2026-11-24): over a quarter of the run for the line users leave.
    "s3a-magic": "24 min a run here (1,406 s in the run of 2026-11-24); S3A 3.4 magic, the peer, is measured",
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def python_of(name: str) -> str:
    """The Python of the venv a committer runs in: its line's (LINE_COMMITTERS), or this one's."""
    line = LINE_COMMITTERS.get(name)
    if line is None:
        return sys.executable
    python = CACHE / f"venv-{spark_lines()[line]['pyspark']}" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{name} runs on Spark {line}: {python} is missing (tests/bench/run.sh installs it)")
    return str(python)


def spark_driver(bed, work: Path, name: str, kind: str, measurements: list[dict]) -> list[dict]:
    bed.rgw.collect_garbage()
    task = {"bed": bed_info(bed), "bucket": BUCKET, "name": name, "kind": kind, "work": str(work / name),
            "measurements": measurements, "line": LINE_COMMITTERS.get(name, "3.5")}
    t0 = time.monotonic()
    p = subprocess.run([python_of(name), str(ROOT / "tests" / "bench" / "spark_bench.py")],
                       env={**os.environ, "BENCH_TASK": json.dumps(task)}, capture_output=True, text=True,
                       timeout=3600)
    records = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0:
        log(f"{name} failed after {time.monotonic() - t0:.0f}s:\n{p.stderr[-4000:]}")
        records.append({"scenario": measurements[len(records)]["scenario"] if len(records) < len(measurements)
                        else "?", "committer": name, "failed": p.stderr.strip().splitlines()[-1:]})
    else:
        log(f"{name}: {len(records)} measurements in {time.monotonic() - t0:.0f}s")
    return records


def cli(bed, *args) -> dict:
    [out] = cli_lines(bed, *args)
    return out


def cli_lines(bed, *args) -> list[dict]:
    """`sealcommit bench ...`: every JSON object it printed (one per line)."""
    bed.rgw.collect_garbage()
    env = dict(os.environ, AWS_ENDPOINT_URL=bed.rgw.https_endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=stores.SECRET_KEY, AWS_REGION="us-east-1", AWS_CA_BUNDLE=bed.ca.ca_pem)
    conf = ["--conf", "fs.s3a.path.style.access=true", "--conf", "fs.s3a.encryption.algorithm=SSE-KMS",
            "--conf", f"fs.s3a.encryption.key={KMS_KEY_1}"]
    p = subprocess.run([str(CLI), "bench", *args, *conf], env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"sealcommit bench {' '.join(args)} failed: {p.stderr[-3000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def rgw_ops_total(bed, offset: int) -> dict:
    return dict(sorted(bed.rgw.ops_since(offset).items()))


def engine_commit() -> str:
    p = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return p.stdout.strip() or "unknown"


def spark_of(line: str) -> str:
    row = spark_lines()[line]
    return (f"pyspark {row['pyspark']} local[2] with Hadoop S3A {row['hadoop_aws']} + AWS SDK "
            f"{row['sdk'].split(':')[-1]} and {row['cloud'].split(':')[1]} {row['cloud'].split(':')[-1]}")


def save(out: Path, records: list[dict], started: float, quick: bool, merge: bool, commit: str) -> None:
    """Writes results.json; called after every step, so an interrupted run keeps what it measured.
    With `merge` (a partial run: --only, --committers or --scenarios), records of other scenarios
    and committers already in the file stay, and so does the list of earlier runs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() and merge else {"records": []}
    kept = [r for r in previous["records"] if not any(
        r.get("scenario") == n.get("scenario") and r.get("committer") == n.get("committer") for n in records)]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    for r in records:
        r.setdefault("run", stamp)
    runs = [r for r in previous.get("runs", []) if r["started"] != stamp and
            any(k.get("run") == r["started"] for k in kept)]
    this = {"started": stamp, "minutes": round((time.time() - started) / 60, 1), "commit": commit,
            "parts": sorted({f"{r.get('committer')}:{r.get('scenario')}" for r in records if "skipped" not in r})}
    out.write_text(json.dumps({
        "runs": runs + [this],
        "run": {"started": stamp,
                "minutes": round((time.time() - started) / 60, 1), "quick": quick,
                "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} "
                           f"GiB RAM, {platform.system()} {platform.release()}",
                "store": "Ceph RGW 16 (Debian), memstore OSD, https with a private CA on loopback, SSE-KMS "
                         "(testing KMS backend)",
                "spark": "; ".join(spark_of(line) for line in ("3.5", PEER_LINE))},
        "records": kept + records}, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smoke run of every path with tiny sizes")
    ap.add_argument("--only", default="", help="comma list of: batch, streaming, magic-memory, cli-commit, "
                                               "cli-upload, cli-ceiling, cli-scale")
    ap.add_argument("--committers", default=",".join(BATCH_COMMITTERS))
    ap.add_argument("--scenarios", default="", help="batch scenarios to run (e.g. files-10000); default all")
    ap.add_argument("--max-repeats", type=int, default=0, help="cap every batch scenario's repeats")
    ap.add_argument("--commit-files", type=int, default=0, help="files for cli-commit (default: the plan's)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    scenarios = set(filter(None, args.scenarios.split(",")))
    partial = bool(only or scenarios or args.committers != ",".join(BATCH_COMMITTERS))
    want = (lambda s: not only or s in only)
    p = plan(args.quick)
    if args.commit_files:
        p["cli_commit_files"] = args.commit_files
    base = Path(os.environ.get("SEALCOMMIT_BENCH_DIR", "/tmp/sealcommit-bench"))
    bed = stores.Bed(base, with_seaweed=False, rgw_memstore_bytes=14 << 30).start()
    records: list[dict] = []
    started = time.time()
    # The code measured is the code checked out now (run.sh built it), whatever is committed later.
    commit = engine_commit()

    def saved() -> None:
        save(Path(args.out), records, started, args.quick, partial, commit)
    try:
        s3 = bed.boto3(bed.rgw.http_endpoint)
        s3.create_bucket(Bucket=BUCKET)
        work = base / "work"
        if want("batch"):
            for name in args.committers.split(","):
                override = p.get("repeats", {}).get(name, {})
                runs = [{**m, "repeats": override.get(m["scenario"], m["repeats"])} for m in p["batch"]
                        if not scenarios or m["scenario"] in scenarios]
                if args.max_repeats:
                    runs = [{**m, "repeats": min(m["repeats"], args.max_repeats)} for m in runs]
                records += spark_driver(bed, work, name, "batch", [m for m in runs if m["repeats"] > 0])
                records += [{"scenario": m["scenario"], "committer": name, "skipped": SKIPPED[name]}
                            for m in runs if m["repeats"] == 0]
                saved()
        if want("magic-memory"):
            records += spark_driver(bed, work, "sealcommit-magic", "batch",
                                    [dict(kind="magic-memory", scenario=f"magic-memory-{mib}MiB", mib=mib, gc=True)
                                     for mib in p["magic_memory"]])
            saved()
        if want("streaming"):
            for name in CHECKPOINT_MANAGERS:
                records += spark_driver(bed, work, name, "streaming", [p["streaming"]])
                saved()
        if want("cli-upload"):
            # The three paths take turns going first.
            for rep in range(6):
                off = bed.rgw.log_offset()
                r = cli(bed, "upload", f"s3a://{BUCKET}/cli/upload-{rep}", "--mib", str(p["cli_upload_mib"]),
                        "--rotate", str(rep))
                records.append({**r, "committer": "engine", "repeat": rep, "requests": rgw_ops_total(bed, off)})
                log(f"upload {rep}: raw {r['raw_mb_s']:.0f} MB/s, magic {r['magic_mb_s']:.0f} MB/s, "
                    f"staging {r['staging_mb_s']:.0f} MB/s")
        if want("cli-ceiling"):
            for rep, levels in enumerate(("8,16,32,64,128", "128,64,32,16,8")):
                off = bed.rgw.log_offset()
                lines = cli_lines(bed, "ceiling", f"s3a://{BUCKET}/cli/ceiling-{rep}", "--uploads",
                                  str(p["ceiling_uploads"]), "--inflight", levels)
                for r in lines:
                    records.append({**r, "committer": "raw", "repeat": rep})
                records[-1]["requests"] = rgw_ops_total(bed, off)
                log("ceiling " + ", ".join(f"{r['inflight']}: {r['completes_per_second']:.0f}/s"
                                           for r in lines if r["scenario"] == "complete-ceiling"))
            saved()
        if want("cli-commit"):
            off = bed.rgw.log_offset()
            r = cli(bed, "commit", f"s3a://{BUCKET}/cli/commit", "--files", str(p["cli_commit_files"]),
                    "--per-task", "1000")
            records.append({**r, "committer": "engine", "requests": rgw_ops_total(bed, off)})
            log(f"engine commit of {r['files']} files: {r['driver']['seconds']:.1f}s, "
                f"peak {r['driver']['peak_rss_bytes'] >> 20} MiB")
        if want("cli-scale"):
            # Made-up pending uploads committed against a store that answers at once and keeps
            # nothing (`bench commit --simulate`): no request reaches RGW.
            for n in p["cli_scale_files"]:
                r = cli(bed, "commit", f"s3a://{BUCKET}/cli/scale", "--simulate", "--files", str(n),
                        "--per-task", "100")
                records.append({**r, "scenario": "engine-scale", "committer": "engine"})
                log(f"simulated commit of {n} files: {r['driver']['seconds']:.1f}s, "
                    f"peak {r['driver']['peak_rss_bytes'] >> 20} MiB")
            saved()
    finally:
        save(Path(args.out), records, started, args.quick, partial, commit)
        bed.stop()
    log(f"{len(records)} records -> {args.out}")


if __name__ == "__main__":
    main()
