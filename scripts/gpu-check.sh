#!/usr/bin/env bash
# GPU checks of issue 8 on one CUDA GPU (written for an H100 / H200, 16 cores, offline):
#   1. build `examples/gpu_check.rs` with `--features cuda` (cargo --offline; or use a prebuilt binary);
#   2. model + objective parity on CUDA against the committed fixtures, f32 (max |Δ| ≤ 1e-4) and bf16
#      (rel L2 ≤ 3e-2; see the example's docs);
#   3. one DFT optimiser step (DFT-logits: objective + backward + clip + AdamW) of Gemma-2-2B (real config,
#      random weights) and of SmolLM2-135M (+ its TFT step, for the DFT/TFT ratio) at batches sized to the
#      card's memory, f32 and bf16: s/step, TFT tokens/s, FLOPs and MFU; peak GPU memory from nvidia-smi.
#
# Usage, from the repository root:
#   scripts/gpu-check.sh                # everything; results in $OUT (the device tool's folder) or target/gpu-check
#   scripts/gpu-check.sh --build-only   # build the binary and copy it to .gpu-bin/gpu_check (to carry it)
#   scripts/gpu-check.sh --parity-only | --step-only
# A prebuilt binary is used when cargo is absent (the GPU image may have no Rust): build it on a CPU
# machine with `scripts/gpu-check.sh --build-only` (CUDA API level 13.0 unless CUDARC_CUDA_VERSION says
# otherwise; nvcc is not needed to build), put `.gpu-bin/` in .git/info/exclude and carry it; or set
# GPU_CHECK_BIN=/path/to/gpu_check.
# Knobs (env): SEQ (512), STEPS (5), WARMUP (2), SMOL_BATCH, GEMMA_BATCH, GEMMA_BATCH_BF16, SMOL_BATCH_BF16
# (defaults scale with the card's memory), RUN_TIMEOUT (300 s per run).
set -uo pipefail
cd "$(dirname "$0")/.."

mode=all
case "${1:-}" in
  --build-only) mode=build ;;
  --parity-only) mode=parity ;;
  --step-only) mode=step ;;
  "") ;;
  *) echo "usage: $0 [--build-only|--parity-only|--step-only]" >&2; exit 2 ;;
esac

out="${OUT:-target/gpu-check}"
mkdir -p "$out"
log="$out/gpu-check.log"
results="$out/results.jsonl"
: >"$results"
say() { echo "$*" | tee -a "$log"; }
started=$(date +%s)

# --- 1. the binary --------------------------------------------------------------------------------
bin="${GPU_CHECK_BIN:-}"
if [ -z "$bin" ]; then
  if command -v cargo >/dev/null 2>&1; then
    say "== build: cargo build --release --offline --features cuda --example gpu_check"
    if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDARC_CUDA_VERSION:-}" ]; then
      # Without nvcc cudarc would target the newest CUDA API it knows; the GPU image ships CUDA 13.0.
      export CUDARC_CUDA_VERSION=13000
    fi
    t0=$(date +%s)
    if ! cargo build --release --offline --features cuda --example gpu_check 2>&1 | tee -a "$log" | tail -n 3; then
      say "build failed"; exit 1
    fi
    [ -x target/release/examples/gpu_check ] || { say "build failed (no binary)"; exit 1; }
    say "build took $(( $(date +%s) - t0 )) s"
    bin=target/release/examples/gpu_check
    if [ "$mode" = build ]; then
      mkdir -p .gpu-bin && cp "$bin" .gpu-bin/gpu_check && strip .gpu-bin/gpu_check 2>/dev/null
      say "copied to .gpu-bin/gpu_check ($(du -h .gpu-bin/gpu_check | cut -f1)); carry .gpu-bin (add /.gpu-bin/ to .git/info/exclude)"
      exit 0
    fi
  elif [ -x .gpu-bin/gpu_check ]; then
    bin=.gpu-bin/gpu_check
    say "== no cargo here: using the prebuilt $bin"
  else
    say "no cargo and no prebuilt binary: run scripts/gpu-check.sh --build-only on a machine with Rust and carry .gpu-bin"
    exit 1
  fi
fi
[ "$mode" = build ] && exit 0

# --- the GPU and the CUDA libraries (cudarc loads libcuda and libnvrtc at run time) -----------------
if ! command -v nvidia-smi >/dev/null 2>&1; then say "no nvidia-smi: not a CUDA machine"; exit 1; fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$log"
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
mem_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -n1 | tr -d ' ')
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
if command -v python3 >/dev/null 2>&1; then
  for d in $(python3 -c 'import glob,site; [print(p) for s in site.getsitepackages() for p in glob.glob(s+"/nvidia/*/lib")]' 2>/dev/null); do
    export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
  done
fi
say "GPU: $gpu_name, $mem_mib MiB; binary $bin"

