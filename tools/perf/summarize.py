#!/usr/bin/env python3
"""Markdown tables of issue 8's step measurements (tools/perf/compare.sh) for docs/PERFORMANCE.md.

Reads target/bench-results/step-main-*.json (Rust, `cargo bench --bench step -- --plan main`),
torch_step-*.json (tools/perf/torch_step.py), step-savings.json and step-ckpt.json, whichever exist.
Per method and implementation: every timed step of every round pooled — median, min — and the per-round
medians; peak RSS is the largest over the rounds. Plain Python, no third-party package.
"""
import glob
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "bench-results"
METHODS = ["tft", "dft-logits", "dft-feature"]


def load(pattern):
    return [json.loads(Path(p).read_text()) for p in sorted(glob.glob(str(RESULTS / pattern)))]


def pooled(runs):
    """One method/implementation over rounds: the best round's median (the round least disturbed by other
    work on the machine), the fastest step of all, every round's median with the 1-min load when it
    started, and the peak RSS (largest over rounds)."""
    runs = [r for r in runs if r["steps"][1:]]
    if not runs:
        return None
    best = min(runs, key=lambda r: r["median_s"])
    return {
        "best": best["median_s"], "min": min(s["total_s"] for r in runs for s in r["steps"][1:]),
        "rounds": [(r["median_s"], (r.get("loadavg") or [float("nan")])[0]) for r in runs],
        "rss": max(r["peak_rss_mib"] for r in runs),
        "tft_tokens": runs[0]["tft_real_tokens"], "all_tokens": runs[0]["all_real_tokens"],
    }


