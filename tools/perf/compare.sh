#!/usr/bin/env bash
# Issue 8's measurements, in the order they were taken for docs/PERFORMANCE.md: ROUNDS interleaved rounds
# of the Rust step bench (three methods) and the PyTorch reference (eager and sdpa) on the same batch, then
# the Rust ablations ("what each change saved") and gradient checkpointing on the longest batch.
# Results: target/bench-results/{step-main-R,torch_step-R,step-savings,step-ckpt}.json; summary:
# tools/perf/summarize.py. Needs the GGUF (scripts/fetch-smollm2.sh) and the pinned venv
# (tools/perf/requirements.txt; PYTHON=/path/to/python, default /work/venvs/oracle/bin/python).
# Usage: tools/perf/compare.sh [main|savings|ckpt|all]   (default all; ROUNDS=2, ROUND_START=1, STEPS=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/work/venvs/oracle/bin/python}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
what=${1:-all}
export RAYON_NUM_THREADS=2
cargo bench --bench step --no-run
if [ "$what" = all ] || [ "$what" = main ]; then
  first=${ROUND_START:-1}
  for r in $(seq "$first" $((first + ROUNDS - 1))); do
    echo "== round $r: rust ($(uptime))"
    cargo bench --bench step -- --plan main --steps "$STEPS" --out "step-main-$r.json"
    echo "== round $r: torch ($(uptime))"
    "$PY" tools/perf/torch_step.py --steps "$STEPS" --out "torch_step-$r.json" --rust "target/bench-results/step-main-$r.json"
  done
fi
if [ "$what" = all ] || [ "$what" = savings ]; then
  echo "== savings ($(uptime))"
  cargo bench --bench step -- --steps "$STEPS" --out step-savings.json --only \
    tft:default,tft:naive-ce,tft:full-logits,dft-logits:default,dft-logits:no-share-prefix,dft-logits:no-truncation,dft-logits:naive-ce
  echo "== savings: glibc allocator defaults ($(uptime))"
  cargo bench --bench step -- --steps "$STEPS" --out step-savings-malloc.json --malloc-default --only tft:default,dft-logits:default
fi
if [ "$what" = all ] || [ "$what" = ckpt ]; then
  echo "== checkpointing ($(uptime))"
  cargo bench --bench step -- --plan checkpointing --ckpt-steps 2 --out step-ckpt.json
fi
echo "== done ($(uptime))"
"$PY" tools/perf/summarize.py || true
