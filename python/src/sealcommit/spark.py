"""Spark settings for sealcommit, applied to a ``SparkSession.Builder``.

:func:`configure` is the whole API a PySpark job needs::

    from pyspark.sql import SparkSession
    from sealcommit.spark import configure

    builder = (SparkSession.builder.appName("job")
               .config("spark.jars", "/opt/jars/hadoop-aws-3.3.4.jar,/opt/jars/aws-java-sdk-bundle-1.12.367.jar")
               .config("spark.hadoop.fs.s3a.encryption.algorithm", "SSE-KMS")
               .config("spark.hadoop.fs.s3a.encryption.key", "spark-encryption-key"))
    spark = configure(builder, streaming=True).getOrCreate()

It only fills in what the builder does not have yet, and it must run before ``getOrCreate()``
starts the JVM: ``spark.jars`` reaches the driver's class path only when pyspark launches the
JVM. Under ``spark-submit`` (the JVM runs before Python does) pass the jar yourself:
``spark-submit --jars "$(python -m sealcommit)" ...``; ``configure`` then leaves ``spark.jars``
alone (it would replace ``--jars``) and sets the classes only.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, MutableMapping, Optional, TypeVar

from sealcommit import jar_path

if TYPE_CHECKING:  # pragma: no cover - typing only; pyspark is the user's own
    from pyspark.sql import SparkSession

    BuilderT = TypeVar("BuilderT", bound=SparkSession.Builder)
else:
    BuilderT = TypeVar("BuilderT")

__all__ = [
    "COMMIT_PROTOCOL",
    "STREAMING_COMMIT_PROTOCOL",
    "CHECKPOINT_MANAGER",
    "CHECKPOINT_MANAGER_SPARK_41",
    "checkpoint_manager_class",
    "configure",
    "settings",
    "spark_defaults",
    "spark_version",
]

_log = logging.getLogger(__name__)

#: ``spark.sql.sources.commitProtocolClass``: batch writes (DataFrameWriter, SQL, foreachBatch).
COMMIT_PROTOCOL = "io.sealcommit.spark.SealCommitProtocol"
#: ``spark.sql.streaming.commitProtocolClass``: the data of Structured Streaming's file sink.
STREAMING_COMMIT_PROTOCOL = "io.sealcommit.spark.SealStreamingCommitProtocol"
#: ``spark.sql.streaming.checkpointFileManagerClass`` for Spark 3.5 and 4.0.
CHECKPOINT_MANAGER = "io.sealcommit.spark.SealCheckpointFileManager"
#: ... and for Spark 4.1 and later, where Spark moved ``CheckpointFileManager`` to
#: ``org.apache.spark.sql.execution.streaming.checkpointing`` (both classes are in the jar; the
#: other line's fails to load with ``NoClassDefFoundError``).
CHECKPOINT_MANAGER_SPARK_41 = "io.sealcommit.spark.checkpointing.SealCheckpointFileManager"

_JARS = "spark.jars"
_VERSION = re.compile(r"\s*(\d+)\.(\d+)")
# spark-core_<scala>-<version>.jar in a Spark distribution's (or pyspark's) jars/ directory.
_SPARK_CORE_JAR = re.compile(r"spark-core_[0-9.]+-(\d+\.\d+\.\d+[^/]*)\.jar$")


def spark_version() -> str:
    """The version of the Spark that pyspark will launch.

    That is the distribution in ``$SPARK_HOME`` when it is set (pyspark launches that one, whatever
    its own version), read from its ``jars/spark-core_*.jar``; otherwise ``pyspark.__version__``.

    Raises:
        ImportError: pyspark is not installed and ``$SPARK_HOME`` names no Spark.
    """
    home = os.environ.get("SPARK_HOME")
    if home:
        jars = Path(home) / "jars"
        names = (p.name for p in jars.glob("spark-core_*.jar"))
        found = sorted(m.group(1) for m in map(_SPARK_CORE_JAR.search, names) if m)
        if found:
            return found[-1]
    try:
        import pyspark
    except ImportError as e:
        raise ImportError(
            "sealcommit.spark needs pyspark, which it does not install: `pip install pyspark==<your "
            "Spark version>` (3.5 or 4.x), or pass spark_version=") from e
    return str(pyspark.__version__)


def _major_minor(version: str) -> tuple:
    m = _VERSION.match(version)
    if not m:
        raise ValueError(f"not a Spark version: {version!r} (expected e.g. '3.5.7' or '4.1.0')")
    return int(m.group(1)), int(m.group(2))


def checkpoint_manager_class(version: Optional[str] = None) -> str:
    """The ``spark.sql.streaming.checkpointFileManagerClass`` for a Spark version.

    Args:
        version: a Spark version such as ``"3.5.7"``, ``"4.1.0"`` or ``"4.1.0.dev0"``; default:
            :func:`spark_version`.

    Returns:
        :data:`CHECKPOINT_MANAGER_SPARK_41` for Spark 4.1 and later, :data:`CHECKPOINT_MANAGER`
        before.
    """
    v = _major_minor(version if version is not None else spark_version())
    return CHECKPOINT_MANAGER_SPARK_41 if v >= (4, 1) else CHECKPOINT_MANAGER


def settings(streaming: bool = True, version: Optional[str] = None) -> Dict[str, str]:
    """The Spark settings that make Spark commit through sealcommit, without ``spark.jars``.

    Args:
        streaming: also the Structured Streaming checkpoint manager and file-sink protocol.
        version: the Spark version the checkpoint manager class is chosen for; default:
            :func:`spark_version`.
    """
    out = {"spark.sql.sources.commitProtocolClass": COMMIT_PROTOCOL}
    if streaming:
        out["spark.sql.streaming.checkpointFileManagerClass"] = checkpoint_manager_class(version)
        out["spark.sql.streaming.commitProtocolClass"] = STREAMING_COMMIT_PROTOCOL
    return out


def _options(builder: Any) -> MutableMapping[str, Any]:
    # pyspark 3.4+ (3.5 and 4.x alike, classic and Connect) keeps a builder's settings in the
    # instance dict `_options`, keyed by setting name; `config()` stores values as strings.
    options = getattr(builder, "_options", None)
    if not isinstance(options, MutableMapping) or not callable(getattr(builder, "config", None)):
        raise TypeError(f"configure() takes a pyspark SparkSession.Builder, not {type(builder).__name__}")
    return options


def _spark_home() -> Optional[Path]:
    home = os.environ.get("SPARK_HOME")
    if home:
        return Path(home)
    try:
        import pyspark
    except ImportError:
        return None
    return Path(pyspark.__file__).parent  # pip's pyspark is its own SPARK_HOME


def spark_defaults() -> Dict[str, str]:
    """The settings of the ``spark-defaults.conf`` that the launched Spark will read
    (``$SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``); empty when there is none.

    A builder setting replaces the file's value for the same key, so :func:`configure` treats the
    file's settings as the user's too (and keeps its ``spark.jars``).
    """
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    home = _spark_home()
    path = Path(conf_dir) if conf_dir else (home / "conf" if home else None)
    if path is None or not (path / "spark-defaults.conf").is_file():
        return {}
    out: Dict[str, str] = {}
    for raw in (path / "spark-defaults.conf").read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^\s=:]+)\s*[\s=:]\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _has_sealcommit_jar(jars: str) -> bool:
    names = (e.strip().rstrip("/").rsplit("/", 1)[-1] for e in jars.split(","))
    return any(n.startswith("sealcommit-") and n.endswith(".jar") for n in names)


def configure(builder: BuilderT, streaming: bool = True, spark_version: Optional[str] = None) -> BuilderT:
    """Makes a ``SparkSession.Builder`` commit through sealcommit; returns the same builder.

    Adds the bundled jar to ``spark.jars`` (after any jars already set on the builder; unless a
    ``sealcommit-*.jar`` is already among them), and sets

    * ``spark.sql.sources.commitProtocolClass`` = :data:`COMMIT_PROTOCOL`;
    * with ``streaming``: ``spark.sql.streaming.checkpointFileManagerClass`` = the class for the
      Spark line (:func:`checkpoint_manager_class`) and
      ``spark.sql.streaming.commitProtocolClass`` = :data:`STREAMING_COMMIT_PROTOCOL`.

    A setting already on the builder or in ``spark-defaults.conf`` (:func:`spark_defaults`) is
    never changed; a ``spark.jars`` from that file is kept ahead of the jar. Storage settings (``fs.s3a.*``, the
    encryption keys, ``hadoop-aws`` in ``spark.jars``) stay the user's. With ``streaming`` every
    streaming query of the session writes its checkpoint through sealcommit.

    Call it before ``getOrCreate()``. When the JVM already runs (``spark-submit``, the ``pyspark``
    shell: ``PYSPARK_GATEWAY_PORT`` is set) ``spark.jars`` can no longer reach the driver's class
    path and would replace ``--jars``, so it is left alone: give ``--jars "$(python -m
    sealcommit)"`` to ``spark-submit``.

    Args:
        builder: ``SparkSession.builder`` (pyspark 3.4 or later), with the user's settings.
        streaming: also configure Structured Streaming (checkpoints and the file sink).
        spark_version: the Spark version to choose the checkpoint manager for; default: the Spark
            pyspark launches (:func:`spark_version`).

    Returns:
        ``builder``, for chaining.

    Raises:
        TypeError: ``builder`` is not a SparkSession builder.
        FileNotFoundError: this package carries no jar (see :func:`sealcommit.jar_path`).
    """
    options = _options(builder)
    wanted = settings(streaming, spark_version)
    defaults = spark_defaults()
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        _log.info("sealcommit: the JVM is already running; spark.jars left alone (give spark-submit "
                  "--jars %s)", jar_path())
    else:
        jar = str(jar_path())
        if "," in jar:
            raise ValueError(f"the sealcommit jar's path contains a comma, which spark.jars cannot hold: {jar}")
        current = options.get(_JARS, defaults.get(_JARS))
        current = "" if current is None else str(current).strip().strip(",")
        if not current:
            builder.config(_JARS, jar)
        elif not _has_sealcommit_jar(current):
            builder.config(_JARS, f"{current},{jar}")
    for key, value in wanted.items():
        current = options.get(key, defaults.get(key))
        if current is None:
            builder.config(key, value)
        elif current != value:
            _log.info("sealcommit: %s is already set to %s; left as it is", key, current)
    return builder
