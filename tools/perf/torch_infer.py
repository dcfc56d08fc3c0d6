#!/usr/bin/env python3
"""transformers side of the inference benchmark (issue 20): the same requests as `cargo bench --bench infer`.

Reads target/bench-results/infer-requests.json (written by the Rust bench: lm-eval's token ids of every
multiple-choice request, and the generation prompts with the stop ids), loads SmolLM2-135M-Instruct from
the same GGUF with transformers (dequantised to f32, eager attention, torch.no_grad), and at
`--threads` (torch.set_num_threads) runs

- log-likelihood as lm-eval's HF backend does (`HFLM._loglikelihood_tokens`, batch size 1): one
  forward of `(context + continuation)[:-1]` per request, log-softmax, the continuation tokens' sum and
  whether each is the argmax;
- greedy generation: `model.generate(do_sample=False)` per prompt, stopping at the same stop ids (every
  token whose text holds a newline, and EOS) or `max_new` tokens.

Writes target/bench-results/infer-torch.json. With --rust (the Rust bench's results) it prints both side
by side: wall and CPU seconds (user + system, the fairer figure on a shared machine) and the speed ratios, and checks the answers: the same predicted choice per
item, |Δ log-likelihood| (tolerance 1e-3 per request, the eval parity tests' bound), same is_greedy,
identical generated ids.

Usage: python tools/perf/torch_infer.py --threads 1 [--rust target/bench-results/infer-rust.json]
Needs torch, transformers, gguf, numpy (tools/perf/requirements.txt; the oracle venv has them).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-results"
TOL = 1e-3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_gguf = os.environ.get("DFT_SMOLLM2_GGUF", str(ROOT / ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gguf", type=Path, default=Path(default_gguf))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--requests", type=Path, default=RESULTS / "infer-requests.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "infer-torch.json")
    ap.add_argument("--rust", type=Path, help="the Rust bench's results, to compare")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    req = json.loads(args.requests.read_text())
    model = AutoModelForCausalLM.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    params = sum(p.numel() for p in model.parameters())

    # Log-likelihood, lm-eval style: one request at a time.
    results, tokens = [], 0
    t0, c0 = time.perf_counter(), time.process_time()
    for r in req["requests"]:
        ids = r["context"] + r["continuation"]
        inp = torch.tensor([ids[:-1]])
        tokens += inp.shape[1]
        logits = model(inp).logits[0, -len(r["continuation"]):]
        logp = torch.log_softmax(logits, dim=-1)
        cont = torch.tensor(r["continuation"])
        ll = float(logp.gather(1, cont[:, None]).sum())
        greedy = bool((logits.argmax(-1) == cont).all())
        results.append([ll, greedy])
    ll_s, ll_cpu = time.perf_counter() - t0, time.process_time() - c0

    # Greedy generation, one prompt at a time, the same stop ids.
    stop = req["stop_tokens"]
    gens, new_tokens, prompt_tokens = [], 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for p in req["prompts"]:
        ids = torch.tensor([p])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=req["max_new"], do_sample=False,
                             num_beams=1, eos_token_id=stop, pad_token_id=stop[0])
        new = out[0, len(p):].tolist()
        gens.append(new)
        new_tokens += len(new)
        prompt_tokens += len(p)
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"engine": "transformers", "version": __import__("transformers").__version__, "torch": torch.__version__,
           "threads": args.threads, "params": params,
           "loglik": {"seconds": ll_s, "cpu_seconds": ll_cpu, "model_tokens": tokens, "results": results},
           "generate": {"seconds": gen_s, "cpu_seconds": gen_cpu, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "ids": gens}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"transformers {out['version']} eager f32, {args.threads} thread(s): log-likelihood {ll_s:.2f} s "
          f"({tokens} tokens, {tokens / ll_s:.0f} tok/s); greedy {gen_s:.2f} s ({new_tokens} new, "
          f"{new_tokens / gen_s:.1f} new/s)")
    if args.rust:
        compare(req, json.loads(args.rust.read_text()), out)


def compare(req, rust, torch_out):
    """Side-by-side table and the answer checks; raises when the answers differ."""
    n = len(req["requests"])
    ours, theirs = rust["loglik"]["results"], torch_out["loglik"]["results"]
    worst = max(abs(a[0] - b[0]) for a, b in zip(ours, theirs))
    greedy_same = sum(a[1] == b[1] for a, b in zip(ours, theirs))
    # Predicted choice per item (first maximum, as numpy.argmax).
    by_item: dict[str, list] = {}
    for r, a, b in zip(req["requests"], ours, theirs):
        by_item.setdefault(r["item"], []).append((a[0], b[0]))
    pred_same = sum(max(range(len(v)), key=lambda i: (v[i][0], -i)) == max(range(len(v)), key=lambda i: (v[i][1], -i))
                    for v in by_item.values())
    gen_same = sum(a == b for a, b in zip(rust["generate"]["ids"], torch_out["generate"]["ids"]))
    rl, tl = rust["loglik"], torch_out["loglik"]
    rg, tg = rust["generate"], torch_out["generate"]
    print(f"\n| {req['task']} {req['lang']} / {req['gen_task']} {req['lang']}, {rust['threads']} thread(s) "
          f"| dft wall s | transformers wall s | speed-up (wall) | dft CPU s | transformers CPU s | speed-up (CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, a, b in [(f"log-likelihood, {len(by_item)} items / {n} requests", rl, tl),
                       (f"greedy (stop: {req.get('stop', 'newline')}), {len(req['prompts'])} prompts, "
                        f"{rg['new_tokens']} new tokens", rg, tg)]:
        print(f"| {name} | {a['seconds']:.2f} | {b['seconds']:.2f} | {b['seconds'] / a['seconds']:.2f}× "
              f"| {a['cpu_seconds']:.2f} | {b['cpu_seconds']:.2f} | {b['cpu_seconds'] / a['cpu_seconds']:.2f}× |")
    print(f"\nsame prediction: {pred_same}/{len(by_item)} items; max |Δ loglik| = {worst:.2e} (tolerance {TOL}); "
          f"same is_greedy: {greedy_same}/{n}; identical generations: {gen_same}/{len(req['prompts'])}")
    if pred_same != len(by_item) or worst > TOL or gen_same != len(req["prompts"]):
        raise SystemExit("the answers differ (see above)")


if __name__ == "__main__":
    main()
