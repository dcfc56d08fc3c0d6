#!/usr/bin/env python3
"""llama.cpp side of the inference benchmark (issue 20's upper anchor): the same requests as
`cargo bench --bench infer`, on the same GGUF, through llama.cpp's C API.

llama.cpp runs the GGUF as stored (Q4_1 weights, int8 activations in its quantised dot products), while
dft-rs and transformers dequantise to f32, so its answers are close to but not identical with theirs:
this is the speed a quantised inference engine reaches on this CPU, not a parity reference. The script
prints its tokens/s beside dft's and how often its predictions agree.

- log-likelihood: per request, clear the KV cache, decode `(context + continuation)[:-1]` in one batch
  with logits at the continuation's positions, log-softmax in numpy (as lm-eval's llama.cpp backends
  score);
- greedy generation: per prompt, decode the prompt, then one token at a time (argmax) until a stop id
  or `max_new` tokens.

The binding is llama-cpp-python (its low-level API mirrors llama.h), built from source for this CPU
(`GGML_NATIVE`: AVX-512, AVX512-BF16, AMX-INT8 here): tools/perf/llama-cpp/setup.sh.
Usage: /work/llama-venv/bin/python tools/perf/llama_cpp_infer.py --threads 1 --rust target/bench-results/infer-rust-1-1.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-results"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_gguf = os.environ.get("DFT_SMOLLM2_GGUF", str(ROOT / ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gguf", type=Path, default=Path(default_gguf))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--requests", type=Path, default=RESULTS / "infer-requests.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "infer-llama-cpp.json")
    ap.add_argument("--rust", type=Path, help="the Rust bench's results, to compare")
    ap.add_argument("--no-amx-bufts", action="store_true", help="no extra (AMX / repacked) weight buffers")
    args = ap.parse_args()
    import ctypes

    import llama_cpp as L

    req = json.loads(args.requests.read_text())
    # llama.cpp's AMX path runs tile instructions on the calling threads; Linux faults them (SIGILL)
    # unless the process asked for the tile state: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    libc = ctypes.CDLL(None, use_errno=True)
    amx = libc.syscall(158, 0x1023, 18) == 0
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    # llama.cpp's AMX weight buffers fault here (SIGILL in ggml_backend_amx_mul_mat's tileloadd: its tile
    # configuration is not loaded on the computing thread in this build); --no-amx-bufts turns them off,
    # leaving the AVX-512 / VNNI quantised kernels.
    mp.use_extra_bufts = not args.no_amx_bufts
    model = L.llama_model_load_from_file(str(args.gguf).encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp could not load {args.gguf}")
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    longest = max([len(r["context"]) + len(r["continuation"]) for r in req["requests"]]
                  + [len(p) + req["max_new"] for p in req["prompts"]])
    cp = L.llama_context_default_params()
    cp.n_ctx = max(512, longest + 8)
    cp.n_batch = cp.n_ctx
    cp.n_ubatch = cp.n_ctx
    cp.n_threads = args.threads
    cp.n_threads_batch = args.threads
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("llama.cpp could not create a context")
    memory = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(cp.n_ctx, 0, 1)

    def clear():
        L.llama_memory_clear(memory, True)

    def decode(ids, start, want_logits):
        """Decode `ids` at positions start.., logits for the indices in `want_logits`; rows of logits."""
        batch.n_tokens = len(ids)
        for i, t in enumerate(ids):
            batch.token[i] = t
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if i in want_logits else 0
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise SystemExit(f"llama_decode returned {rc}")
        return {i: np.ctypeslib.as_array(ctypes.cast(L.llama_get_logits_ith(ctx, i), ctypes.POINTER(ctypes.c_float)),
                                         shape=(n_vocab,)).copy()
                for i in want_logits}

    results, tokens = [], 0
    t0, c0 = time.perf_counter(), time.process_time()
    for r in req["requests"]:
        ids = (r["context"] + r["continuation"])[:-1]
        n_cont = len(r["continuation"])
        clear()
        want = set(range(len(ids) - n_cont, len(ids)))
        rows = decode(ids, 0, want)
        ll, greedy = 0.0, True
        for j, tok in enumerate(r["continuation"]):
            z = rows[len(ids) - n_cont + j].astype(np.float64)
            m = z.max()
            ll += float(z[tok] - m - np.log(np.exp(z - m).sum()))
            greedy &= int(z.argmax()) == tok
        results.append([ll, greedy])
        tokens += len(ids)
    ll_s, ll_cpu = time.perf_counter() - t0, time.process_time() - c0

    stop = set(req["stop_tokens"])
    gens, new_tokens, prompt_tokens = [], 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for p in req["prompts"]:
        clear()
        z = decode(p, 0, {len(p) - 1})[len(p) - 1]
        new = []
        while True:
            tok = int(z.argmax())
            new.append(tok)
            if tok in stop or len(new) >= req["max_new"]:
                break
            z = decode([tok], len(p) + len(new) - 1, {0})[0]
        gens.append(new)
        new_tokens += len(new)
        prompt_tokens += len(p)
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    L.llama_batch_free(batch)
    out = {"engine": f"llama.cpp (llama-cpp-python {L.__version__}, CPU, native build)",
           "system_info": L.llama_print_system_info().decode(), "amx_permission": amx,
           "extra_bufts": not args.no_amx_bufts, "threads": args.threads, "gguf": str(args.gguf),
           "loglik": {"seconds": ll_s, "cpu_seconds": ll_cpu, "model_tokens": tokens, "results": results},
           "generate": {"seconds": gen_s, "cpu_seconds": gen_cpu, "prompt_tokens": prompt_tokens,
                        "new_tokens": new_tokens, "ids": gens}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"llama.cpp Q4_1, {args.threads} thread(s): log-likelihood {ll_s:.2f} s ({tokens} tokens, "
          f"{tokens / ll_s:.0f} tok/s); greedy {gen_s:.2f} s ({new_tokens} new, {new_tokens / gen_s:.1f} new/s)")
    if args.rust:
        rust = json.loads(args.rust.read_text())
        by_item: dict[str, list] = {}
        for r, a, b in zip(req["requests"], rust["loglik"]["results"], results):
            by_item.setdefault(r["item"], []).append((a[0], b[0]))
        same = sum(max(range(len(v)), key=lambda i: (v[i][0], -i)) == max(range(len(v)), key=lambda i: (v[i][1], -i))
                   for v in by_item.values())
        worst = max(abs(a[0] - b[0]) for a, b in zip(rust["loglik"]["results"], results))
        gen_same = sum(a == b for a, b in zip(rust["generate"]["ids"], gens))
        rl, rg = rust["loglik"], rust["generate"]
        print(f"\n| {args.threads} thread(s) | dft (f32) | llama.cpp (Q4_1) | llama.cpp / dft speed |\n|---|---:|---:|---:|")
        print(f"| log-likelihood tok/s | {rl['model_tokens'] / rl['seconds']:.0f} | {tokens / ll_s:.0f} | "
              f"{(tokens / ll_s) / (rl['model_tokens'] / rl['seconds']):.2f}× |")
        print(f"| greedy new tok/s | {rg['new_tokens'] / rg['seconds']:.1f} | {new_tokens / gen_s:.1f} | "
              f"{(new_tokens / gen_s) / (rg['new_tokens'] / rg['seconds']):.2f}× |")
        print(f"\nsame prediction as dft: {same}/{len(by_item)} items; max |Δ loglik| {worst:.3f} (Q4_1 + int8 "
              f"activations vs f32); identical generations: {gen_same}/{len(gens)}")


if __name__ == "__main__":
    main()
