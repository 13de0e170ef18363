#!/usr/bin/env bash
# Train and shape JacobiNeRF on the embedded sample scene (installs the package first when needed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import jacobinerf_ns, nerfstudio" 2>/dev/null; then
  python3 -m pip install -q -e .
fi
exec python3 -m jacobinerf_ns.demo "$@"
