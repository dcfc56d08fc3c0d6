#!/usr/bin/env python3
"""Reads dft's lm-eval style results.json with lm-evaluation-harness's own code and records what it sees.

Usage:  python tools/oracle/lm_eval_results_fixture.py [--cache DIR]

Input:  crates/dft-eval/tests/fixtures/lm_eval_results.json (written by `dft_eval::lm_eval::results_json`
        for the fixed run of crates/dft-eval/tests/lm_eval_results.rs; DFT_WRITE_FIXTURES=1 rewrites it).
Output: crates/dft-eval/tests/fixtures/lm_eval_table.json — the rows of lm_eval==0.4.13's
        `lm_eval.utils.make_table(result_dict)` (the table `lm_eval` prints after a run): task, version,
        filter, n-shot, metric, value, stderr, exactly as make_table formats them.

lm_eval is fetched as a wheel with `pip download --no-deps` (as in metric_fixtures.py) and imported from
the unpacked folder; make_table's only optional dependency, pytablewriter, is replaced by a stub that
keeps the value matrix make_table builds (the parsing of `metric,filter` keys, the `_stderr` pairing and
the number formatting are lm-eval's).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

import subprocess
import zipfile

LM_EVAL = "lm_eval==0.4.13"
REPO = Path(__file__).resolve().parents[2]


def fetch_wheel(spec: str, cache: Path) -> Path:
    """`pip download --no-deps` one pinned wheel into `cache` and unpack it (as metric_fixtures.py)."""
    name, version = spec.split("==")
    target = cache / f"{name}-{version}"
    if not (target / ".done").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-d", str(cache), spec],
            check=True,
        )
        wheel = next(cache.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        zipfile.ZipFile(wheel).extractall(target)
        (target / ".done").write_text("ok")
    return target


class _Writer:
    def __init__(self):
        self.headers = []
        self.value_matrix = []

    def dumps(self):
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("DFT_CACHE", REPO / ".cache")) / "oracle-wheels")
    args = ap.parse_args()
    root = fetch_wheel(LM_EVAL, args.cache)
    sys.path.insert(0, str(root))
    seen = {}

    class Md(_Writer):
        def dumps(self):
            seen["rows"] = self.value_matrix
            return ""

    stub = types.ModuleType("pytablewriter")
    stub.MarkdownTableWriter = Md
    stub.LatexTableWriter = _Writer
    sys.modules["pytablewriter"] = stub
    import lm_eval.utils as U  # noqa: E402

    fx = REPO / "crates/dft-eval/tests/fixtures"
    result_dict = json.loads((fx / "lm_eval_results.json").read_text())
    U.make_table(result_dict)
    rows = []
    task = ""
    for r in seen["rows"]:
        task = r[0] or task
        rows.append({"task": task, "version": str(r[1]), "filter": r[2], "n_shot": str(r[3]), "metric": r[4],
                     "value": r[6], "stderr": r[8]})
    out = {"lm_eval": LM_EVAL, "rows": rows}
    (fx / "lm_eval_table.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print("wrote", fx / "lm_eval_table.json", len(rows), "rows")


if __name__ == "__main__":
    main()
