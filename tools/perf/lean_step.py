#!/usr/bin/env python3
"""A lean, hand-written PyTorch Llama training step: the strongest simple PyTorch reference (issue 21).

`tools/perf/torch_step.py` times transformers' `LlamaForCausalLM`, which computes the logits at every
position and the padded positions of every pass. A researcher who writes the step by hand does less,
and this script is that step: our own ~80-line Llama (no transformers modeling code; transformers only
loads the GGUF's weights into tensors), logits only at the labelled positions, rows right-padded as the
batch file gives them with causal masking only (right padding never reaches a real position under a
causal mask, so no padding mask is needed), and each lens pass stopped at the block it reads:

- tft:         CE of the labelled next tokens of the main sequences (final norm + tied head at those
               positions only).
- dft-logits:  TFT + α·LC + β·ET; LC (ET) runs its own sequences through blocks 1..i (1..j) only, then the
               logit lens (final RMSNorm and LM head with detached weights) at the labelled positions.
- dft-feature: TFT (keeping h_i, h_j of the main pass) + the English prompts through all L blocks; α·(1 −
               cos) of query-mean-pooled h_i, β·(1 − cos) of pooled h_L(P(x_en)) (before the final norm)
               vs h_j(P(x_tgt)) — as torch_step.py and docs/METHOD.md §3.

The same full step as the Rust bench: forward, backward, global-norm clip (max_grad_norm from the batch
file), AdamW with the batch file's settings. Attention is `--attn sdpa` (torch's fused
scaled_dot_product_attention with is_causal=True, the fastest PyTorch CPU path) or `--attn eager`
(matmul + causal mask + softmax). Each method runs in its own process (peak RSS per method). It reads
`target/bench-results/step-batch.json` (written by `cargo bench --bench step`) and, given the Rust
results (`--rust`), checks that the first step's losses agree.

    cargo bench --bench step -- --only tft:default --steps 1          # writes the batch file
    python tools/perf/lean_step.py --threads 1 --attn sdpa --steps 3 --out lean-1.json
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

from torch_step import RESULTS, loadavg, run_steps  # the same step loop as the transformers reference


def child(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    spec = json.loads(Path(args.batch_file).read_text())
    gguf = Path(spec["model"])
    if not gguf.is_file():
        sys.exit(f"lean_step: the GGUF {gguf} is missing (scripts/fetch-smollm2.sh)")
    method, m, opt_spec = args.method, spec["methods"][args.method], spec["optimizer"]
    assert m["pooling"] == "query_mean" and not m["english_stop_grad"], "only the defaults are implemented"

    t = time.perf_counter()
    # transformers only reads the GGUF (dequantise, un-permute q/k) into a state dict; the model is ours.
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = hf.config
    sd = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    del hf

    H, NH, NKV = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or H // NH
    L, V, EPS = cfg.num_hidden_layers, cfg.vocab_size, cfg.rms_norm_eps
    theta = cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None) else cfg.rope_theta

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

    class Block(nn.Module):
        def __init__(self, p):
            super().__init__()
            g = lambda k: nn.Parameter(sd[f"model.layers.{p}.{k}"])  # noqa: E731
            self.n1, self.n2 = g("input_layernorm.weight"), g("post_attention_layernorm.weight")
            self.q, self.k = g("self_attn.q_proj.weight"), g("self_attn.k_proj.weight")
            self.v, self.o = g("self_attn.v_proj.weight"), g("self_attn.o_proj.weight")
            self.gate, self.up = g("mlp.gate_proj.weight"), g("mlp.up_proj.weight")
            self.down = g("mlp.down_proj.weight")

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            h = rms(x, self.n1)
            q = (h @ self.q.T).view(b, t, NH, D).transpose(1, 2)
            k = (h @ self.k.T).view(b, t, NKV, D).transpose(1, 2)
            v = (h @ self.v.T).view(b, t, NKV, D).transpose(1, 2)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            if args.attn == "sdpa":
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            else:
                k, v = k.repeat_interleave(NH // NKV, 1), v.repeat_interleave(NH // NKV, 1)
                s = (q @ k.transpose(-1, -2)) * D ** -0.5
                s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
                a = torch.softmax(s, -1) @ v
            x = x + a.transpose(1, 2).reshape(b, t, NH * D) @ self.o.T
            h = rms(x, self.n2)
            return x + (F.silu(h @ self.gate.T) * (h @ self.up.T)) @ self.down.T

    def rot(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat((-x2, x1), -1)

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Parameter(sd["model.embed_tokens.weight"])  # tied with the LM head
            self.norm = nn.Parameter(sd["model.norm.weight"])
            self.blocks = nn.ModuleList(Block(p) for p in range(L))

        def forward(self, ids, upto, keep=()):
            """Hidden state after block `upto` (pre-norm), plus the outputs of the blocks in `keep`."""
            t = ids.shape[1]
            inv = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D)
            ang = torch.outer(torch.arange(t, dtype=torch.float32), inv)
            ang = torch.cat((ang, ang), -1)
            cos, sin = ang.cos(), ang.sin()
            x = self.embed[ids]
            kept = {}
            for p in range(upto):
                x = self.blocks[p](x, cos, sin)
                if p + 1 in keep:
                    kept[p + 1] = x
            return x, kept

    model = Llama()
    model.train()
    load_s = time.perf_counter() - t

    def tensors(seq):
        b, t = len(seq["lengths"]), seq["seq_len"]
        ids = torch.tensor(seq["input_ids"], dtype=torch.long).view(b, t)
        labels = torch.tensor(seq["labels"], dtype=torch.long).view(b, t)
        return ids, labels

    def head_ce(h, labels, detached):
        """Mean CE of the labelled next tokens, logits only at those positions."""
        tgt = labels[:, 1:]
        sel = tgt != -100
        hs = h[:, :-1][sel]
        w_norm, w_head = (model.norm.detach(), model.embed.detach()) if detached else (model.norm, model.embed)
        return F.cross_entropy(rms(hs, w_norm) @ w_head.T, tgt[sel])

    def pool(h, seq):
        b, t = len(seq["lengths"]), seq["seq_len"]
        w = torch.zeros(b, t)
        for r in range(b):
            idx = [i for s, e in seq["query_spans"][r] for i in range(s, e)]
            w[r, idx] = 1.0 / len(idx)
        return torch.einsum("bt,bth->bh", w, h)

    kinds = spec["kinds"]
    main_seq = kinds["main"]
    ids, labels = tensors(main_seq)
    i, j = m["lc_layer"], m["et_layer"]

    def objective():
        comps = {"main": None, "lc": None, "et": None}
        if method in ("tft", "dft-logits"):
            h, _ = model(ids, L)
            total = head_ce(h, labels, detached=False)
            comps["main"] = total.item()
            if method == "dft-logits":
                for kind, k, w in (("lc", i, m["alpha"]), ("et", j, m["beta"])):
                    kids, klabels = tensors(kinds[kind])
                    hk, _ = model(kids, k)
                    v = head_ce(hk, klabels, detached=True)
                    comps[kind] = v.item()
                    total = total + w * v
        elif method == "dft-feature":
            h, kept = model(ids, L, keep=(i, j))
            total = head_ce(h, labels, detached=False)
            comps["main"] = total.item()
            en = kinds["en_prompt"]
            eids, _ = tensors(en)
            h_L_en, ekept = model(eids, L, keep=(i,))
            lc = 1 - F.cosine_similarity(pool(ekept[i], en), pool(kept[i], main_seq), dim=-1).mean()
            et = 1 - F.cosine_similarity(pool(h_L_en, en), pool(kept[j], main_seq), dim=-1).mean()
            comps["lc"], comps["et"] = lc.item(), et.item()
            total = total + m["alpha"] * lc + m["beta"] * et
        else:
            raise SystemExit(f"unknown method {method}")
        comps["total"] = total.item()
        return total, comps

    def step_objective():
        # --autocast: PyTorch's bf16 mixed precision (products in bf16 on oneDNN/AMX, the rest f32).
        if not args.autocast:
            return objective()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return objective()

    label = f"lean {method}/{args.attn}" + (" autocast-bf16" if args.autocast else "")
    steps = run_steps(model.parameters(), step_objective, opt_spec, args.steps, label)
    timed = steps[1:]
    med = lambda k: statistics.median(x[k] for x in timed)  # noqa: E731
    print("RESULT " + json.dumps({
        "method": method, "attn": args.attn, "reference": "lean", "torch": torch.__version__,
        "precision": "autocast-bf16" if args.autocast else "f32",
        "threads": torch.get_num_threads(), "load_s": load_s, "median_s": med("total_s"),
        "min_s": min(x["total_s"] for x in timed), "max_s": max(x["total_s"] for x in timed),
        "loss_s_median": med("loss_s"), "backward_s_median": med("backward_s"), "optim_s_median": med("optim_s"),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loadavg": loadavg(), "steps": steps,
        "kernel_stats": {f"median_{k}": statistics.median(x["kernels"][k] for x in timed)
                         for k in ("products_s", "products_gflops", "attention_s", "rest_s")}
        if timed and "kernels" in timed[0] else None}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-file", default=str(RESULTS / "step-batch.json"))
    ap.add_argument("--methods", default="tft,dft-logits,dft-feature")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="lean_step.json")
    ap.add_argument("--rust", help="the Rust bench's results, to check the first step's losses against")
    ap.add_argument("--autocast", action="store_true", help="torch.autocast(cpu, bfloat16) around the objective")
    ap.add_argument("--profile", action="store_true",
                    help="every step under torch.profiler, split into matrix products, attention and the rest "
                         "(as `cargo bench --bench step -- --kernel-stats`); the profiler's overhead is in the step times")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--method")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if not Path(args.batch_file).is_file():
        sys.exit(f"{args.batch_file} missing: run `cargo bench --bench step` first (it writes the batch)")
    results = []
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--child", "--method", method, "--attn", args.attn, "--steps",
               str(args.steps), "--threads", str(args.threads), "--batch-file", args.batch_file]
        if args.autocast:
            cmd.append("--autocast")
        env = dict(os.environ, DFT_TORCH_SPLIT="1") if args.profile else None
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode != 0 or line is None:
            sys.exit(f"lean_step: {method} failed ({p.returncode})")
        results.append(json.loads(line[len("RESULT "):]))
    check = {}
    if args.rust and Path(args.rust).is_file():
        rust = json.loads(Path(args.rust).read_text())
        for r in results:
            rr = next((x for x in rust.get("results", []) if x.get("method") == r["method"]
                       and x.get("path") == "default" and "failed" not in x), None)
            if rr is None:
                continue
            a, b = r["steps"][0]["loss"], rr["steps"][0]["loss"]
            check[r["method"]] = {k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-12)
                                  for k in ("main", "lc", "et", "total") if a.get(k) is not None and b.get(k) is not None}
            print(f"first-step losses vs Rust, {r['method']}: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in check[r["method"]].items()), file=sys.stderr)
    for r in results:
        print(f"| lean {r['method']} | {args.attn} | {args.threads} | {r['median_s']:.2f} "
              f"({r['min_s']:.2f}–{r['max_s']:.2f}) | {r['peak_rss_mib']:.0f} |")
    for r in results:
        k = r.get("kernel_stats")
        if k:
            print(f"| lean {r['method']} (profiled) | {r['median_s']:.2f} | {k['median_products_s']:.2f} "
                  f"({k['median_products_gflops']:.0f} GFLOP/s) | {k['median_attention_s']:.2f} | "
                  f"{k['median_rest_s']:.2f} ({r['optim_s_median']:.2f}) |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if os.sep in args.out else RESULTS / args.out
    path.write_text(json.dumps({"bench": "lean_step", "threads": args.threads, "attn": args.attn,
                                "precision": "autocast-bf16" if args.autocast else "f32",
                                "batch_file": args.batch_file, "results": results, "loss_check_vs_rust": check},
                               indent=1) + "\n")


if __name__ == "__main__":
    main()
