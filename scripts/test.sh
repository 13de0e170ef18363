#!/usr/bin/env bash
# Install the package with its test extras (and Debian's chromium for the browser test, when this is a root shell with
# apt), lint with ruff, then run the test suite (CPU; GPU-only tests skip without CUDA) in one process per core, up to
# four (pytest-xdist, a test file per process at a time, longest first: tests/conftest.py orders them and builds the
# shared runs once). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for the quick inner loop,
# `-n 0` for one process.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed and cannot be installed here: the browser test will be skipped"
  fi
fi
python3 -m ruff check .
python3 -m ruff format --check .
exec python3 -m pytest -q --numprocesses auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder "$@"
