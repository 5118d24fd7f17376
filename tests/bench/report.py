"""Renders docs/benchmarks/results.json as docs/BENCHMARKS.md (between its `generated` markers;
the prose around them is kept) and the PNG charts beside results.json.

    python tests/bench/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"
DOC = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- generated:start -->", "<!-- generated:end -->"

LABEL = {
    "sealcommit-staging": "sealcommit (staging)", "sealcommit-magic": "sealcommit (magic)",
    "s3a-magic": "S3A magic", "s3a-directory": "S3A directory", "foc-v1": "FileOutputCommitter v1*",
    "foc-v2": "FileOutputCommitter v2*", "sealcommit": "SealCheckpointFileManager",
    "s3a-filecontext": "S3A + FileContext manager*", "s3a-abortable": "S3A + AbortableStream manager",
    "sealcommit-staging-4.1": "sealcommit (staging), Spark 4.1", "sealcommit-magic-4.1": "sealcommit (magic), Spark 4.1",
    "s3a-3.4-magic": "S3A 3.4 magic (in-memory tracking)", "s3a-3.4-directory": "S3A 3.4 directory",
    "sealcommit-4.1": "SealCheckpointFileManager, Spark 4.1", "s3a-3.4-filecontext": "S3A 3.4 + FileContext manager*",
    "s3a-3.4-abortable": "S3A 3.4 + AbortableStream manager",
}
PEER = ["s3a-3.4-magic", "s3a-3.4-directory"]  # the S3A committers of the 3.4.x line (SDK v2)
SMALL = ["files-100", "files-1000", "files-10000"]


def fmt_s(s: dict | None) -> str:
    if not s:
        return "–"
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def total(ops: dict | None) -> int:
    return sum((ops or {}).values())


def ops_text(ops: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((ops or {}).items(), key=lambda kv: -kv[1])) or "–"


def by(records, **kw):
    return [r for r in records if all(r.get(k) == v for k, v in kw.items())]


def one(records, **kw):
    found = by(records, **kw)
    return found[0] if found else None


BATCH = ["sealcommit-staging", "sealcommit-magic", "s3a-magic", "s3a-directory", "foc-v1", "foc-v2",
         "sealcommit-staging-4.1", "sealcommit-magic-4.1", *PEER]


def best(recs: list[dict], scenario: str, field: str, committers: list[str]) -> dict | None:
    """The record with the lowest median `field` among `committers` in `scenario`."""
    found = [r for c in committers if (r := one(recs, scenario=scenario, committer=c)) and field in r]
    return min(found, key=lambda r: r[field]["median"]) if found else None


def scale(recs: list[dict]) -> tuple[list[dict], float | None]:
    """The simulated commits (`bench commit --simulate`) by files, and the driver's marginal bytes
    per file between the smallest and the largest: (peak RSS − peak RSS) / (files − files)."""
    runs = sorted(by(recs, scenario="engine-scale"), key=lambda r: r["files"])
    if len(runs) < 2 or runs[-1]["files"] == runs[0]["files"]:
        return runs, None
    lo, hi = runs[0], runs[-1]
    return runs, (hi["driver"]["peak_rss_bytes"] - lo["driver"]["peak_rss_bytes"]) / (hi["files"] - lo["files"])


def charts(records: list[dict], out: Path) -> list[str]:
    """One line per committer over the small-file scenarios: commit time (log-log) and requests
    per file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def chart(name: str, field: str, y, ylabel: str, title: str, log_y: bool) -> str:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for c in BATCH:
            pts = [(r["files"], y(r)) for s in SMALL for r in by(records, scenario=s, committer=c) if field in r]
            if pts:
                ax.plot(*zip(*sorted(pts)), marker="o", label=LABEL[c])
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("files in the job")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        return name

    return [chart("commit-time.png", "commit_seconds", lambda r: r["commit_seconds"]["median"],
                  "job commit, seconds (median)", "Job commit time vs files (Ceph RGW, https, loopback)", True),
            chart("requests-per-file.png", "requests", lambda r: total(r["requests"]) / r["files"],
                  "S3 requests per file (whole job)", "Requests per file", False)]


