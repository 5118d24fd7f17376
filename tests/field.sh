#!/usr/bin/env bash
# README command 1: the field scenario end to end on a fresh machine. Installs what is missing,
# builds the engine and the jar, starts a local Ceph RGW (SSE-KMS) and nginx (http -> https
# proxy), runs the Spark job, prints the committed objects and the requests, stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash tests/bed/install.sh | tail -n 1)
bash tests/bed/build.sh
exec "$VENV/bin/python" tests/field_scenario.py
