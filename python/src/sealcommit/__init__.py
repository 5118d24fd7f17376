"""sealcommit for PySpark: the sealcommit jar and the settings that make Spark commit through it.

The jar (Java shim plus the native engine for linux-x86_64, glibc 2.17 and newer) ships inside
this package; :func:`jar_path` finds it and :func:`sealcommit.spark.configure` adds it and the
commit protocol to a ``SparkSession.Builder``::

    from pyspark.sql import SparkSession
    from sealcommit.spark import configure

    spark = configure(SparkSession.builder.appName("job"), streaming=True).getOrCreate()

pyspark is deliberately not a dependency of this package: use the pyspark (3.5 or 4.x) you
already run. ``python -m sealcommit`` prints the jar's path, for ``spark-submit --jars``.
"""

from __future__ import annotations

from pathlib import Path

try:
    from sealcommit._version import __version__
except ImportError:  # a source checkout that python/build.sh has not prepared
    __version__ = "0+unknown"

__all__ = ["__version__", "jar_path"]


def jar_path() -> Path:
    """The absolute path of the bundled ``sealcommit-<version>.jar``.

    Raises:
        FileNotFoundError: the package carries no jar (a source checkout: run
            ``bash python/build.sh`` after building the jar).
    """
    jar = Path(__file__).resolve().parent / "jars" / f"sealcommit-{__version__}.jar"
    if not jar.is_file():
        raise FileNotFoundError(
            f"{jar} is missing: this sealcommit package carries no jar (installed from a source "
            "checkout? build the wheel with `bash python/build.sh` and install that)")
    return jar
