#!/usr/bin/env python3
"""PyTorch reference of the step benchmark `cargo bench --bench step` (issue 8).

One full optimiser step — objective forward, backward, global-norm clipping (1.0), AdamW (lr 1e-4,
betas 0.9/0.999, eps 1e-8, no weight decay) — on SmolLM2-135M-Instruct loaded by transformers from the
same GGUF (dequantised to f32), on exactly the batch the Rust bench used: it reads the token ids, labels,
lengths, prompt lengths, query spans and objective settings from `target/bench-results/step-batch.json`,
which `cargo bench --bench step` writes. Methods (docs/METHOD.md §3):

- tft:         `model(input_ids, attention_mask, labels=labels).loss` (transformers' own CE: logits at
               every position, shifted, mean over the labelled tokens).
- dft-logits:  TFT + α·LC + β·ET. LC and ET each run one more forward of the base model on their own
               sequences (`P(x_tgt) ⊕ x_en`, `P(x_tgt) ⊕ y_en`) with `output_hidden_states=True` — all L
               blocks, no prefix sharing, no truncation: the natural way — then the logit lens at block i
               (j): final RMSNorm and LM head with detached weights, logits at every position, shifted CE.
- dft-feature: TFT (with `output_hidden_states=True`, which serves h_i, h_j of P(x_tgt)) + one forward of
               the English prompts P(x_en); α·(1 − cos) of query-mean-pooled h_i, β·(1 − cos) of pooled
               h_L(P(x_en)) (before the final norm, captured by a hook) vs h_j(P(x_tgt)).

Each (method, attention) runs in its own process (this script with --child) so that the peak RSS
(ru_maxrss) is per method; threads: torch.set_num_threads(2) by default. One warm-up step, then the
median of --steps timed steps. Prints a table and writes target/bench-results/torch_step.json; with the
Rust results (target/bench-results/step.json) present it checks that the first step's losses agree.

Usage (the pinned venv: tools/perf/requirements.txt; /work/venvs/oracle has them):
    cargo bench --bench step -- --plan main          # writes the batch file (and the Rust numbers)
    python tools/perf/torch_step.py                   # eager and sdpa, all three methods
    python tools/perf/torch_step.py --attn sdpa --methods tft,dft-logits --steps 5 --out torch_step-2.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-results"


def proc_status_mib(key):
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return []


# The ops whose own time is a matrix product (MKL), and the fused attention ops (their products inside).
PRODUCT_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::mv", "aten::addmv"}
ATTENTION_OPS = {"aten::_scaled_dot_product_flash_attention_for_cpu",
                 "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}


def split_step(prof, total_s, optim_s):
    """A profiled step split as the Rust step bench's --kernel-stats: wall time of the matrix products (the
    product ops' own time, their GFLOP as the profiler counts them), of the fused attention ops, and the rest.
    Profiler timestamps are the calling thread's wall clock; intra-op threads work inside them."""
    products = attention = flops = 0.0
    calls = 0
    for e in prof.key_averages():
        if e.key in PRODUCT_OPS:
            products += e.self_cpu_time_total * 1e-6
            flops += e.flops or 0
            calls += e.count
        elif e.key in ATTENTION_OPS:
            attention += e.cpu_time_total * 1e-6
    return {"products_s": products, "products_gflop": flops * 1e-9,
            "products_gflops": flops * 1e-9 / products if products else float("nan"), "product_calls": calls,
            "attention_s": attention, "rest_s": total_s - products - attention, "optim_s": optim_s}


