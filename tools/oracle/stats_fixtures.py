#!/usr/bin/env python3
"""Reference fixture for crates/dft-eval/src/stats.rs: standard errors and (paired) bootstrap CIs.

Usage:  python tools/oracle/stats_fixtures.py [--out crates/dft-eval/tests/fixtures/stats.json]

Requirements (pinned in requirements.txt): numpy, scipy.

Two kinds of reference:
  * Exact: the bootstrap index stream is replayed here (SplitMix64 + Lemire's multiply-shift,
    the generator of stats.rs, re-implemented with Python integers), and the statistics over those
    resamples are computed by NumPy: numpy.std(ddof=1) for the bootstrap standard error,
    numpy.percentile (method "linear", NumPy's default) for the percentile interval, the p-value as
    2*min(P(d<=0), P(d>=0)). The standard error of a mean is scipy.stats.sem (ddof=1), which is
    lm-eval's `mean_stderr`; for 0/1 data it is the binomial sqrt(p(1-p)/(n-1)).
  * Independent: scipy.stats.bootstrap(paired=True, method="percentile") with its own generator and
    many resamples; stats.rs must agree within Monte-Carlo error (tolerance written in the fixture).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy
import scipy.stats

M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & M64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def index(self, n: int) -> int:
        return (self.next_u64() * n) >> 64


def boot_means(rng: SplitMix64, x: np.ndarray, resamples: int) -> np.ndarray:
    n = len(x)
    out = np.empty(resamples)
    for r in range(resamples):
        idx = [rng.index(n) for _ in range(n)]
        out[r] = x[idx].mean()
    return out


def paired(tasks, resamples: int, level: float, seed: int) -> dict:
    rng = SplitMix64(seed)
    diffs = [np.asarray(a, float) - np.asarray(b, float) for a, b in tasks]
    stats = np.zeros(resamples)
    for r in range(resamples):
        s = 0.0
        for d in diffs:
            n = len(d)
            idx = [rng.index(n) for _ in range(n)]
            s += d[idx].mean()
        stats[r] = s / len(diffs)
    tail = (100.0 - level) / 2
    le = np.mean(stats <= 0.0)
    ge = np.mean(stats >= 0.0)
    return {
        "diff": float(np.mean([d.mean() for d in diffs])),
        "ci_low": float(np.percentile(stats, tail)),
        "ci_high": float(np.percentile(stats, 100 - tail)),
        "stderr": float(np.std(stats, ddof=1)),
        "p_value": float(min(1.0, 2 * min(le, ge))),
    }


def main():
    ap = argparse.ArgumentParser()
    repo = Path(__file__).resolve().parents[2]
    ap.add_argument("--out", type=Path, default=repo / "crates/dft-eval/tests/fixtures/stats.json")
    args = ap.parse_args()
    gen = np.random.default_rng(20261206)

    cases = []
    # 0/1 accuracies of two systems on shared items (correlated), F1-like scores in [0, 1].
    for n, p, kind in [(37, 0.55, "binary"), (200, 0.3, "binary"), (64, 0.0, "f1"), (11, 0.0, "f1")]:
        if kind == "binary":
            b = (gen.random(n) < p).astype(float)
            flip = gen.random(n) < 0.25
            a = np.where(flip, 1 - b, b)
        else:
            b = np.clip(gen.beta(0.6, 0.8, n), 0, 1)
            a = np.clip(b + gen.normal(0.05, 0.2, n), 0, 1)
        a, b = a.round(6), b.round(6)
        seed = int(gen.integers(0, 2**63))
        resamples = 500
        boot = boot_means(SplitMix64(seed), a, resamples)
        case = {
            "kind": kind,
            "a": a.tolist(),
            "b": b.tolist(),
            "seed": seed,
            "resamples": resamples,
            "sem_a": float(scipy.stats.sem(a, ddof=1)),
            "bootstrap_stderr_a": float(np.std(boot, ddof=1)),
            "paired_95": paired([(a, b)], resamples, 95.0, seed),
            "paired_90": paired([(a, b)], resamples, 90.0, seed),
        }
        # scipy's own paired percentile bootstrap (its generator): agreement within Monte-Carlo error.
        big = 20000
        res = scipy.stats.bootstrap(
            (a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, vectorized=True,
            n_resamples=big, confidence_level=0.95, method="percentile", random_state=np.random.default_rng(seed % 2**32),
        )
        se = float(res.standard_error)
        case["scipy_bootstrap"] = {
            "resamples": big,
            "ci_low": float(res.confidence_interval.low),
            "ci_high": float(res.confidence_interval.high),
            "stderr": se,
            # Percentile Monte-Carlo error with 20000 resamples on both sides is well below 0.1 se; for
            # 0/1 data the bootstrap differences live on a lattice of step 1/n, and either neighbouring
            # lattice point is a correct percentile up to that noise.
            "tolerance": 0.1 * se + (1.0 / n if kind == "binary" else 0.0),
        }
        cases.append(case)
    # The average over tasks: each task resampled independently per replicate.
    multi_tasks = [(c["a"], c["b"]) for c in cases[:3]]
    multi = {"seed": 7, "resamples": 300, "result": paired(multi_tasks, 300, 95.0, 7)}
    out = {
        "generator": "numpy %s, scipy %s" % (np.__version__, scipy.__version__),
        "cases": cases,
        "multi": multi,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
