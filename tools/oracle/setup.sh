#!/usr/bin/env bash
# Create the oracle virtualenv (PyTorch + transformers, pinned) used to regenerate test fixtures.
# CI never needs it: the fixtures it writes are committed. ~5.6 GB (PyPI's torch wheel).
# Usage: tools/oracle/setup.sh [VENV_DIR]   (default: tools/oracle/.venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="${1:-$here/.venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
echo "oracle venv ready: $venv/bin/python"
