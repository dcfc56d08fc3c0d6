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
    """runs: result dicts of one method/impl over rounds → (median, min, per-round medians, peak RSS, tok)."""
    steps = [s["total_s"] for r in runs for s in r["steps"][1:]]
    if not steps:
        return None
    return {
        "median": statistics.median(steps), "min": min(steps),
        "rounds": [r["median_s"] for r in runs],
        "rss": max(r["peak_rss_mib"] for r in runs),
        "tft_tokens": runs[0]["tft_real_tokens"], "all_tokens": runs[0]["all_real_tokens"],
        "loadavg": [r.get("loadavg", [None])[0] for r in runs],
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
    fmt = lambda p: "–" if p is None else f"{p['median']:.2f} ({p['min']:.2f}; {', '.join(f'{v:.2f}' for v in p['rounds'])})"  # noqa: E731
    tok = lambda p: "–" if p is None else f"{p['tft_tokens'] / p['median']:.0f}"  # noqa: E731
    rss = lambda p: "–" if p is None else f"{p['rss']:.0f}"  # noqa: E731
    ratio = lambda a, b: "–" if a is None or b is None else f"{a['median'] / b['median']:.2f}"  # noqa: E731
    out.append("| method | dft-rs s/step: median (min; per round) | TFT tok/s | peak RSS MiB | PyTorch eager s/step | tok/s | "
               "peak RSS MiB | PyTorch sdpa s/step | tok/s | peak RSS MiB | dft-rs / eager | dft-rs / sdpa |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in METHODS:
        r, e, s = table[("rust", m)], table[("eager", m)], table[("sdpa", m)]
        out.append(f"| {m} | {fmt(r)} | {tok(r)} | {rss(r)} | {fmt(e)} | {tok(e)} | {rss(e)} | {fmt(s)} | {tok(s)} | "
                   f"{rss(s)} | {ratio(r, e)} | {ratio(r, s)} |")
    out.append("")
    out.append("| ratio to TFT (same implementation) | dft-rs | PyTorch eager | PyTorch sdpa |")
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
    sav = load("step-savings.json")
    if sav:
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
    ck = load("step-ckpt.json")
    if ck:
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
