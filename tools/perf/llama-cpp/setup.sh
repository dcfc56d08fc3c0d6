#!/usr/bin/env bash
# A venv with llama.cpp's C API for tools/perf/llama_cpp_infer.py (issue 20's upper anchor), outside
# the repository: the prebuilt llama-cpp-cffi wheel (no compiler run for llama.cpp itself).
# The wheel's library was built with GCC 14 and references `__cxa_call_terminate`, which older
# libstdc++ (Debian 12: GCC 12) lacks; a one-function shim, preloaded, provides it.
# Usage: tools/perf/llama-cpp/setup.sh [VENV]   (default /work/llama-venv); then
#   LD_PRELOAD=VENV/libcxa_shim.so VENV/bin/python tools/perf/llama_cpp_infer.py --threads 1 --rust ...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-/work/llama-venv}
python3 -m venv "$venv"
"$venv/bin/pip" install -q "llama-cpp-cffi==0.4.42" "cffi" "numpy==2.4.6"
g++ -shared -fPIC -O2 -o "$venv/libcxa_shim.so" "$here/cxa_call_terminate_shim.cc"
echo "llama.cpp venv ready: $venv (run with LD_PRELOAD=$venv/libcxa_shim.so)"
