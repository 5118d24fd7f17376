"""The `sealcommit` CLI against the real store: `verify` (the operator's proof of which key each object
uses), `uploads`, settings from core-site.xml and files, pipe-safe output, arguments."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import subprocess

from tests.bed import stores
from tests.bed.stores import ACCESS_KEY, KMS_KEY_1, KMS_KEY_2
from tests.conftest import CLI
from tests.test_batch import A, write



def cli_env(bed) -> dict:
    return dict(os.environ, AWS_ENDPOINT_URL=bed.rgw.https_endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                AWS_SECRET_ACCESS_KEY=stores.SECRET_KEY, AWS_REGION="us-east-1", AWS_CA_BUNDLE=bed.ca.ca_pem)


def cli(bed, *args):
    return subprocess.run([str(CLI), *args, "--conf", "fs.s3a.path.style.access=true"], env=cli_env(bed),
                          capture_output=True, text=True, timeout=120)


def cli_on_terminal(bed, *args) -> tuple[int, str, str]:
    """Runs the CLI with stderr on a pseudo-terminal (as an operator's shell has it) and stdout on
    a pipe: exit code, stdout, and the raw bytes the terminal received."""
    master, slave = pty.openpty()
    p = subprocess.Popen([str(CLI), *args, "--conf", "fs.s3a.path.style.access=true"], env=cli_env(bed),
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the CLI closed its end
            break
        if not chunk:
            break
        seen += chunk
    out = p.stdout.read()
    os.close(master)
    return p.wait(timeout=120), out, seen.decode("utf-8", "replace")


def test_verify_reports_keys_and_fails_on_mismatch(spark, bed, prefix):
    uri = f"s3a://direct-http/{prefix}"
    write(spark, A, "parquet", uri, "errorifexists", False)

    ok = cli(bed, "verify", uri, "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_1, "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert len(report["objects"]) == 3 and report["mismatches"] == 0  # two parts and _SUCCESS
    assert {o["encryption"]["kms_key_id"] for o in report["objects"]} == {KMS_KEY_1}

    wrong = cli(bed, "verify", uri, "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_2)
    assert wrong.returncode == 1
    assert f"expected SSE-KMS with KMS key '{KMS_KEY_2}'" in wrong.stdout, wrong.stdout
    assert "3 objects, 3 mismatches" in wrong.stdout
    assert stores.SECRET_KEY not in wrong.stdout + wrong.stderr


def test_verify_deep_opens_parquet_footers(spark, s3, bed, prefix):
    uri = f"s3a://direct-http/{prefix}"
    spark.range(1000).write.parquet(uri)
    deep = cli(bed, "verify", uri, "--deep", "--json")
    assert deep.returncode == 0, deep.stderr
    report = json.loads(deep.stdout)
    assert report["parquet_rows"] == 1000 and report["parquet_files"] >= 1, report
    assert deep.returncode == 0 and cli(bed, "verify", uri, "--deep").stdout.strip().endswith(
        f"{report['parquet_files']} Parquet files opened, 1000 rows")

    # Encrypted like the rest, but not Parquet: --deep finds it, a plain verify does not.
    s3.put_object(Bucket="direct-http", Key=f"{prefix}/part-99999-broken.parquet", Body=b"PAR1 not really",
                  ServerSideEncryption="aws:kms", SSEKMSKeyId=KMS_KEY_1)
    assert cli(bed, "verify", uri).returncode == 0
    broken = cli(bed, "verify", uri, "--deep", "--json")
    assert broken.returncode == 1
    [bad] = [o for o in json.loads(broken.stdout)["objects"] if o["problem"]]
    assert bad["uri"].endswith("part-99999-broken.parquet") and "PAR1" in bad["problem"], bad


def test_verify_with_a_bad_ca_file_names_the_setting(bed, prefix, tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    out = cli(bed, "verify", f"s3a://direct-http/{prefix}", "--conf", f"sealcommit.tls.ca-file={bad}")
    assert out.returncode == 2
    assert "sealcommit.tls.ca-file" in out.stderr and "no PEM certificate" in out.stderr, out.stderr


def test_uploads_lists_and_aborts_what_crashed_writers_left(bed, s3, prefix):
    bucket = "direct-http"
    left = {f"{prefix}/t/part-00000-job-aaa.parquet", f"{prefix}/t/p=1/part-00001-job-bbb.parquet"}
    for key in left:
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    # A neighbour whose name only starts like the prefix is not under it.
    s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/tx/part-00000-job-aaa.parquet")
    uri = f"s3a://{bucket}/{prefix}/t"

    listed = cli(bed, "uploads", "list", uri, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {u["uri"] for u in json.loads(listed.stdout)["uploads"]} == {f"s3a://{bucket}/{k}" for k in left}
    young = cli(bed, "uploads", "list", uri, "--older-than", "1h")
    assert young.stdout.strip().endswith("0 uploads pending"), young.stdout

    one = cli(bed, "uploads", "abort", uri, "--job", "job-bbb")
    assert one.returncode == 0 and "1 uploads aborted" in one.stdout, one.stdout + one.stderr
    keys = {u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])}
    assert keys == {f"{prefix}/t/part-00000-job-aaa.parquet", f"{prefix}/tx/part-00000-job-aaa.parquet"}

    rest = cli(bed, "uploads", "abort", uri)
    assert "1 uploads aborted" in rest.stdout, rest.stdout
    assert cli(bed, "uploads", "abort", f"s3a://{bucket}/{prefix}/tx").returncode == 0
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []) == []
    bad = cli(bed, "uploads", "abort", uri, "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than" in bad.stderr, bad.stderr


def test_verbosity_flags_and_rust_log(bed, s3, prefix):
    bucket = "direct-http"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/v/a", Body=b"x")
    uri = f"s3a://{bucket}/{prefix}/v"
    request = f"ListObjectsV2 s3a://{bucket}/{prefix}/v"

    quiet = cli(bed, "verify", uri, "--no-progress")
    assert quiet.returncode in (0, 1), quiet.stderr  # 1: the object is not encrypted; not the point
    assert f"s3a://{bucket}/{prefix}/v/a" in quiet.stdout, quiet.stdout  # the one object, reported
    assert request not in quiet.stderr and "sealcommit_engine" not in quiet.stderr, quiet.stderr
    debug = cli(bed, "-vv", "verify", uri, "--no-progress")
    assert debug.stdout == quiet.stdout  # the flag is not taken for an argument; logs stay off stdout
    assert re.search(rf"DEBUG +sealcommit_engine::store\] {re.escape(request)}", debug.stderr), debug.stderr
    info = cli(bed, "-v", "verify", uri, "--no-progress")
    assert request not in info.stderr, info.stderr
    env = dict(cli_env(bed), RUST_LOG="sealcommit_engine::store=debug")
    via_env = subprocess.run([str(CLI), "verify", uri, "--no-progress", "--conf", "fs.s3a.path.style.access=true"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert request in via_env.stderr, via_env.stderr


def test_progress_bar_on_a_terminal_only(bed, s3, prefix):
    bucket = "direct-http"
    for i in range(40):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/o/{i:03d}", Body=b"x" * i,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=KMS_KEY_1)
    uri = f"s3a://{bucket}/{prefix}/o"
    args = ("verify", uri, "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_1, "--json")

    code, out, term = cli_on_terminal(bed, *args)
    assert code == 0, term
    assert "0/40 objects verified [" in term and "40/40 objects verified [" in term and "100%" in term, term
    assert term.endswith("\r\x1b[2K"), repr(term[-80:])  # the bar is cleared when done
    assert len(json.loads(out)["objects"]) == 40  # stdout stays pure JSON

    piped = cli(bed, *args)
    assert piped.returncode == 0 and "objects verified" not in piped.stderr, piped.stderr
    code, _, term = cli_on_terminal(bed, *args, "--no-progress")
    assert code == 0 and "objects verified" not in term, term

    for i in range(3):
        s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/u/part-{i}")
    code, out, term = cli_on_terminal(bed, "uploads", "abort", f"s3a://{bucket}/{prefix}/u")
    assert code == 0 and "3 uploads aborted" in out, out + term
    assert "3/3 uploads aborted [" in term, term


def test_secrets_come_from_the_environment_or_a_file_never_the_command_line(bed, s3, prefix, tmp_path):
    bucket = "direct-http"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/s/a", Body=b"x", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=KMS_KEY_1)
    uri = f"s3a://{bucket}/{prefix}/s"
    typed = cli(bed, "verify", uri, "--conf", f"fs.s3a.secret.key={stores.SECRET_KEY}")
    assert typed.returncode == 2, typed.stdout + typed.stderr
    assert "AWS_SECRET_ACCESS_KEY" in typed.stderr and "--conf-file" in typed.stderr, typed.stderr
    sse_c = base64.b64encode(os.urandom(32)).decode()
    typed_sse_c = cli(bed, "verify", uri, "--conf", "fs.s3a.encryption.algorithm=SSE-C",
                      "--conf", f"fs.s3a.encryption.key={sse_c}")
    assert typed_sse_c.returncode == 2 and "fs.s3a.encryption.key" in typed_sse_c.stderr, typed_sse_c.stderr
    expect_sse_c = cli(bed, "verify", uri, "--expect-algorithm", "SSE-C", "--expect-key", sse_c)
    assert expect_sse_c.returncode == 2 and "--conf-file" in expect_sse_c.stderr, expect_sse_c.stderr
    for out in (typed, typed_sse_c, expect_sse_c):
        assert stores.SECRET_KEY not in out.stdout + out.stderr and sse_c not in out.stdout + out.stderr

    # A KMS key id is no secret: accepted with --conf.
    kms = cli(bed, "verify", uri, "--conf", "fs.s3a.encryption.algorithm=SSE-KMS",
              "--conf", f"fs.s3a.encryption.key={KMS_KEY_1}")
    assert kms.returncode == 0, kms.stdout + kms.stderr

    # The credentials from a file instead of the environment.
    conf = tmp_path / "s3.conf"
    conf.write_text(f"# the bed's user\nfs.s3a.access.key={ACCESS_KEY}\nfs.s3a.secret.key={stores.SECRET_KEY}\n")
    conf.chmod(0o600)
    env = {k: v for k, v in cli_env(bed).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    from_file = subprocess.run([str(CLI), "verify", uri, "--conf-file", str(conf), "--conf", "fs.s3a.path.style.access=true",
                                "--expect-algorithm", "SSE-KMS", "--expect-key", KMS_KEY_1],
                               env=env, capture_output=True, text=True, timeout=120)
    assert from_file.returncode == 0 and "1 objects, 0 mismatches" in from_file.stdout, from_file.stdout + from_file.stderr


def test_version_names_the_revision():
    from tests.test_batch import HEAD_REVISION

    out = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"sealcommit 0.1.0 (revision {HEAD_REVISION})"


def test_core_site_xml_and_conf_files_in_hadoop_order(bed, s3, prefix, tmp_path):
    """$HADOOP_CONF_DIR/core-site.xml (the store per bucket, the credentials) over the environment,
    --conf-file over core-site.xml, --conf over every file: seen in what verify expects."""
    bucket = "direct-http"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/x/a", Body=b"x", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=KMS_KEY_1)
    uri = f"s3a://{bucket}/{prefix}/x"
    hadoop = tmp_path / "hadoop"
    hadoop.mkdir()
    site = hadoop / "core-site.xml"
    site.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="configuration.xsl"?>
<!-- as an operator's cluster has it -->
<configuration>
  <property>
    <name>fs.s3a.bucket.{bucket}.endpoint</name>
    <value>{bed.rgw.https_endpoint}</value>
    <description>the bed's RGW, for this bucket only</description>
  </property>
  <property><name>fs.s3a.endpoint</name><value>https://127.0.0.1:9</value></property>
  <property><name>fs.s3a.path.style.access</name><value>true</value></property>
  <property><name>fs.s3a.access.key</name><value>{ACCESS_KEY}</value></property>
  <property><name>fs.s3a.secret.key</name><value>{stores.SECRET_KEY}</value></property>
  <property><name>fs.s3a.bucket.{bucket}.encryption.algorithm</name><value>SSE-KMS</value></property>
  <property><name>fs.s3a.bucket.{bucket}.encryption.key</name><value>{KMS_KEY_2}</value></property>
</configuration>
""")
    site.chmod(0o600)
    # The environment points elsewhere with other credentials: core-site.xml wins.
    env = dict(cli_env(bed), HADOOP_CONF_DIR=str(hadoop), AWS_ENDPOINT_URL="https://127.0.0.1:9",
               AWS_ACCESS_KEY_ID="not-the-bed", AWS_SECRET_ACCESS_KEY="not-the-bed-either")

    def run(*args):
        return subprocess.run([str(CLI), "verify", uri, *args], env=env, capture_output=True, text=True,
                              timeout=120)

    from_site = run()
    assert from_site.returncode == 1, from_site.stdout + from_site.stderr
    assert f"expected SSE-KMS with KMS key '{KMS_KEY_2}'" in from_site.stdout, from_site.stdout

    # A --conf-file in Hadoop XML (recognised by its content, whatever its name) over core-site.xml.
    over = tmp_path / "over.conf"
    over.write_text(f"<configuration><property><name>fs.s3a.bucket.{bucket}.encryption.key</name>"
                    f"<value>{KMS_KEY_1}</value></property></configuration>")
    over.chmod(0o600)
    from_file = run("--conf-file", str(over), "-v")
    assert from_file.returncode == 0 and "1 objects, 0 mismatches" in from_file.stdout, \
        from_file.stdout + from_file.stderr
    assert f"settings from {site}" in from_file.stderr and f"settings from {over}" in from_file.stderr, \
        from_file.stderr

    # A later key=value file over an earlier XML one; --conf over both.
    lines = tmp_path / "lines.conf"
    lines.write_text(f"fs.s3a.bucket.{bucket}.encryption.key={KMS_KEY_2}\n")
    assert run("--conf-file", str(over), "--conf-file", str(lines)).returncode == 1
    typed = run("--conf-file", str(over), "--conf", f"fs.s3a.bucket.{bucket}.encryption.key={KMS_KEY_2}")
    assert typed.returncode == 1 and f"KMS key '{KMS_KEY_2}'" in typed.stdout, typed.stdout + typed.stderr

    # A broken core-site.xml names the file and the line, never a value.
    site.write_text(f"<configuration>\n<property><name>fs.s3a.secret.key</name><value>{stores.SECRET_KEY}"
                    "</valeu></property></configuration>")
    broken = run()
    assert broken.returncode == 2 and f"{site}: not well-formed XML (line 2" in broken.stderr, broken.stderr
    assert "HADOOP_CONF_DIR" in broken.stderr
    for out in (from_site, from_file, typed, broken):
        assert stores.SECRET_KEY not in out.stdout + out.stderr


