#!/usr/bin/env bash
# A venv with llama.cpp for tools/perf/llama_cpp_infer.py (issue 20's upper anchor), outside the
# repository: llama-cpp-python built from its source distribution with GGML_NATIVE, so llama.cpp uses
# what this CPU has (AVX-512, AVX512-BF16, AMX-INT8 on the project's machine). The build compiles
# llama.cpp: ~10 min on 2 cores (25 min when niced beside other work).
# Usage: tools/perf/llama-cpp/setup.sh [VENV]   (default /work/llama-venv)
set -euo pipefail
venv=${1:-/work/llama-venv}
python3 -m venv "$venv"
"$venv/bin/pip" install -q "numpy==2.4.6"
CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF" "$venv/bin/pip" install -q --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
"$venv/bin/python" -c 'import llama_cpp; print("llama.cpp venv ready:", llama_cpp.__version__, llama_cpp.llama_print_system_info().decode())'
