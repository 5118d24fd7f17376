"""A Spark driver run by test_secrets.py in its own JVM, at INFO (Spark) and debug (sealcommit)
logging, exercising paths that handle secrets: a normal SSE-KMS write, an SSE-C write, an SSE-C
write refused over http, a write carrying a session token, and an unknown KMS key.
It prints every error message it gets. The test then searches all output for the secrets."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conftest  # noqa: E402

info = json.loads(os.environ["LEAK_PROBE"])

bed = conftest.attach_bed(info)
extra = {"fs.s3a.bucket.tokens.session.token": info["session_token"],
         "fs.s3a.bucket.tokens.endpoint": bed.rgw.http_endpoint}
# Spark at INFO, the engine at debug (one line per S3 request), all on stderr.
spark = conftest.spark_builder(bed, "leak-probe", master="local[2]", extra=extra,
                               log_config=Path(info["log_config"])).getOrCreate()
spark.sparkContext.setLogLevel("INFO")
df = spark.createDataFrame([(1, "a"), (2, "b")], "id INT, name STRING")
p = info["prefix"]
sse_c = {"sealcommit.encryption.algorithm": "SSE-C", "sealcommit.encryption.key": info["sse_c_key"]}


def attempt(label, fn):
    try:
        fn()
        print(f"PROBE {label}: ok", flush=True)
    except Exception as e:  # noqa: BLE001 - every message is part of what we check
        print(f"PROBE {label}: " + str(e).replace("\n", " | "), flush=True)


attempt("sse-kms", lambda: df.write.parquet(f"s3a://direct-http/{p}/kms"))
attempt("sse-c-https", lambda: df.write.options(**sse_c).parquet(f"s3a://direct-https/{p}/ssec"))
attempt("sse-c-http", lambda: df.write.options(**sse_c).parquet(f"s3a://direct-http/{p}/ssec-http"))
attempt("token", lambda: df.write.parquet(f"s3a://tokens/{p}/token"))
attempt("bad-kms", lambda: df.write.option("fs.s3a.encryption.key", "missing-key").parquet(f"s3a://direct-http/{p}/bad"))
spark.stop()
