#!/usr/bin/env bash
# Issue 20's inference comparison: dft (cargo bench --bench infer) and transformers eager f32
# (tools/perf/torch_infer.py) on the same requests, at the same thread count, ROUNDS interleaved rounds
# (rust, torch, rust, torch, ...), each side timing only its scoring and generation loops (model
# loading excluded). Every round prints the side-by-side table and checks the answers (same
# predictions, log-likelihoods within 1e-3, identical generated ids); results go to
# target/bench-results/infer-{rust,torch}-T-R.json.
# Usage: THREADS=1 ROUNDS=2 TASK=xcopa LIMIT=100 GEN_TASK=mkqa GEN=32 MAX_NEW=32 STOP=newline|eos tools/perf/infer.sh
# Needs the GGUF (DFT_SMOLLM2_GGUF), the benchmark folder (DFT_EVAL_DATA, default ../shared/data/eval)
# and the pinned venv (PYTHON, default /work/oracle-venv/bin/python; tools/perf/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/work/oracle-venv/bin/python}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-2}
export DFT_EVAL_DATA=${DFT_EVAL_DATA:-$(pwd)/../shared/data/eval}
args=(--threads "$THREADS" --task "${TASK:-xcopa}" --lang "${LANG_CODE:-zh}" --limit "${LIMIT:-100}"
      --gen-task "${GEN_TASK:-mkqa}" --gen "${GEN:-32}" --max-new "${MAX_NEW:-32}" --batch "${BATCH:-16}" --stop "${STOP:-newline}")
cargo bench --bench infer --no-run
R=target/bench-results
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r, $THREADS thread(s): dft ($(uptime))"
  cargo bench --bench infer -- "${args[@]}" --out "$R/infer-rust-$THREADS-$r.json"
  echo "== round $r, $THREADS thread(s): transformers ($(uptime))"
  "$PY" tools/perf/torch_infer.py --threads "$THREADS" --out "$R/infer-torch-$THREADS-$r.json" \
    --rust "$R/infer-rust-$THREADS-$r.json"
done
echo "== done ($(uptime))"