def targets(recs: list[dict], w) -> None:
    """The issue's targets against what this run measured (met or missed, and by how much)."""
    import statistics as st

    rows = []
    # Each Spark line against the best S3A committer of its own line that ran 10,000 files: the
    # issue's peer (S3A 3.4, Spark 4.1) and the line before it (S3A 3.3.4, Spark 3.5).
    lines = ((PEER, "S3A 3.4", ("sealcommit-staging-4.1", "sealcommit-magic-4.1")),
             (["s3a-magic", "s3a-directory"], "S3A 3.3.4", ("sealcommit-staging", "sealcommit-magic")))
    for peers, line, ours in lines:
        for field, what in (("commit_seconds", "job commit"), ("job_seconds", "whole job")):
            peer = best(recs, "files-10000", field, peers)
            for c in ours:
                r = one(recs, scenario="files-10000", committer=c)
                if peer and r and field in r:
                    x = peer[field]["median"] / r[field]["median"]
                    rows.append((f"{what} of 10,000 files ≥ 3× faster than the best {line} committer "
                                 f"({LABEL[peer['committer']]}) — {LABEL[c]}", f"{x:.1f}×", x >= 3))
    for staging, magic in (("sealcommit-staging", "sealcommit-magic"), ("sealcommit-staging-4.1", "sealcommit-magic-4.1")):
        a, b = one(recs, scenario="files-10000", committer=staging), one(recs, scenario="files-10000", committer=magic)
        if a and b and "job_seconds" in a and "job_seconds" in b:
            x = b["job_seconds"]["median"] / a["job_seconds"]["median"]
            rows.append((f"magic mode's whole 10,000-file job ≤ 1.1× staging's — {LABEL[magic]}", f"{x:.2f}×",
                         x <= 1.1))
    for c in ("sealcommit-staging", "sealcommit-magic"):
        a, b = one(recs, scenario="files-1000", committer=c), one(recs, scenario="files-10000", committer=c)
        if a and b and "requests" in a and "requests" in b:
            per = (total(b["requests"]) - total(a["requests"])) / (b["files"] - a["files"])
            const = total(a["requests"]) - per * a["files"]
            rows.append((f"≤ 3 requests per file + a constant per job — {LABEL[c]}",
                         f"{per:.2f} per file + {const:.0f} per job (whole job, from 1,000 → 10,000 files)",
                         round(per, 2) <= 3.0))
    up = by(recs, scenario="upload-throughput")
    if up:
        raw = st.median(r["raw_mb_s"] for r in up)
        for k in ("magic", "staging"):
            x = st.median(r[f"{k}_mb_s"] for r in up) / raw
            rows.append((f"task upload ≥ 90 % of raw throughput — {k}", f"{x:.0%}", x >= 0.9))
    ck = one(recs, scenario="checkpoint", committer="sealcommit")
    if ck and "requests_per_batch" in ck:
        writes = sum(v for k, v in ck["requests_per_batch"].items() if k in ("put_obj", "init_multipart",
                                                                             "complete_multipart"))
        rows.append(("one request per checkpoint file (offsets/N and commits/N: 2 files a batch)",
                     f"{writes / 2:.2f} writes per file (steady state, {ck['steady_batches']} batches)",
                     writes / 2 <= 1.2))
    cc = one(recs, scenario="engine-commit")
    ceiling = by(recs, scenario="complete-ceiling")
    if cc and ceiling and "completes_per_second" in cc["driver"]:
        top = max(r["completes_per_second"] for r in ceiling)
        x = cc["driver"]["completes_per_second"] / top
        rows.append(("job commit throughput ≥ 90 % of the store's best Complete rate",
                     f"{x:.0%} ({cc['driver']['completes_per_second']:.0f}/s of {top:.0f}/s)", x >= 0.9))
    if cc:
        d = cc["driver"]
        mb = d["peak_rss_bytes"] / 2**20
        if cc["files"] >= 100_000:
            rows.append((f"driver memory < 100 MB for {cc['files']:,} files",
                         f"{mb:.0f} MiB ({d['peak_rss_bytes'] / 1e6:.0f} MB) peak RSS", d["peak_rss_bytes"] < 100e6))
        else:
            per = (d["peak_rss_bytes"] - d["baseline_rss_bytes"]) / cc["files"]
            at = (d["baseline_rss_bytes"] + per * 100_000) / 2**20
            rows.append(("driver memory < 100 MB for 100,000 files",
                         f"{mb:.0f} MiB peak RSS for {cc['files']:,} files ({per / 1024:.1f} KiB a file): about "
                         f"{at:.0f} MiB projected for 100,000", at < 100))
    runs, marginal = scale(recs)
    at_100k = next((r for r in runs if r["files"] == 100_000), None)
    if at_100k:
        d = at_100k["driver"]
        rows.append(("driver memory < 100 MB at 100,000 files (simulated commit)",
                     f"{d['peak_rss_bytes'] / 2**20:.0f} MiB ({d['peak_rss_bytes'] / 1e6:.0f} MB) peak RSS",
                     d["peak_rss_bytes"] < 100e6))
    if marginal is not None:
        rows.append(("driver memory ≤ 0.1 KiB marginal per file (simulated commit)",
                     f"{marginal:.0f} bytes a file ({marginal / 1024:.2f} KiB, {marginal / 102.4:.1f}× the target; "
                     f"{runs[0]['files']:,} → {runs[-1]['files']:,} files)", marginal <= 102.4))
    if rows:
        w("### Targets")
        w("")
        w("| target | measured | met |")
        w("|---|---|---|")
        for t, m, ok in rows:
            w(f"| {t} | {m} | {'yes' if ok else '**no**'} |")
        w("")