def run_steps(params, objective, opt_spec, n, label):
    """One warm-up step and `n` timed optimiser steps (objective, backward, global-norm clip, AdamW with
    the batch file's settings); per-step records with phase times, loss components and gradient norm."""
    import torch

    params = list(params)
    opt = torch.optim.AdamW(params, lr=opt_spec["lr"], betas=tuple(opt_spec["betas"]),
                            eps=opt_spec["eps"], weight_decay=opt_spec["weight_decay"])
    steps = []
    # DFT_TORCH_PROFILE=FILE: the last timed step under torch.profiler, its per-op table written to FILE.
    profile_to = os.environ.get("DFT_TORCH_PROFILE")
    # DFT_TORCH_SPLIT=1: every step under torch.profiler, split into matrix products, attention and the rest
    # (as the Rust step bench's --kernel-stats).
    split = os.environ.get("DFT_TORCH_SPLIT") == "1"
    for s in range(n + 1):
        prof = None
        if (profile_to and s == n) or split:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=split)
            prof.__enter__()
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss, comps = objective()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        gn = torch.nn.utils.clip_grad_norm_(params, opt_spec["max_grad_norm"])
        opt.step()
        t3 = time.perf_counter()
        kernels = None
        if prof is not None:
            prof.__exit__(None, None, None)
            if profile_to and s == n:
                table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
                Path(profile_to).write_text(f"{label} step {s}: {t3 - t0:.3f} s\n{table}\n")
            if split:
                kernels = split_step(prof, t3 - t0, t3 - t2)
        rec = {"total_s": t3 - t0, "loss_s": t1 - t0, "backward_s": t2 - t1, "optim_s": t3 - t2,
               "loss": comps, "grad_norm": float(gn)}
        if kernels is not None:
            rec["kernels"] = kernels
            print(f"  kernels: products {kernels['products_s']:.2f} s ({kernels['products_gflop']:.1f} GFLOP, "
                  f"{kernels['products_gflops']:.0f} GFLOP/s; {kernels['product_calls']} calls), attention "
                  f"{kernels['attention_s']:.2f} s, rest {kernels['rest_s']:.2f} s (optim {t3 - t2:.2f})",
                  file=sys.stderr, flush=True)
        steps.append(rec)
        print(f"  {label} step {s}{' (warm-up)' if s == 0 else ''}: {rec['total_s']:.2f} s "
              f"(loss {rec['loss_s']:.2f}, bwd {rec['backward_s']:.2f}, optim {rec['optim_s']:.2f}) | "
              f"loss {comps['total']:.4f} main {comps['main']:.4f} lc {comps['lc']} et {comps['et']} | "
              f"grad norm {rec['grad_norm']:.3f}", file=sys.stderr, flush=True)
    return steps


# --------------------------------------------------------------------------------------------------
# Child: one method with one attention implementation.

