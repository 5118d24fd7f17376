"""The field job as a user submits it (tests/test_packages.py runs it with `spark-submit --packages
io.sealcommit:sealcommit:<version> --repositories file://.../build/repo`): every setting comes
from spark-submit, nothing from the test suite.

    users (id, name, amount) -> <base>/users (Parquet)
    read it back; SELECT * FROM users WHERE amount > 100 -> <base>/high_value_users

Prints `SPARK <version>`, `JARS <spark.jars>`, then `USERS <json rows>` and `HIGH <json rows>`,
each read back from the store after its write, sorted by id.
"""

import json
import sys

from pyspark.sql import SparkSession

base = sys.argv[1]
spark = SparkSession.builder.appName("sealcommit-packages-field-job").getOrCreate()
print(f"SPARK {spark.version}", flush=True)
print(f"JARS {spark.conf.get('spark.jars', '')}", flush=True)

users = spark.createDataFrame([(1, "Alice", 100), (2, "Bob", 200), (3, "Charlie", 150)],
                              "id INT, name STRING, amount INT")
users.write.mode("overwrite").parquet(f"{base}/users")
back = spark.read.parquet(f"{base}/users")
print("USERS " + json.dumps([list(r) for r in back.orderBy("id").collect()]), flush=True)
back.createOrReplaceTempView("users")
spark.sql("SELECT * FROM users WHERE amount > 100").write.mode("overwrite").parquet(f"{base}/high_value_users")
high = spark.read.parquet(f"{base}/high_value_users")
print("HIGH " + json.dumps([list(r) for r in high.orderBy("id").collect()]), flush=True)
spark.stop()