def main():
    rust = load("step-main-*.json")
    torch = load("torch_step-*.json")
    out = []
    if rust:
        b = rust[0]["batch"]["shapes"]
        out.append(f"Batch (same for both): TFT {b['main']['rows']}×{b['main']['seq_len']} "
                   f"({b['main']['real_tokens']} real tokens, {b['main']['labelled']} labelled), "
                   f"LC {b['lc']['rows']}×{b['lc']['seq_len']}, ET {b['et']['rows']}×{b['et']['seq_len']}, "
                   f"P(x_en) {b['en_prompt']['rows']}×{b['en_prompt']['seq_len']}; rounds: {len(rust)} Rust, {len(torch)} PyTorch.")
        loads = [(x.get("loadavg_before"), x.get("loadavg_after")) for x in rust + torch]
        out.append("Load averages (1/5/15 min) before → after each driver run: "
                   + "; ".join(f"{a[0]:.1f}→{c[0]:.1f}" for a, c in loads if a and c))
        out.append("")
    table = {}
    for m in METHODS:
        table[("rust", m)] = pooled([r for x in rust for r in x["results"]
                                     if r.get("method") == m and r.get("path") == "default" and "failed" not in r])
        for attn in ("eager", "sdpa"):
            table[(attn, m)] = pooled([r for x in torch for r in x["results"]
                                       if r.get("method") == m and r.get("attn") == attn and "failed" not in r])
    fmt = lambda p: "–" if p is None else f"**{p['best']:.2f}** ({p['min']:.2f})"  # noqa: E731
    rounds = lambda p: "–" if p is None else ", ".join(f"{v:.1f}@{l:.1f}" for v, l in p["rounds"])  # noqa: E731
    tok = lambda p: "–" if p is None else f"{p['tft_tokens'] / p['best']:.0f}"  # noqa: E731
    rss = lambda p: "–" if p is None else f"{p['rss']:.0f}"  # noqa: E731
    ratio = lambda a, b: "–" if a is None or b is None else f"{a['best'] / b['best']:.2f}"  # noqa: E731
    out.append("s/step: **best round's median** (fastest single step); TFT tok/s at the best round's median.")
    out.append("")
    out.append("| method | dft-rs s/step | TFT tok/s | peak RSS MiB | PyTorch eager s/step | tok/s | peak RSS MiB | "
               "PyTorch sdpa s/step | tok/s | peak RSS MiB | dft-rs / eager | dft-rs / sdpa |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in METHODS:
        r, e, s = table[("rust", m)], table[("eager", m)], table[("sdpa", m)]
        out.append(f"| {m} | {fmt(r)} | {tok(r)} | {rss(r)} | {fmt(e)} | {tok(e)} | {rss(e)} | {fmt(s)} | {tok(s)} | "
                   f"{rss(s)} | {ratio(r, e)} | {ratio(r, s)} |")
    out.append("")
    out.append("Every round's median s/step @ the 1-min load average when that run started:")
    out.append("")
    out.append("| method | dft-rs | PyTorch eager | PyTorch sdpa |")
    out.append("|---|---|---|---|")
    for m in METHODS:
        out.append(f"| {m} | " + " | ".join(rounds(table[(k, m)]) for k in ("rust", "eager", "sdpa")) + " |")
    out.append("")
    out.append("| ratio to TFT (best rounds, same implementation) | dft-rs | PyTorch eager | PyTorch sdpa |")
    out.append("|---|---:|---:|---:|")
    for m in METHODS[1:]:
        out.append(f"| {m} / tft | " + " | ".join(ratio(table[(k, m)], table[(k, 'tft')]) for k in ("rust", "eager", "sdpa")) + " |")
    out.append("")
    # Loss agreement.
    checks = [x.get("loss_check_vs_rust") for x in torch if x.get("loss_check_vs_rust")]
    if checks:
        out.append("First-step losses, PyTorch vs dft-rs (largest relative difference over rounds and components):")
        worst = {}
        for c in checks:
            for k, v in c.items():
                for comp, d in v.get("step1", {}).items():
                    if d.get("rel") is not None:
                        worst[k] = max(worst.get(k, 0.0), d["rel"])
        out.append(", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))
        out.append("")
    # Savings.
    for sav in ([x] for x in load("step-savings*.json")):
        res = [r for r in sav[0]["results"] if "failed" not in r]
        base = {m: next((r for r in res if r["method"] == m and r["path"] == "default"), None) for m in METHODS}
        out.append(f"Ablations (one session, load {sav[0].get('loadavg_before')} → {sav[0].get('loadavg_after')}):")
        out.append("")
        out.append("| run | s/step median (min–max) | loss / bwd / optim s | peak RSS MiB | Δ s/step vs default | Δ peak RSS MiB |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for r in res:
            b = base.get(r["method"])
            d = "" if b is None or b is r else f"{r['median_s'] - b['median_s']:+.2f} ({r['median_s'] / b['median_s']:.2f}×)"
            dm = "" if b is None or b is r else f"{r['peak_rss_mib'] - b['peak_rss_mib']:+.0f}"
            out.append(f"| {r['method']}:{r['path']} | {r['median_s']:.2f} ({r['min_s']:.2f}–{r['max_s']:.2f}) | "
                       f"{r['loss_s_median']:.2f} / {r['backward_s_median']:.2f} / {r['optim_s_median']:.2f} | "
                       f"{r['peak_rss_mib']:.0f} | {d} | {dm} |")
        lg = sav[0].get("length_grouping")
        if lg:
            out.append("")
            out.append(f"Length grouping (one epoch, batch {lg['batch_size']}, all kinds): padding "
                       f"{100 * lg['grouped']['padding']:.1f}% grouped vs {100 * lg['ungrouped']['padding']:.1f}% not; "
                       f"padded slots ×{lg['padded_token_ratio_ungrouped_to_grouped']:.2f} without grouping.")
        out.append("")
    gf, gt = load("gemm-flex.json"), load("gemm-torch.json")
    if gf and gt:
        gf, gt = gf[0], gt[0]
        out.append(f"Kernels at the step's shapes (`--gemm`; load {gf.get('loadavg')} / {gt.get('loadavg')}):")
        out.append("")
        out.append("| what | dft-rs (Flex) | PyTorch | Flex / PyTorch time |")
        out.append("|---|---:|---:|---:|")
        for a, b in zip(gf["results"], gt["results"]):
            out.append(f"| matmul {a['shape']} | {a['gflops']:.0f} GFLOP/s | {b['gflops']:.0f} GFLOP/s | {b['gflops'] / a['gflops']:.2f} |")
        # The op names are the same on both sides (the PyTorch ops are the equivalents).
        topo = gt.get("ops_ms", {})
        for k, va in gf.get("ops_ms", {}).items():
            vb = topo.get(k) or topo.get({"x.powf_scalar(2) [864×576]": "x.pow(2) [864×576]",
                                          "RMSNorm as in dft-models [864×576]": "RMSNorm [864×576]",
                                          "swap_dims(1,2) + reshape (copy) [4×216×9×64]":
                                              "transpose(1,2) + reshape (copy) [4×216×9×64]"}.get(k, k))
            if vb:
                out.append(f"| {k} | {va:.2f} ms | {vb:.2f} ms | {va / vb:.1f} |")
        fa, fb = gf.get("decoder_forward", {}), gt.get("decoder_forward", {})
        if fa and fb:
            out.append(f"| decoder forward {fa['rows']}×{fa['seq_len']} → h_L, no grad | {fa['no_grad_s']:.2f} s | "
                       f"{fb['sdpa_no_grad_s']:.2f} s (sdpa), {fb['eager_no_grad_s']:.2f} s (eager) | "
                       f"{fa['no_grad_s'] / fb['sdpa_no_grad_s']:.1f} |")
            out.append(f"| same, building the autodiff graph | {fa['autodiff_s']:.2f} s | {fb['sdpa_autograd_s']:.2f} s (sdpa) | "
                       f"{fa['autodiff_s'] / fb['sdpa_autograd_s']:.1f} |")
        out.append("")
    for ck in ([x] for x in load("step-ckpt*.json")):
        res = [r for r in ck[0]["results"] if "failed" not in r]
        sh = ck[0]["long_batch"]["shapes"]["main"]
        out.append(f"Gradient checkpointing on the longest batch (TFT {sh['rows']}×{sh['seq_len']}; load "
                   f"{ck[0].get('loadavg_before')} → {ck[0].get('loadavg_after')}):")
        out.append("")
        out.append("| method | checkpointing | s/step median (min–max) | loss / bwd / optim s | peak RSS MiB | heap peak above live MiB |")
        out.append("|---|---|---:|---:|---:|---:|")
        for r in res:
            out.append(f"| {r['method']} | {'on' if r['checkpointing'] else 'off'} | {r['median_s']:.2f} "
                       f"({r['min_s']:.2f}–{r['max_s']:.2f}) | {r['loss_s_median']:.2f} / {r['backward_s_median']:.2f} / "
                       f"{r['optim_s_median']:.2f} | {r['peak_rss_mib']:.0f} | {r['heap_step_peak_above_live_mib']:.0f} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