def child(args):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = json.loads(Path(args.batch_file).read_text())
    gguf = Path(spec["model"])
    if not gguf.is_file():
        sys.exit(f"torch_step: the GGUF {gguf} is missing (scripts/fetch-smollm2.sh)")
    method = args.method
    m = spec["methods"][method]
    opt_spec = spec["optimizer"]

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                 attn_implementation=args.attn)
    model.train()  # SmolLM2 has no dropout; train mode is what a fine-tuning user runs
    load_s = time.perf_counter() - t
    rss_after_load = proc_status_mib("VmRSS:")
    L = model.config.num_hidden_layers
    V = model.config.vocab_size

    def tensors(seq):
        b, t = len(seq["lengths"]), seq["seq_len"]
        ids = torch.tensor(seq["input_ids"], dtype=torch.long).view(b, t)
        labels = torch.tensor(seq["labels"], dtype=torch.long).view(b, t)
        mask = torch.zeros(b, t, dtype=torch.long)
        for r, n in enumerate(seq["lengths"]):
            mask[r, :n] = 1
        return ids, labels, mask

    kinds = spec["kinds"]
    main = kinds["main"]
    ids, labels, mask = tensors(main)

    def final_norm_detached(h):
        norm = model.model.norm
        x = h.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        return x * norm.weight.detach()

    def lens_ce(h, lab):
        z = final_norm_detached(h) @ model.lm_head.weight.detach().T
        return F.cross_entropy(z[:, :-1].reshape(-1, V), lab[:, 1:].reshape(-1), ignore_index=-100)

    def pool(h, seq):
        b, t = len(seq["lengths"]), seq["seq_len"]
        w = torch.zeros(b, t)
        for r in range(b):
            idx = [i for s, e in seq["query_spans"][r] for i in range(s, e)]
            w[r, idx] = 1.0 / len(idx)
        return torch.einsum("bt,bth->bh", w, h)

    last_block = {}
    model.model.layers[-1].register_forward_hook(
        lambda mod, a, o: last_block.__setitem__("h", o[0] if isinstance(o, tuple) else o))

    assert m["pooling"] == "query_mean" and not m["english_stop_grad"], "only the defaults are implemented"

    def objective():
        comps = {"main": None, "lc": None, "et": None}
        if method == "tft":
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            total = out.loss
            comps["main"] = out.loss.item()
        elif method == "dft-logits":
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            total = out.loss
            comps["main"] = out.loss.item()
            for kind, k, w in (("lc", m["lc_layer"], m["alpha"]), ("et", m["et_layer"], m["beta"])):
                kids, klabels, kmask = tensors(kinds[kind])
                hs = model.model(input_ids=kids, attention_mask=kmask, output_hidden_states=True).hidden_states
                v = lens_ce(hs[k], klabels)
                comps[kind] = v.item()
                total = total + w * v
        elif method == "dft-feature":
            i, j = m["lc_layer"], m["et_layer"]
            assert j < L, "h_j of the main pass must be a block output, not the normed last state"
            out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
            total = out.loss
            comps["main"] = out.loss.item()
            hs = out.hidden_states
            en = kinds["en_prompt"]
            eids, _, emask = tensors(en)
            ehs = model.model(input_ids=eids, attention_mask=emask, output_hidden_states=True).hidden_states
            h_L_en = last_block["h"]  # block L's output before the final norm (hidden_states[-1] is normed)
            lc = 1 - F.cosine_similarity(pool(ehs[i], en), pool(hs[i], main), dim=-1).mean()
            et = 1 - F.cosine_similarity(pool(h_L_en, en), pool(hs[j], main), dim=-1).mean()
            comps["lc"], comps["et"] = lc.item(), et.item()
            total = total + m["alpha"] * lc + m["beta"] * et
        else:
            raise SystemExit(f"unknown method {method}")
        comps["total"] = total.item()
        return total, comps

    steps = run_steps(model.parameters(), objective, opt_spec, args.steps, f"{method}/{args.attn}")
    timed = steps[1:]
    med = lambda k: statistics.median(x[k] for x in timed)  # noqa: E731
    used = {"tft": ["main"], "dft-logits": ["main", "lc", "et"], "dft-feature": ["main", "en_prompt"]}[method]
    main_real = sum(main["lengths"])
    all_real = sum(sum(kinds[k]["lengths"]) for k in used)
    median_s = med("total_s")
    result = {
        "method": method, "attn": args.attn, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tft_real_tokens": main_real, "all_real_tokens": all_real,
        "load_s": load_s, "median_s": median_s,
        "min_s": min(x["total_s"] for x in timed), "max_s": max(x["total_s"] for x in timed),
        "loss_s_median": med("loss_s"), "backward_s_median": med("backward_s"), "optim_s_median": med("optim_s"),
        "tft_tokens_per_s": main_real / median_s, "all_tokens_per_s": all_real / median_s,
        "rss_after_load_mib": rss_after_load,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loadavg": loadavg(),
        "steps": steps,
    }
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------
# Driver.

def rel(a, b):
    if a is None or b is None:
        return None
    return abs(a - b) / max(abs(b), 1e-12)