def test_output_into_a_closed_pipe_ends_quietly(bed, s3, prefix):
    """`sealcommit uploads list ... | head -1`: the reader goes away, the CLI stops writing, no panic."""
    bucket = "direct-http"
    for i in range(300):
        s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/p/part-{i:05d}-job-ppp.parquet")
    uri = f"s3a://{bucket}/{prefix}/p"
    for args in (("uploads", "list", uri), ("uploads", "list", uri, "--json"), ("verify", uri)):
        # The reader closes its end before the CLI has listed anything: every write meets EPIPE.
        p = subprocess.Popen([str(CLI), *args, "--conf", "fs.s3a.path.style.access=true"], env=cli_env(bed),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p.stdout.close()
        err = p.stderr.read()
        code = p.wait(timeout=120)
        assert code == (1 if args[0] == "verify" else 0), err  # verify: nothing under the prefix
        assert "panicked" not in err and "Broken pipe" not in err, err
    head = subprocess.run(f"'{CLI}' uploads list {uri} --conf fs.s3a.path.style.access=true | head -1",
                          shell=True, env=cli_env(bed), capture_output=True, text=True, timeout=120)
    assert head.returncode == 0 and len(head.stdout.splitlines()) == 1 and "panicked" not in head.stderr, \
        head.stdout + head.stderr
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/p/")["Uploads"]
    assert cli(bed, "uploads", "abort", uri).returncode == 0


def test_arguments_are_checked(bed, prefix):
    uri = f"s3a://direct-http/{prefix}"
    extra = cli(bed, "verify", uri, "s3a://direct-http/other")
    assert extra.returncode == 2 and "unexpected argument 's3a://direct-http/other'" in extra.stderr, extra.stderr
    unknown = cli(bed, "uploads", "list", uri, "--older", "1h")
    assert unknown.returncode == 2 and "'--older'" in unknown.stderr and "--older-than" in unknown.stderr, \
        unknown.stderr
    helped = subprocess.run([str(CLI), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "Exit codes:" in helped.stdout and "core-site.xml" in helped.stdout
