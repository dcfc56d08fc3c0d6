#!/usr/bin/env python3
"""dft-rs training step vs the lean PyTorch step, over thread counts and batch shapes, interleaved (issue 21).

For each round, each batch shape and each thread count: the Rust step bench (`cargo bench --bench step`,
TFT / DFT-logits / DFT-feature on the default path), then the lean hand-written PyTorch step
(`tools/perf/lean_step.py`) on the batch file that run just wrote — so both sides always read the same
batch, and A B A B … order spreads the VM's drift over both. Shapes:

- bundled: the bundled zh data's median batch, length-grouped (the Rust bench's defaults: batch 4,
  max length 512).
- padded:  the 10%-quantile batch (four short pairs), max length 256, every sequence right-padded to 256
  in the batch file (a fixed-length pipeline); dft-rs trims each pass to its longest real row, the lean
  step computes all 256 positions as such a PyTorch step does.

Precision: `--precision f32` (default) times dft-rs's f32 step; `--precision bf16-mixed` its bf16-mixed
step (`train.precision = "bf16-mixed"`: products on AMX tiles where the CPU has them). The lean step runs
in f32 (PyTorch's fastest CPU step here) unless `--torch-autocast` (torch.autocast bf16 on the CPU).

Prints one table (each cell the median over rounds of each side's median step time, with the per-round
ratios) and writes target/bench-results/step-matrix[-PRECISION].json. First-step losses of the two sides
are checked on every pair (relative difference printed; fails above 1e-4 when both sides run in f32,
above 1e-2 when either runs bf16 products).

    python tools/perf/step_matrix.py --rounds 2 --threads 1,2 --shapes bundled,padded --steps 3
    python tools/perf/step_matrix.py --precision bf16-mixed --rounds 2 --threads 1,2 --shapes bundled,padded
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-results"
SHAPES = {
    "bundled": [],
    "padded": ["--max-len", "256", "--pad-to", "256", "--batch-quantile", "0.1"],
}
METHODS = ["tft", "dft-logits", "dft-feature"]


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def run(cmd, env=None):
    print(f"$ {' '.join(cmd)}   (load {loadavg()})", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default="bundled,padded")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="the lean step's attention")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16-mixed"], help="dft-rs's step")
    ap.add_argument("--torch-autocast", action="store_true", help="the lean step under torch.autocast(bf16)")
    args = ap.parse_args()
    mixed = args.precision == "bf16-mixed"
    loss_tol = 1e-2 if mixed or args.torch_autocast else 1e-4
    suffix = "" if not (mixed or args.torch_autocast) else f"-{args.precision}" + ("-autocast" if args.torch_autocast else "")
    threads = [int(t) for t in args.threads.split(",")]
    shapes = args.shapes.split(",")
    started = time.time()
    subprocess.run(["cargo", "bench", "--bench", "step", "--no-run"], check=True, cwd=ROOT)
    cells = {}  # (shape, threads, method) -> {"rust": [...], "torch": [...], "ratio": [...], "loss_rel": [...]}
    only = ",".join(f"{m}:default" + (":mixed" if mixed else "") for m in METHODS)
    for r in range(1, args.rounds + 1):
        for shape in shapes:
            for t in threads:
                tag = f"{shape}-t{t}-r{r}{suffix}"
                rust_out = f"matrix-rust-{tag}.json"
                env = dict(os.environ, RAYON_NUM_THREADS=str(t))
                run(["cargo", "bench", "--bench", "step", "--", "--only", only, "--steps", str(args.steps),
                     "--threads", str(t), "--out", rust_out, *SHAPES[shape]], env=env)
                torch_out = f"matrix-lean-{tag}.json"
                run([args.python, "tools/perf/lean_step.py", "--threads", str(t), "--attn", args.attn,
                     "--steps", str(args.steps), "--out", torch_out, "--rust", str(RESULTS / rust_out),
                     *(["--autocast"] if args.torch_autocast else [])])
                rust = {x["method"]: x for x in json.loads((RESULTS / rust_out).read_text())["results"]}
                lean = json.loads((RESULTS / torch_out).read_text())
                for x in lean["results"]:
                    m = x["method"]
                    c = cells.setdefault((shape, t, m), {"rust": [], "torch": [], "ratio": [], "loss_rel": [],
                                                         "rust_rss": [], "torch_rss": [], "shape": None})
                    c["rust"].append(rust[m]["median_s"])
                    c["torch"].append(x["median_s"])
                    c["ratio"].append(rust[m]["median_s"] / x["median_s"])
                    c["rust_rss"].append(rust[m]["peak_rss_mib"])
                    c["torch_rss"].append(x["peak_rss_mib"])
                    c["shape"] = rust[m]["shapes"]["main"]
                    rel = max(lean["loss_check_vs_rust"].get(m, {}).values(), default=float("nan"))
                    c["loss_rel"].append(rel)
                    if not rel <= loss_tol:
                        sys.exit(f"{tag} {m}: first-step losses differ by {rel:.2e} (relative)")
    torch_label = f"lean PyTorch ({args.attn}{', autocast bf16' if args.torch_autocast else ', f32'})"
    lines = [f"| shape | threads | method | dft-rs ({args.precision}) s/step | {torch_label} s/step | dft-rs / PyTorch time "
             "(per round) | PyTorch / dft-rs speed | peak RSS MiB dft-rs / PyTorch |",
             "|---|---:|---|---:|---:|---|---:|---:|"]
    for (shape, t, m), c in cells.items():
        rs, ts = statistics.median(c["rust"]), statistics.median(c["torch"])
        s = c["shape"]
        lines.append(f"| {shape} ({s['rows']}×{s['seq_len']}) | {t} | {m} | {rs:.2f} | {ts:.2f} | "
                     f"**{rs / ts:.2f}** ({', '.join(f'{x:.2f}' for x in c['ratio'])}) | {ts / rs:.2f}× | "
                     f"{max(c['rust_rss']):.0f} / {max(c['torch_rss']):.0f} |")
    md = "\n".join(lines)
    print("\n" + md)
    out = {"bench": "step_matrix", "rounds": args.rounds, "steps": args.steps, "attn": args.attn,
           "precision": args.precision, "torch_autocast": args.torch_autocast,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "total_s": time.time() - started,
           "cells": [{"shape": k[0], "threads": k[1], "method": k[2], **v} for k, v in cells.items()],
           "markdown": md}
    path = RESULTS / f"step-matrix{suffix}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