def compare_with_rust(results, rust_path):
    """First-step (pre-update) loss components of each method against the Rust bench's default path."""
    if not rust_path.is_file():
        return None
    rust = json.loads(rust_path.read_text())
    out = {}
    for r in results:
        if "failed" in r:
            continue
        rr = next((x for x in rust.get("results", []) if x.get("method") == r["method"]
                   and x.get("path") == "default" and not x.get("checkpointing") and not x.get("long")), None)
        if rr is None:
            continue
        cmp = {}
        for step in (0, 1):
            if step >= len(rr["steps"]) or step >= len(r["steps"]):
                continue
            ours, theirs = r["steps"][step]["loss"], rr["steps"][step]["loss"]
            cmp[f"step{step + 1}"] = {k: {"torch": ours.get(k), "rust": theirs.get(k), "rel": rel(theirs.get(k), ours.get(k))}
                                      for k in ("main", "lc", "et", "total") if ours.get(k) is not None}
        cmp["grad_norm_step1"] = {"torch": r["steps"][0]["grad_norm"], "rust": rr["steps"][0]["grad_norm"]}
        out[f"{r['method']}/{r['attn']}"] = cmp
    return out


GEMM_SHAPES = [("q/o proj 864×576×576", 864, 576, 576), ("k/v proj 864×576×192", 864, 576, 192),
               ("gate/up 864×576×1536", 864, 576, 1536), ("down 864×1536×576", 864, 1536, 576),
               ("head 602×576×49152", 602, 576, 49152)]


