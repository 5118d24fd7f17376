"""Native handles cannot be used after free (io.sealcommit.NativeHandle).

tests/jvm/HandleStress.java runs in its own JVM under -Xcheck:jni: for each target, 2,000 times,
8 threads call a cheap method on a handle in a loop while the main thread closes it after a
random delay of up to 0.3 ms. Targets: a model handle whose fake native object sees every call
and the free (a call on freed memory or a free under a running call is seen exactly), and a real
SealJob calling jobMagic, whose frees the engine counts itself. Needs no store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyspark

from tests.conftest import JAR, ROOT

CYCLES = 2000
THREADS = 8


def jdk_tool(name: str) -> str:
    # The same JDK as Spark's java: the javac beside the java on PATH.
    java = shutil.which("java")
    assert java, "no java on PATH"
    tool = Path(java).resolve().parent / name
    return str(tool) if tool.exists() else shutil.which(name)


def test_close_under_concurrent_calls(tmp_path):
    assert JAR.exists(), f"{JAR} is missing: run tests/bed/build.sh"
    classpath = f"{tmp_path}:{JAR}:{Path(pyspark.__file__).parent / 'jars'}/*"
    javac = jdk_tool("javac")
    assert javac, "no javac (a JDK is needed, not only a JRE)"
    subprocess.run([javac, "-Xlint:all,-path", "-Werror", "-encoding", "UTF-8", "-d", str(tmp_path),
                    "-cp", classpath, str(ROOT / "tests" / "jvm" / "HandleStress.java")],
                   check=True, capture_output=True, text=True, timeout=120)
    out = subprocess.run([jdk_tool("java"), "-Xcheck:jni", "-Xmx256m", "-cp", classpath,
                          "io.sealcommit.HandleStress", str(CYCLES), str(THREADS)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert "FATAL ERROR" not in log and not list(tmp_path.glob("hs_err*")), log[-5000:]
    # -Xcheck:jni's complaints about the JNI layer (unchecked exceptions, bad references).
    assert "WARNING in native method" not in log, log[-5000:]

    results = {r["target"]: r for r in
               (json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines()
                if line.startswith("RESULT "))}
    assert set(results) == {"model", "job", "writers"}, log[-5000:]
    w = results.pop("writers")
    print(f"writers: {w['cycles']} magic and checkpoint writers cancelled twice, "
          f"{w['refused_writes']} writes and {w['refused_calls']} calls refused after close")
    # Writers cancelled twice are freed once and refuse writes after; a closed checkpoint
    # manager refuses calls; writers outlive the job or manager that opened them.
    assert w["violations"] == [], w
    assert (w["jobs_opened"], w["jobs_freed"]) == (w["cycles"], w["cycles"]), w
    assert (w["refused_writes"], w["refused_calls"]) == (2 * w["cycles"], w["cycles"]), w
    for target, r in results.items():
        print(f"{target}: {r['cycles']} cycles x {r['threads']} threads in {r['millis']} ms: "
              f"{r['ok']} calls succeeded, {r['refused']} refused, "
              f"{r['closes_with_calls_in_flight']} closes began with calls in flight "
              f"({r['calls_in_flight_at_close']} calls), {r['held_through_close']} held through close")
        assert r["violations"] == [], (target, r["violations"])
        assert r["errors"] == [], (target, r["errors"])
        # Every handle freed exactly once, none leaked: counted by the native side itself.
        assert (r["opened"], r["freed"], r["bad_frees"]) == (CYCLES, CYCLES, 0), (target, r)
        # No call reached the engine with a freed job (the engine checks each job call's handle).
        assert r["refused_natively"] == 0, (target, r)
        # Every thread's loop ended with exactly one IllegalStateException, in every cycle.
        assert r["refused"] == CYCLES * THREADS, (target, r)
        # The race was really run: calls succeeded, and many closes began while calls ran.
        assert r["ok"] >= CYCLES, (target, r)
        # One thread's first call of each cycle stays in flight until close has started: close
        # must wait for it (the model would see its object freed under it).
        assert r["held_through_close"] >= CYCLES // 4, (target, r)
        assert r["closes_with_calls_in_flight"] >= r["held_through_close"], (target, r)
