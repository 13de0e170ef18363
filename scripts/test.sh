#!/usr/bin/env bash
# Install the package with its test extras, then run the test suite (CPU; GPU-only tests skip without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
exec python3 -m pytest -q "$@"