def gemm(args):
    """f32 matmul GFLOP/s at the step's shapes (as `cargo bench --bench step -- --gemm`)."""
    import torch
    torch.set_num_threads(args.threads)
    rows = []
    print(f"| shape | GFLOP/s (torch {torch.__version__}, {torch.get_num_threads()} threads) |\n|---|---:|")
    for name, m, k, n in GEMM_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        reps = int(min(200, max(3, 2e10 / (2 * m * k * n))))
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, (time.perf_counter() - t) / reps)
        g = 2 * m * k * n / best / 1e9
        print(f"| {name} | {g:.1f} |")
        rows.append({"shape": name, "m": m, "k": k, "n": n, "seconds": best, "gflops": g})
    ops = {}
    F = torch.nn.functional
    x, g = torch.randn(864, 576), torch.randn(864, 1536)
    scores, bias = torch.randn(4, 3, 648, 216), torch.zeros(4, 1, 1, 216, 216)
    q = torch.randn(4, 216, 9, 64)
    cases = [
        ("x.powf_scalar(2) [864×576]", lambda: x.pow(2)),
        ("x * x [864×576]", lambda: x * x),
        ("RMSNorm as in dft-models [864×576]", lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)),
        ("silu(gate) * up [864×1536]", lambda: F.silu(g) * g),
        ("scores + bias, softmax [4×3×3×216×216]", lambda: torch.softmax(scores.view(4, 3, 3, 216, 216) + bias, -1)),
        ("swap_dims(1,2) + reshape (copy) [4×216×9×64]", lambda: q.transpose(1, 2).reshape(4, 3, 648, 64)),
    ]
    print("| op (one call) | time |\n|---|---:|")
    for name, f in cases:
        f()
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
        ops[name] = best * 1e3
        print(f"| {name} | {best * 1e3:.2f} ms |")
    forward = {}
    batch_file = Path(args.batch_file)
    if batch_file.is_file():
        from transformers import AutoModelForCausalLM
        spec = json.loads(batch_file.read_text())
        gguf = Path(spec["model"])
        main = spec["kinds"]["main"]
        b, t = len(main["lengths"]), main["seq_len"]
        ids = torch.tensor(main["input_ids"]).view(b, t)
        mask = torch.zeros(b, t, dtype=torch.long)
        for r, n in enumerate(main["lengths"]):
            mask[r, :n] = 1
        for attn in ("eager", "sdpa"):
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                         attn_implementation=attn)
            for grad in (False, True):
                best = float("inf")
                for _ in range(4):
                    with torch.set_grad_enabled(grad):
                        t0 = time.perf_counter()
                        model.model(input_ids=ids, attention_mask=mask)
                        best = min(best, time.perf_counter() - t0)
                forward[f"{attn}_{'autograd' if grad else 'no_grad'}_s"] = best
        print(f"decoder forward {b}×{t} → h_L (best of 4): " + ", ".join(f"{k} {v:.2f}" for k, v in forward.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gemm-torch.json").write_text(json.dumps({"torch": torch.__version__, "loadavg": loadavg(),
                                                          "results": rows, "ops_ms": ops, "decoder_forward": forward}, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-file", default=str(RESULTS / "step-batch.json"))
    ap.add_argument("--methods", default="tft,dft-logits,dft-feature")
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="torch_step.json")
    ap.add_argument("--rust", default=str(RESULTS / "step.json"), help="Rust results to check the losses against")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--method")
    ap.add_argument("--gemm", action="store_true", help="only matmul GFLOP/s at the step's shapes")
    args = ap.parse_args()
    if args.gemm:
        gemm(args)
        return
    if args.child:
        child(args)
        return
    if not Path(args.batch_file).is_file():
        sys.exit(f"{args.batch_file} missing: run `cargo bench --bench step -- --plan main` first (it writes the batch)")
    started = time.time()
    load_before = loadavg()
    results = []
    for attn in args.attn.split(","):
        for method in args.methods.split(","):
            print(f"--- {method} / {attn} (load {loadavg()})", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--child", "--method", method, "--attn", attn, "--steps", str(args.steps),
                   "--threads", str(args.threads), "--batch-file", args.batch_file]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            line = next((l for l in p.stdout.splitlines() if l.startswith("RESULT ")), None)
            if p.returncode != 0 or line is None:
                print(f"{method}/{attn} failed ({p.returncode}): {p.stdout}", file=sys.stderr)
                results.append({"method": method, "attn": attn, "failed": p.returncode})
                continue
            results.append(json.loads(line[len("RESULT "):]))
    tft = {r["attn"]: r["median_s"] for r in results if r.get("method") == "tft" and "failed" not in r}
    lines = ["| method | attn | s/step median (min–max) | loss / bwd / optim s | TFT tok/s | all tok/s | peak RSS MiB | "
             "loss step 1 (main, lc, et) | ratio to TFT |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        if "failed" in r:
            lines.append(f"| {r['method']} | {r['attn']} | failed |||||||")
            continue
        c = r["steps"][0]["loss"]
        f = lambda x: "–" if x is None else f"{x:.4f}"  # noqa: E731
        ratio = r["median_s"] / tft[r["attn"]] if r["attn"] in tft else float("nan")
        lines.append(f"| {r['method']} | {r['attn']} | {r['median_s']:.2f} ({r['min_s']:.2f}–{r['max_s']:.2f}) | "
                     f"{r['loss_s_median']:.2f} / {r['backward_s_median']:.2f} / {r['optim_s_median']:.2f} | "
                     f"{r['tft_tokens_per_s']:.0f} | {r['all_tokens_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
                     f"{f(c['main'])}, {f(c['lc'])}, {f(c['et'])} | {ratio:.2f} |")
    md = "\n".join(lines)
    print("\n" + md)
    check = compare_with_rust(results, Path(args.rust))
    if check:
        print("\nfirst-step losses vs the Rust bench (relative difference):")
        for k, v in check.items():
            s1 = v.get("step1", {})
            print(f"  {k}: " + ", ".join(f"{c} {d['rel']:.2e}" for c, d in s1.items() if d["rel"] is not None)
                  + f" | grad norm torch {v['grad_norm_step1']['torch']:.4f} rust {v['grad_norm_step1']['rust']:.4f}")
    import torch
    import transformers
    out = {
        "bench": "torch_step", "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": args.threads, "timed_steps": args.steps, "batch_file": args.batch_file,
        "loadavg_before": load_before, "loadavg_after": loadavg(), "total_s": time.time() - started,
        "results": results, "loss_check_vs_rust": check, "markdown": md,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if os.sep in args.out else RESULTS / args.out
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} (total {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