def main() -> None:
    data = json.loads(RESULTS.read_text())
    recs = data["records"]
    run = data["run"]
    out = []
    w = out.append
    w(f"Machine: {run['machine']}. Store: {run['store']}. Spark: {run['spark']}."
      f"{' Quick smoke run, not a measurement.' if run['quick'] else ''}")
    w("")
    runs = data.get("runs", [run])
    if len(runs) == 1:
        w(f"Every figure below comes from one run: started {runs[0]['started']}, {runs[0]['minutes']} min, "
          f"code at {runs[0].get('commit', '?')}.")
    else:
        w("Runs (a partial run replaces the figures of the committers and scenarios it measured; each "
          "record in results.json names its run):")
        w("")
        for r in runs:
            parts: dict[str, list[str]] = {}
            for part in r.get("parts", []):
                committer, _, scenario = part.partition(":")
                parts.setdefault(scenario, []).append(LABEL.get(committer, committer))
            what = "; ".join(f"{sc}: {', '.join(cs)}" for sc, cs in sorted(parts.items()))
            w(f"- {r['started']}, {r['minutes']} min, code at {r.get('commit', '?')}: {what}")
    w("")
    w("### 1. Job commit time and requests vs files")
    w("")
    w("Median of the repeats, (min–max) in brackets. *Job commit* is Spark's own figure (the time "
      "FileFormatWriter spends in `commitJob`); *job* is the whole write as the application sees it. "
      "Requests are every S3 request RGW served for the job, by RGW operation; *in commit* only those "
      "inside the commit window. \\* = unencrypted (FileOutputCommitter renames by CopyObject, which "
      "RGW refuses for SSE-KMS objects).")
    w("")
    scenarios = []
    for r in recs:
        if r.get("scenario", "").startswith("files-") and r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    order = list(LABEL)
    for s in scenarios:
        rows = sorted(by(recs, scenario=s), key=lambda r: order.index(r["committer"]) if r["committer"] in order
                      else len(order))
        measured = [r for r in rows if r.get("bytes")]
        w(f"**{s.removeprefix('files-')} files** ({measured[0]['bytes'] / 1e6:.1f} MB written)"
          if measured else f"**{s}**")
        w("")
        w("| committer | job commit, s | vs S3A magic | vs S3A directory | vs best S3A 3.4 | job, s "
          "| requests (per file) | in commit | by operation |")
        w("|---|---|---|---|---|---|---|---|---|")
        ref = one(recs, scenario=s, committer="s3a-magic")
        ref_dir = one(recs, scenario=s, committer="s3a-directory")
        ref_peer = best(recs, s, "commit_seconds", PEER)
        for r in rows:
            if "skipped" in r:
                w(f"| {LABEL.get(r['committer'], r['committer'])} | not run ({r['skipped']}) | | | | | | | |")
                continue
            if "failed" in r:
                w(f"| {LABEL.get(r['committer'], r['committer'])} | failed: {' '.join(r['failed'])[:120]} "
                  f"| | | | | | | |")
                continue
            def ratio(base):
                return (f"{base['commit_seconds']['median'] / r['commit_seconds']['median']:.1f}×"
                        if base and "commit_seconds" in base and r["commit_seconds"]["median"] > 0 else "–")
            w(f"| {LABEL.get(r['committer'], r['committer'])} | {fmt_s(r['commit_seconds'])} | {ratio(ref)} "
              f"| {ratio(ref_dir)} | {ratio(ref_peer)} "
              f"| {fmt_s(r['job_seconds'])} | {total(r['requests'])} ({total(r['requests']) / r['files']:.2f}) "
              f"| {total(r['commit_requests'])} | {ops_text(r['requests'])} |")
        w("")
    phased = [r for s in scenarios for r in by(recs, scenario=s) if r.get("phases")]
    if phased:
        w("Where the time of a sealcommit job goes, from the engine's job commit line: the tasks' uploads "
          "and task commits in task-seconds (summed over the tasks; in magic mode the uploads overlap "
          "the writing), the longest task's, and the engine's job commit.")
        w("")
        w("| files | committer | task uploads, s | longest task's uploads, s | task commits, s "
          "| longest task commit, s | job commit (engine), s |")
        w("|---|---|---|---|---|---|---|")
        for r in phased:
            p = r["phases"]
            w(f"| {r['files']} | {LABEL.get(r['committer'], r['committer'])} | {fmt_s(p.get('task_upload_seconds'))} "
              f"| {fmt_s(p.get('task_upload_longest_seconds'))} | {fmt_s(p.get('task_commit_seconds'))} "
              f"| {fmt_s(p.get('task_commit_longest_seconds'))} | {fmt_s(p.get('engine_commit_seconds'))} |")
        w("")
    w("![commit time vs files](benchmarks/commit-time.png)")
    w("![requests per file](benchmarks/requests-per-file.png)")
    w("")

    up = by(recs, scenario="upload-throughput")
    if up:
        w("### 2. Upload throughput of a task")
        w("")
        w(f"{up[0]['bytes'] >> 20} MiB of random bytes, SSE-KMS, {len(up)} repeats; the three paths take "
          f"turns going first, and RGW's garbage is collected before each repeat. *raw* is aws-sdk-s3 "
          f"multipart on the engine's TLS client ({up[0]['part_size'] >> 20} MiB parts, "
          f"{up[0]['parts_in_flight']} in flight, straight from memory); *magic* is the engine's magic writer "
          f"fed 1 MiB writes the way the JNI bridge feeds it (copied into the writer's part buffer; same part "
          f"size and parallelism); *staging* is staging mode's task-commit upload of a local file "
          f"({up[0]['staging_part_size'] >> 20} MiB parts, {up[0]['staging_parallelism']} in flight). "
          f"CPU is the client process's user + system time: on this 2-core machine the client competes with "
          f"RGW for the same cores.")
        w("")
        w("| path | MB/s (median, min–max) | vs raw | client CPU, s (median) |")
        w("|---|---|---|---|")
        import statistics as st
        raw = st.median(r["raw_mb_s"] for r in up)
        for k in ("raw", "magic", "staging"):
            v = [r[f"{k}_mb_s"] for r in up]
            cpu = [r[f"{k}_cpu_seconds"] for r in up if f"{k}_cpu_seconds" in r]
            w(f"| {k} | {st.median(v):.0f} ({min(v):.0f}–{max(v):.0f}) | {st.median(v) / raw:.0%} "
              f"| {f'{st.median(cpu):.2f}' if cpu else '–'} |")
        w("")

    st_rows = by(recs, scenario="checkpoint")
    if st_rows:
        w("### 3. Streaming checkpoint commits")
        w("")
        w("Rate source into the noop sink, a micro-batch every 200 ms: the only writes are the checkpoint's "
          "`offsets/N` and `commits/N`. Latency is Spark's `walCommit` + `commitOffsets` per batch (batches "
          "after the first). Requests per batch are the steady state (after the first batch, so without the "
          "checkpoint's one-off objects) and include the listings Spark makes of the checkpoint itself.")
        w("")
        w("| checkpoint manager | offsets + commits per batch, s | offsets, s | commits, s | requests per batch |")
        w("|---|---|---|---|---|")
        for r in st_rows:
            if "failed" in r:
                w(f"| {LABEL.get(r['committer'], r['committer'])} | failed: {' '.join(r['failed'])[:160]} | | | |")
                continue
            w(f"| {LABEL.get(r['committer'], r['committer'])} | {fmt_s(r['batch_commit_seconds'])} "
              f"| {fmt_s(r['offsets_seconds'])} | {fmt_s(r['commits_seconds'])} "
              f"| {ops_text(r['requests_per_batch'])} |")
        w("")

    ceiling = by(recs, scenario="complete-ceiling")
    if ceiling:
        import statistics as st
        w("### The store's ceiling: CompleteMultipartUpload per second")
        w("")
        w(f"`sealcommit bench ceiling`: {ceiling[0]['uploads']:,} pending one-part uploads completed with a raw "
          "aws-sdk-s3 client (the engine's TLS client and encryption headers) at each number in flight; twice, "
          "the second time from the most in flight down. The job commit's own Complete rate (section 4) is "
          "reported as a share of the best.")
        w("")
        w("| in flight | Completes per second (median, min–max) | throttled attempts |")
        w("|---|---|---|")
        for n in sorted({r["inflight"] for r in ceiling}):
            v = [r["completes_per_second"] for r in ceiling if r["inflight"] == n]
            t = sum(r.get("throttled_attempts", 0) for r in ceiling if r["inflight"] == n)
            w(f"| {n} | {st.median(v):.0f} ({min(v):.0f}–{max(v):.0f}) | {t} |")
        w("")

    cc = one(recs, scenario="engine-commit")
    if cc:
        d = cc["driver"]
        w("### 4. Scale without Spark: the engine commits pending uploads")
        w("")
        w(f"`sealcommit bench commit`: {cc['files']:,} small Parquet files ({cc['bytes'] / 1e6:.0f} MB, "
          f"generated with arrow/parquet) uploaded as pending multipart uploads in {cc['prepare_seconds']:.0f} s, "
          f"reported as {cc['tasks']} task pendingsets; a fresh process then reads them and runs the job commit.")
        w("")
        w("| files | driver time, s | of which commitJob, s | driver peak RSS | requests in commit |")
        w("|---|---|---|---|---|")
        w(f"| {d['files']:,} | {d['seconds']:.1f} | {d['commit_millis'] / 1000:.1f} "
          f"| {d['peak_rss_bytes'] / 2**20:.0f} MiB | {ops_text(d['requests'])} |")
        w("")
        if "complete" in d:
            c = d["complete"]
            top = max((r["completes_per_second"] for r in by(recs, scenario="complete-ceiling")), default=None)
            share = f", {d['completes_per_second'] / top:.0%} of the store's best ({top:.0f}/s)" if top else ""
            w(f"Its Complete phase: {c['completes']:,} Completes in {c['millis'] / 1000:.1f} s, "
              f"{d['completes_per_second']:.0f} per second{share}; at most {c['peak_parallelism']} in flight "
              f"(adaptive), {c['throttle_cuts']} cuts for throttling.")
            w("")

    runs, marginal = scale(recs)
    if runs:
        sizes = " and ".join(f"{r['files']:,}" for r in runs)
        w(f"### 4b. Scale without a store: the driver alone at {sizes} files (simulated)")
        w("")
        w("`sealcommit bench commit --simulate`: made-up pending uploads (Spark's file names under a partition "
          "directory, RGW-like upload ids and ETags, one part each, 100 to a task pendingset) committed by a fresh "
          "driver process against a store that answers at once and keeps nothing. **No store round trip**: the "
          "figures are the driver's own time and memory (reading the pendingsets, journal, Completes, `_SUCCESS`), "
          "not a store's.")
        w("")
        w("| files | driver time, s | peak RSS | over the process's base | marginal bytes per file |")
        w("|---|---|---|---|---|")
        for i, r in enumerate(runs):
            d = r["driver"]
            per = "–" if i == 0 else (f"{(d['peak_rss_bytes'] - runs[i - 1]['driver']['peak_rss_bytes']) / (r['files'] - runs[i - 1]['files']):.0f} "
                                      f"(from {runs[i - 1]['files']:,})")
            w(f"| {r['files']:,} | {d['seconds']:.1f} | {d['peak_rss_bytes'] / 2**20:.0f} MiB "
              f"({d['peak_rss_bytes'] / 1e6:.0f} MB) | {(d['peak_rss_bytes'] - d['baseline_rss_bytes']) / 2**20:.0f} MiB "
              f"| {per} |")
        w("")
        if marginal is not None:
            w(f"Marginal memory: {marginal:.0f} bytes a file ({marginal / 1024:.2f} KiB; target ≤ 0.1 KiB, "
              f"{'met' if marginal <= 102.4 else f'missed by {marginal - 102.4:.0f} bytes, {marginal / 102.4:.1f}×'}).")
            w("")

    mm = sorted(by(recs, committer="sealcommit-magic"), key=lambda r: r.get("bytes") or 0)
    mm = [r for r in mm if r.get("scenario", "").startswith("magic-memory")]
    if mm:
        w("### 5. Magic mode: executor memory vs file size")
        w("")
        w("One task writes one Parquet file; the engine accounts every part buffer it holds (16 MiB parts, "
          "4 in flight by default) and reports the peak in `_SUCCESS`.")
        w("")
        w("| file size | part buffers at peak |")
        w("|---|---|")
        for r in mm:
            w(f"| {r['bytes'] / 2**20:.0f} MiB | {r['peak_memory_bytes'] / 2**20:.0f} MiB |")
        w("")

    targets(recs, w)
    made = charts(recs, RESULTS.parent)
    text = "\n".join(out)
    doc = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"wrote {DOC} and {', '.join(made)}", file=sys.stderr)


if __name__ == "__main__":
    main()
