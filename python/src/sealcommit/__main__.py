"""``python -m sealcommit``: prints the bundled jar's path (e.g. for ``spark-submit --jars``)."""

from sealcommit import jar_path

print(jar_path())