timeout_s="${RUN_TIMEOUT:-300}"
failures=0
# run NAME ARGS...: one gpu_check process, its peak GPU memory (nvidia-smi every 200 ms), RESULT lines.
run() {
  local name=$1; shift
  say "== $name: $bin $*"
  local mem="$out/.mem-$name"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$mem" 2>/dev/null &
  local poll=$!
  local t0; t0=$(date +%s)
  timeout "$timeout_s" "$bin" "$@" >"$out/.run-$name" 2>&1
  local rc=$?
  kill "$poll" 2>/dev/null; wait "$poll" 2>/dev/null
  cat "$out/.run-$name" >>"$log"
  grep -v '^RESULT ' "$out/.run-$name" | grep -v '  .* step [0-9]' | tail -n 20
  local peak; peak=$(sort -n "$mem" 2>/dev/null | tail -n1)
  grep '^RESULT ' "$out/.run-$name" | sed 's/^RESULT //' | while read -r line; do
    echo "{\"run\": \"$name\", \"rc\": $rc, \"wall_s\": $(( $(date +%s) - t0 )), \"peak_gpu_mib\": ${peak:-null}, \"gpu\": \"$gpu_name\", \"result\": $line}" >>"$results"
  done
  if ! grep -q '^RESULT ' "$out/.run-$name"; then
    echo "{\"run\": \"$name\", \"rc\": $rc, \"peak_gpu_mib\": ${peak:-null}, \"gpu\": \"$gpu_name\", \"result\": null}" >>"$results"
  fi
  rm -f "$mem" "$out/.run-$name"
  say "   $name: exit $rc, $(( $(date +%s) - t0 )) s, peak GPU memory ${peak:-?} MiB"
  return $rc
}

# --- 2. parity -------------------------------------------------------------------------------------
if [ "$mode" = all ] || [ "$mode" = parity ]; then
  run parity-f32 parity --dtype f32 || failures=$((failures + 1))
  run parity-bf16 parity --dtype bf16 || failures=$((failures + 1))
fi

# --- 3. DFT steps at batches that fill the card ------------------------------------------------------
# Sized for ~80 GB (H100) from the f32 model: Gemma-2-2B holds 2.6e9 × 16 B (weights, gradients, AdamW
# moments) ≈ 42 GB before activations; SmolLM2 is activation-bound. A card with > 120 GB doubles them.
big=1; [ "${mem_mib:-0}" -gt 120000 ] && big=2
seq="${SEQ:-512}"; steps="${STEPS:-5}"; warm="${WARMUP:-2}"
smol_b="${SMOL_BATCH:-$((16 * big))}"; smol_b16="${SMOL_BATCH_BF16:-$((32 * big))}"
gem_b="${GEMMA_BATCH:-$((2 * big))}"; gem_b16="${GEMMA_BATCH_BF16:-$((4 * big))}"
# step NAME MODEL DTYPE BATCH [METHOD [EXTRA...]]: on failure (e.g. out of memory) once more at half the batch.
step() {
  local name=$1 model=$2 dtype=$3 b=$4 method=${5:-dft-logits}
  shift 5 2>/dev/null || shift $#
  local args=(step --model "$model" --dtype "$dtype" --batch "$b" --seq "$seq" --steps "$steps" --warmup "$warm" --method "$method" "$@")
  run "$name-b$b" "${args[@]}" && return 0
  [ "$b" -gt 1 ] || return 1
  args[6]=$((b / 2))
  run "$name-b$((b / 2))" "${args[@]}"
}
if [ "$mode" = all ] || [ "$mode" = step ]; then
  step smollm2-dft-f32 smollm2 f32 "$smol_b" || failures=$((failures + 1))
  step smollm2-tft-f32 smollm2 f32 "$smol_b" tft || failures=$((failures + 1))
  step smollm2-dft-bf16 smollm2 bf16 "$smol_b16" || failures=$((failures + 1))
  step gemma2-2b-dft-f32 gemma2-2b f32 "$gem_b" || failures=$((failures + 1))
  step gemma2-2b-dft-bf16 gemma2-2b bf16 "$gem_b16" || failures=$((failures + 1))
  # Issue 15: train.precision = "bf16-mixed" (f32 master weights, bf16 products) and LoRA r = 16 on a bf16
  # base, on the paper's models (random weights): Gemma-2-2B full and LoRA, Llama-2-7B LoRA at 1 × 512
  # (what `dft plan` sizes for a 24 GB card) and at the card's batch.
  step gemma2-2b-dft-mixed gemma2-2b f32 "$gem_b" dft-logits --mixed || failures=$((failures + 1))
  step gemma2-2b-dft-lora16-mixed gemma2-2b f32 "$gem_b16" dft-logits --mixed --lora 16 || failures=$((failures + 1))
  step llama2-7b-dft-lora16-mixed llama2-7b f32 1 dft-logits --mixed --lora 16 || failures=$((failures + 1))
  step llama2-7b-dft-lora16-mixed llama2-7b f32 "$gem_b16" dft-logits --mixed --lora 16 || failures=$((failures + 1))
fi

# --- summary -----------------------------------------------------------------------------------------
say "== summary ($gpu_name; $(( $(date +%s) - started )) s; $failures failed)"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$results" <<'EOF' | tee -a "$log"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line); x = r.get("result") or {}
    if x.get("check") == "parity":
        print(f"{r['run']:<24} passed={x['passed']} worst max|Δ|={x['worst_max_abs']:.2e} worst relL2={x['worst_rel_l2']:.2e}")
    elif x.get("check") == "step":
        print(f"{r['run']:<24} {x['model']} {x['method']} {x['dtype']}{' bf16-mixed' if x.get('bf16_mixed') else ''}{' LoRA r=' + str(x['lora_rank']) if x.get('lora_rank') else ''} batch {x['batch']}×{x['seq']}: "
              f"{x['s_per_step']:.3f} s/step, {x['tft_tokens_per_s']:.0f} tok/s, {x['achieved_tflops']:.1f} TFLOP/s, "
              f"MFU {100 * x['mfu']:.1f}% of {x['peak']}, peak GPU mem {r['peak_gpu_mib']} MiB")
    else:
        print(f"{r['run']:<24} failed (exit {r['rc']})")
EOF
else
  cat "$results"
fi
exit $(( failures > 0 ))
