"""The jar's native library: portable, loadable, and its loader's errors say what to do.

- the bundled native/linux-x86_64/libsealcommit.so needs glibc 2.17 at most (`objdump -T`), so it
  loads on Ubuntu 20.04 Spark images (2.31), Amazon Linux 2 (2.26), RHEL 8 (2.28), CentOS 7;
- a fresh JVM with only the jar (and Spark's jars) loads it from the jar and calls into it;
- on a platform the jar has no library for, the error lists the platforms it carries and names
  rust/jni/build-native.sh (simulated with a copy of the jar carrying only other platforms);
- a library that needs a newer glibc than the system's gets an error naming both versions (a real
  load failure: a tiny library that requires GLIBC_2.99).
Needs no store.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pyspark
import pytest

from tests.conftest import JAR

MAX_GLIBC = (2, 17)
BUNDLED = "native/linux-x86_64/libsealcommit.so"

PROBE = r"""
package io.sealcommit;

/** Loads the native library the way the committer does; prints what happened. */
public final class NativeProbe {
  private NativeProbe() {}

  public static void main(String[] args) throws Exception {
    System.out.println("PLATFORM " + NativeLoader.platform());
    System.out.println("CARRIED " + String.join(",", NativeLoader.carriedPlatforms()));
    try {
      NativeLoader.load(null);
      System.out.println("VERSION " + Native.version());
      System.out.println("REVISION " + Native.revision());
    } catch (SealCommitException e) {
      System.out.println("ERROR " + e.getMessage());
    }
  }
}
"""


def jdk_tool(name: str) -> str:
    # The same JDK as Spark's java: the tool beside the java on PATH.
    java = shutil.which("java")
    assert java, "no java on PATH"
    tool = Path(java).resolve().parent / name
    return str(tool) if tool.exists() else shutil.which(name)


def glibc_versions(lib: Path) -> list[tuple[int, ...]]:
    out = subprocess.run(["objdump", "-T", str(lib)], check=True, capture_output=True, text=True).stdout
    return sorted({tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]*[0-9])", out)})


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """Runs the probe in a fresh JVM with `jar` (and Spark's jars); its output lines by tag."""
    assert JAR.exists(), f"{JAR} is missing: run tests/bed/build.sh"
    classes = tmp_path_factory.mktemp("probe")
    src = classes / "NativeProbe.java"
    src.write_text(PROBE)
    javac = jdk_tool("javac")
    assert javac, "no javac (a JDK is needed, not only a JRE)"
    subprocess.run([javac, "-Xlint:all,-path", "-Werror", "--release", "8", "-d", str(classes),
                    "-cp", str(JAR), str(src)], check=True, capture_output=True, text=True, timeout=120)
    empty = tmp_path_factory.mktemp("no-libs")  # nothing on java.library.path: the jar's copy

    def run(jar: Path, *props: str) -> dict[str, str]:
        classpath = f"{classes}:{jar}:{Path(pyspark.__file__).parent / 'jars'}/*"
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        out = subprocess.run([jdk_tool("java"), "-Xmx128m", f"-Djava.library.path={empty}", *props,
                              "-cp", classpath, "io.sealcommit.NativeProbe"],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
        print(lines)
        return lines

    return run


def test_bundled_library_needs_glibc_217_at_most(tmp_path):
    with zipfile.ZipFile(JAR) as jar:
        assert BUNDLED in jar.namelist(), f"{JAR} does not bundle {BUNDLED}"
        lib = tmp_path / "libsealcommit.so"
        lib.write_bytes(jar.read(BUNDLED))
    versions = glibc_versions(lib)
    assert versions, "no GLIBC symbol versions found: not a glibc library?"
    highest = ".".join(map(str, versions[-1]))
    print(f"{BUNDLED} needs glibc {highest} at most")
    assert versions[-1] <= MAX_GLIBC, f"{BUNDLED} needs GLIBC_{highest}, more than 2.17"


def test_jar_library_loads_in_a_fresh_jvm(probe):
    # log4j2 (Spark's SLF4J binding) at INFO without a configuration file: the load line shows.
    out = probe(JAR, "-Dorg.apache.logging.log4j.level=INFO")
    assert out["PLATFORM"] == "linux-x86_64"
    assert "linux-x86_64" in out["CARRIED"].split(",")
    assert "ERROR" not in out, out["ERROR"]
    # The library's own version: the same as the jar's (build.gradle's version).
    assert out["VERSION"] == re.search(r"sealcommit-(.+)\.jar$", JAR.name).group(1)
    # Know what runs: the library and the jar's manifest name the revision they were built from.
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=JAR.parent.parent.parent,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out["REVISION"] == rev
    with zipfile.ZipFile(JAR) as z:
        manifest = z.read("META-INF/MANIFEST.MF").decode()
    assert f"Implementation-Version: {out['VERSION']}" in manifest, manifest
    assert f"Implementation-Revision: {rev}" in manifest, manifest
    # (log4j's default layout differs by line: Spark 4.3's leaves the logger name out.)
    loaded = [v for v in out.values() if "loaded its native library" in v]
    assert len(loaded) == 1 and (f"sealcommit {out['VERSION']} (revision {rev}) loaded its native library "
                                 "for linux-x86_64 from the jar") in loaded[0], out


def test_missing_platform_lists_carried_platforms(probe, tmp_path):
    # A jar as a release machine might have made it, carrying other platforms but not this one.
    other = tmp_path / "sealcommit-other.jar"
    with zipfile.ZipFile(JAR) as src, zipfile.ZipFile(other, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not item.filename.startswith("native/linux-x86_64/"):
                dst.writestr(item, src.read(item))
        dst.writestr("native/linux-aarch64/libsealcommit.so", b"not loaded")
        dst.writestr("native/darwin-aarch64/libsealcommit.dylib", b"not loaded")
    out = probe(other)
    assert "VERSION" not in out
    error = out["ERROR"]
    assert "carries the native library for darwin-aarch64, linux-aarch64, not for linux-x86_64" \
        in error, error
    assert "rust/jni/build-native.sh linux-x86_64" in error, error
    assert "no /native/linux-x86_64/libsealcommit.so in the jar" in error, error


def test_glibc_too_old_names_both_versions(probe, tmp_path):
    # A real glibc version failure: a library that needs GLIBC_2.99 of libc.so.6, linked against
    # a stub libc that defines it.
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    (tmp_path / "stub.c").write_text("int sealcommit_probe_symbol(void) { return 0; }\n")
    (tmp_path / "stub.map").write_text("GLIBC_2.99 { global: sealcommit_probe_symbol; local: *; };\n")
    (tmp_path / "lib.c").write_text("extern int sealcommit_probe_symbol(void);\n"
                                    "int probe(void) { return sealcommit_probe_symbol(); }\n")
    (tmp_path / "stub").mkdir()
    stub = tmp_path / "stub" / "libc.so.6"
    subprocess.run([cc, "-shared", "-fPIC", "-nostdlib", "-o", str(stub), str(tmp_path / "stub.c"),
                    f"-Wl,--version-script={tmp_path / 'stub.map'}", "-Wl,-soname,libc.so.6"], check=True)
    lib = tmp_path / "libsealcommit.so"
    subprocess.run([cc, "-shared", "-fPIC", "-nostdlib", "-o", str(lib), str(tmp_path / "lib.c"),
                    str(stub)], check=True)
    assert glibc_versions(lib) == [(2, 99)]

    out = probe(JAR, f"-Dsealcommit.native.path={lib}")
    error = out["ERROR"]
    system = os.confstr("CS_GNU_LIBC_VERSION").split()[1]  # "glibc 2.36"
    assert "GLIBC_2.99" in error, error
    assert f"needs glibc 2.99 or newer (symbol version GLIBC_2.99); this system has glibc {system}" \
        in error, error
