#!/usr/bin/env python3
"""Reference fixtures for crates/dft-eval: the official metric functions and lm-evaluation-harness
prompt builders, run on real benchmark strings (shared/data/eval) and adversarial ones.

Usage:  python tools/oracle/metric_fixtures.py [--data DIR] [--out DIR] [--cache DIR]
  --data   the eval data folder (default: ../shared/data/eval beside the repository)
  --out    where the JSON fixtures go (default: crates/dft-eval/tests/fixtures)
  --cache  where the wheels are downloaded (default: $DFT_CACHE or .cache/, then oracle-wheels/)

Requirements (pinned; Python 3.11, whose unicodedata is Unicode 14.0):
  pip install sacrebleu==2.6.0 numpy jinja2 pyyaml      # imported normally
  lm_eval==0.4.13, allennlp==0.9.0                        # fetched by this script with
                                                          # `pip download --no-deps`, never installed
Where each reference comes from:
  * SQuAD v1.1 (XQuAD F1/EM): the official `evaluate-v1.1.py`, shipped verbatim in the PyPI wheel
    allennlp==0.9.0 as `allennlp/tools/squad_eval.py` (standard library only). We import that file
    from the wheel.
  * MLQA (`mlqa_evaluation_v1.py`, facebookresearch/MLQA): not on any package registry. The PyPI
    wheel lm_eval==0.4.13 ships a copy as `lm_eval/tasks/mlqa/utils.py`, identical in its
    normalisation except for the Arabic article rule: lm-eval uses `(?:^|\\s)ال`, the official script
    `re.sub('\\sال^|ال', ' ', text)` (which removes every `ال`). We import lm-eval's module and route
    its Arabic `re.sub` to the official pattern (asserting that the substitution happened).
  * MKQA (`mkqa_eval.py` / `mkqa_eval_util.py`, apple/ml-mkqa): not on any package registry.
    Implemented below from the published description: lower-case, drop `string.punctuation`,
    the same article rules as MLQA for en/vi/ar, zh_cn/ja/th/km split into characters, other
    languages on whitespace; F1 is 1 when both token lists are empty and 0 when one is; EM compares
    the normalised strings; the score is the maximum over the gold answers.
  * chrF++ / chrF2 / BLEU (13a and zh tokenizers, exp smoothing): sacrebleu==2.6.0's
    `CHRF(word_order=2)`, `CHRF()`, `BLEU()`, `BLEU(tokenize='zh')`, corpus-level.
  * acc / acc_norm / acc_bytes: lm_eval==0.4.13 `ConfigurableTask.process_results` (multiple_choice),
    called on random log-likelihoods.
  * Prompts and choices: lm_eval==0.4.13 task files (xnli_*.yaml, xcopa/utils.py,
    super_glue/copa/utils.py, xstorycloze, truthfulqa_mc1.yaml, okapi truthfulqa utils.py,
    mmlu/default and okapi m_mmlu templates) rendered with lm-eval's own `apply_template`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import string
import subprocess
import sys
import types
import unicodedata
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import sacrebleu
import yaml
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

LM_EVAL = "lm_eval==0.4.13"
ALLENNLP = "allennlp==0.9.0"
assert sacrebleu.__version__ == "2.6.0", f"need sacrebleu==2.6.0, have {sacrebleu.__version__}"

REPO = Path(__file__).resolve().parents[2]
LANGS = ["en", "zh", "vi", "ar"]


# ----------------------------------------------------------------------------------------------
# Getting the official code
# ----------------------------------------------------------------------------------------------
def fetch_wheel(spec: str, cache: Path) -> Path:
    """`pip download --no-deps` one pinned wheel into `cache` and unpack it; returns the folder."""
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


def import_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_official(cache: Path):
    lm_root = fetch_wheel(LM_EVAL, cache)
    al_root = fetch_wheel(ALLENNLP, cache)
    # lm-eval's task modules import heavy packages they do not need for what we call.
    for stub in ["datasets", "dill"]:
        sys.modules.setdefault(stub, types.ModuleType(stub))
    sys.modules["datasets"].Dataset = type("Dataset", (), {})
    sys.path.insert(0, str(lm_root))
    import lm_eval.utils as lm_utils  # noqa: E402
    import lm_eval.api.task as lm_task  # noqa: E402

    squad = import_path("squad_eval_v11", al_root / "allennlp/tools/squad_eval.py")
    assert "Official evaluation script for v1.1 of the SQuAD dataset" in (squad.__doc__ or "")
    mlqa = import_path("lm_eval_mlqa_utils", lm_root / "lm_eval/tasks/mlqa/utils.py")

    # Route lm-eval's Arabic article rule to the official one of mlqa_evaluation_v1.py.
    lm_eval_ar, official_ar = r"(?:^|\s)ال", "\\sال^|ال"
    seen = {"ar": 0}

    class ReProxy:
        def __getattr__(self, attr):
            return getattr(re, attr)

        def sub(self, pattern, repl, s, *a, **k):
            if pattern == lm_eval_ar:
                seen["ar"] += 1
                pattern = official_ar
            return re.sub(pattern, repl, s, *a, **k)

    mlqa.re = ReProxy()
    assert mlqa.normalize_answer("البيت", "ar") == "بيت" and seen["ar"] == 1

    tasks = lm_root / "lm_eval/tasks"
    mods = {
        "xcopa": import_path("lm_eval_xcopa_utils", tasks / "xcopa/utils.py"),
        "copa": import_path("lm_eval_copa_utils", tasks / "super_glue/copa/utils.py"),
        "okapi_tqa": import_path("lm_eval_okapi_tqa", tasks / "okapi/truthfulqa_multilingual/utils.py"),
    }
    return types.SimpleNamespace(squad=squad, mlqa=mlqa, lm_utils=lm_utils, lm_task=lm_task, tasks=tasks, mods=mods)


# ----------------------------------------------------------------------------------------------
# MKQA reference (not on any registry; implemented from the published description)
# ----------------------------------------------------------------------------------------------
MKQA_ARTICLES = {"en": r"\b(a|an|the)\b", "vi": r"\b(của|là|cái|chiếc|những)\b", "ar": "\\sال^|ال"}
MKQA_CHAR_LANGS = {"zh_cn", "zh_hk", "zh_tw", "ja", "th", "km"}


def mkqa_normalize(text: str, lang: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    if lang in MKQA_ARTICLES:
        text = re.sub(MKQA_ARTICLES[lang], " ", text)
    tokens = list(text) if lang in MKQA_CHAR_LANGS else text.split()
    return " ".join(t for t in tokens if t.strip() != "")


def mkqa_f1(pred: str, gold: str, lang: str) -> float:
    gold_toks = mkqa_normalize(gold, lang).split() if gold else []
    pred_toks = mkqa_normalize(pred, lang).split() if pred else []
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if same == 0:
        return 0.0
    recall, precision = same / len(gold_toks), same / len(pred_toks)
    return 2.0 * precision * recall / (precision + recall)


def mkqa_em(pred: str, gold: str, lang: str) -> float:
    return float(mkqa_normalize(pred, lang) == mkqa_normalize(gold, lang))


# ----------------------------------------------------------------------------------------------
# QA F1 / EM fixtures
# ----------------------------------------------------------------------------------------------
def read_squad_answers(path: Path, limit: int) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = [a["text"] for art in data for p in art["paragraphs"] for qa in p["qas"] for a in qa["answers"]]
    return out[:limit]


def strip_marks(s: str) -> str:
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c)))


def perturbations(g: str, other: str, lang: str, rng: random.Random) -> list[str]:
    words = g.split()
    out = [g, g.upper(), "the " + g, "The " + g + ".", "  " + g + " \n ", g + "。", "「" + g + "」",
           "“" + g + "”", "（" + g + "）", g + "，" + other, other, g + " " + other, g[: max(1, len(g) // 2)],
           " ".join(words[: max(1, len(words) // 2)]), g + "abc北京", "a " + g, ""]
    if lang == "ar":
        out += ["ال" + g, g.replace("ال", ""), "و" + g, g + " في البيت"]
    if lang == "vi":
        out += [strip_marks(g), unicodedata.normalize("NFD", g), "của " + g, "những " + g + " là"]
    if lang == "zh":
        out += [g.replace("·", " "), g + "年", "北京" + g, "".join(rng.sample(list(g), len(g)))]
    return out


ADVERSARIAL = [
    ("", [""]), (" ", [""]), ("the", [""]), ("!!!", [""]), ("", ["x"]), ("x", [""]), ("", ["the"]),
    ("Tháng Mười", ["tháng mười"]), ("cái bàn", ["bàn"]), ("những người", ["người"]), ("của", ["là"]),
    ("chiếc xe của tôi", ["xe tôi"]), ("Việt Nam", ["Viet Nam"]), ("Hà Nội, Việt Nam", ["Hà Nội"]),
    ("الكتاب", ["كتاب"]), ("كتابال", ["كتاب"]), ("المدينة المنورة", ["مدينة منورة"]), ("في البيت", ["البيت"]),
    ("ال", [""]), ("الال", ["ال"]), ("مصر.", ["مصر"]), ("«القاهرة»", ["القاهرة"]), ("١٩٩٠", ["1990"]),
    ("北京大学", ["北京"]), ("北京，大学", ["北京大学"]), ("２０１９年", ["2019年"]), ("iPhone手机", ["iphone 手机"]),
    ("《红楼梦》", ["红楼梦"]), ("㐀𠀀", ["㐀"]), ("龥龦", ["龥"]), ("北京 ABC-def", ["北京abc def"]),
    ("U.S.A.", ["USA"]), ("rock‐n‐roll", ["rock n roll"]), ("“quoted”", ["quoted"]), ("¿Qué?", ["qué"]),
    ("a_b", ["ab"]), ("$100", ["100"]), ("100€", ["100"]), ("x\u00a0y", ["x y"]), ("x\u3000y", ["x y"]),
    ("x\u001cy", ["x y"]), ("x\u200by", ["xy"]), ("İstanbul", ["istanbul"]), ("ΣΑΣ", ["σας"]), ("ǅ", ["ǆ"]),
    ("an apple", ["apple"]), ("The the the", [""]), ("theatre", ["the atre"]), ("a1", ["1"]), ("a-b", ["b"]),
    ("don't", ["dont"]), ("a a b b b", ["b b a"]), ("x x x", ["x"]), ("A.", ["a"]), ("an", ["a"]),
    ("the_cat", ["cat"]), ("a² b", ["b"]), ("a\u0301 b", ["b"]), ("ﬁne", ["fine"]), ("…", [""]),
    ("x—y", ["x y"]), ("x–y", ["xy"]), ("『书名』", ["书名"]), ("【注】", ["注"]), ("Paris", ["paris", "Paris, France", ""]),
    ("1,000", ["1000", "1 000"]), ("3.14", ["314"]), ("tab\tsep", ["tab sep"]), ("line\nbreak", ["line break"]),
]

NORMS = [("squad", None)] + [(f"mlqa_{l}", l) for l in LANGS] + [(f"mkqa_{l}", l) for l in LANGS]
MKQA_CODE = {"en": "en", "zh": "zh_cn", "vi": "vi", "ar": "ar"}


def qa_scores(off, pred: str, golds: list[str]) -> dict:
    res = {}
    for name, lang in NORMS:
        if name == "squad":
            f1 = off.squad.metric_max_over_ground_truths(off.squad.f1_score, pred, golds)
            em = off.squad.metric_max_over_ground_truths(off.squad.exact_match_score, pred, golds)
            norm = off.squad.normalize_answer(pred)
        elif name.startswith("mlqa"):
            f1 = off.mlqa.metric_max_over_ground_truths(off.mlqa.f1_score, pred, golds, lang)
            em = off.mlqa.metric_max_over_ground_truths(off.mlqa.exact_match_score, pred, golds, lang)
            norm = off.mlqa.normalize_answer(pred, lang)
        else:
            code = MKQA_CODE[lang]
            f1 = max(mkqa_f1(pred, g, code) for g in golds)
            em = max(mkqa_em(pred, g, code) for g in golds)
            norm = mkqa_normalize(pred, code)
        res[name] = {"f1": float(f1), "em": float(em), "norm": norm}
    return res


def qa_fixture(off, data: Path, rng: random.Random) -> dict:
    sources = {}
    for l in LANGS:
        x = data / "xquad" / (f"xquad.{l}.json" if l == "en" else f"xquad.{l}.sample.json")
        sources[f"xquad.{l}"] = (l, read_squad_answers(x, 4))
        sources[f"mlqa.{l}"] = (l, read_squad_answers(data / "mlqa" / f"dev-context-{l}-question-{l}.sample.json", 4))
    for code, l in [("en", "en"), ("zh_cn", "zh"), ("ar", "ar")]:
        rows = [json.loads(x) for x in (data / "mkqa" / f"mkqa-{code}.sample.jsonl").read_text(encoding="utf-8").splitlines()]
        sources[f"mkqa.{code}"] = (l, [a for r in rows[:40] for a in r["answers"]][:4])
    cases = []
    for src, (lang, golds) in sources.items():
        for i, g in enumerate(golds):
            other = golds[(i + 1) % len(golds)]
            for pred in perturbations(g, other, lang, rng):
                gs = [g] if rng.random() < 0.7 else [g, other]
                cases.append({"source": src, "pred": pred, "golds": gs})
    for pred, golds in ADVERSARIAL:
        cases.append({"source": "adversarial", "pred": pred, "golds": golds})
    for c in cases:
        c["scores"] = qa_scores(off, c["pred"], c["golds"])
    return {"norms": [n for n, _ in NORMS], "cases": cases}


# ----------------------------------------------------------------------------------------------
# chrF++ / BLEU fixtures
# ----------------------------------------------------------------------------------------------
FLORES = {"en": "eng_Latn", "zh": "zho_Hans", "vi": "vie_Latn", "ar": "arb_Arab"}


def perturb_sentence(s: str, rng: random.Random) -> str:
    words = s.split()
    op = rng.randrange(7)
    if op == 0 and len(words) > 3:
        del words[rng.randrange(len(words))]
    elif op == 1 and len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif op == 2:
        return s.lower()
    elif op == 3:
        return re.sub(r"[.,!?;:]", "", s)
    elif op == 4:
        words = words + words[: 2]
    elif op == 5 and len(s) > 6:
        i = rng.randrange(len(s) - 3)
        return s[:i] + s[i + 3:]
    return " ".join(words)


EDGE_CORPORA = [
    (["abc"], ["abc"]), ([""], ["abc"]), (["abc"], [""]), (["a"], ["a"]), (["the cat"], ["the cat sat"]),
    (["a &amp; b &lt;c&gt; &quot;d&quot;"], ["a & b <c> \"d\""]), (["x <skipped> y"], ["x y"]),
    (["well-\nknown 3.5-4 1,000.5 x.y, z"], ["wellknown 3.5 - 4 1,000.5 x . y , z"]),
    (["(hi) 'quote' \"dq\" a/b"], ["( hi ) ' quote ' \" dq \" a / b"]), (["  padded   spaces  "], ["padded spaces"]),
    (["我们是 ok 的。"], ["我们是ok的。"]), (["２０１９年，北京"], ["2019年,北京"]), (["“引号”—破折号…"], ["引号破折号"]),
    (["x\u3000y\u00a0z"], ["x y z"]), (["ΣΑΣ İ"], ["σας i"]), (["one two three four five"], ["five four three two one"]),
    (["a b c d", "e f"], ["a b c d", "e f g h"]), (["a", "b", "c"], ["x", "y", "z"]),
]


def mt_scores(hyps: list[str], refs: list[str]) -> dict:
    bleu = BLEU().corpus_score(hyps, [refs])
    bleu_zh = BLEU(tokenize="zh").corpus_score(hyps, [refs])
    return {
        "chrf_pp": CHRF(word_order=2).corpus_score(hyps, [refs]).score,
        "chrf": CHRF().corpus_score(hyps, [refs]).score,
        "bleu": bleu.score,
        "bleu_counts": list(bleu.counts),
        "bleu_totals": list(bleu.totals),
        "bleu_sys_len": bleu.sys_len,
        "bleu_ref_len": bleu.ref_len,
        "bleu_zh": bleu_zh.score,
    }


def mt_fixture(data: Path, rng: random.Random) -> dict:
    lines = {l: (data / "flores200" / f"{code}.devtest.sample").read_text(encoding="utf-8").splitlines() for l, code in FLORES.items()}
    corpora = []
    for l in LANGS:
        refs = lines[l][:60]
        corpora.append({"name": f"{l}-perturbed", "hyps": [perturb_sentence(s, rng) for s in refs], "refs": refs})
        corpora.append({"name": f"{l}-shifted", "hyps": lines[l][1:21], "refs": lines[l][:20]})
        for i in range(12):
            corpora.append({"name": f"{l}-sentence-{i}", "hyps": [perturb_sentence(lines[l][60 + i], rng)], "refs": [lines[l][60 + i]]})
    corpora.append({"name": "en-vs-vi", "hyps": lines["en"][:20], "refs": lines["vi"][:20]})
    for i, (h, r) in enumerate(EDGE_CORPORA):
        corpora.append({"name": f"edge-{i}", "hyps": h, "refs": r})
    for c in corpora:
        c["scores"] = mt_scores(c["hyps"], c["refs"])
    tok_inputs = [s for l in LANGS for s in lines[l][:10]] + [h for c in EDGE_CORPORA for h in c[0]]
    tok13a, tokzh = Tokenizer13a(), TokenizerZh()
    tokens = [{"text": t, "13a": tok13a(t.rstrip()), "zh": tokzh(t.rstrip())} for t in tok_inputs]
    zh_ranges = ranges(lambda c: TokenizerZh._is_chinese_char(c))
    return {"corpora": corpora, "tokenizer": tokens, "sacrebleu_zh_char_ranges": zh_ranges}


# ----------------------------------------------------------------------------------------------
# Python's Unicode tables that the metrics depend on
# ----------------------------------------------------------------------------------------------
def ranges(pred) -> list[list[int]]:
    out, start = [], None
    for i in range(sys.maxunicode + 1):
        ok = pred(chr(i))
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            out.append([start, i - 1])
            start = None
    if start is not None:
        out.append([start, sys.maxunicode])
    return out


def unicode_fixture(off) -> dict:
    return {
        "python": sys.version.split()[0],
        "unidata_version": unicodedata.unidata_version,
        "mlqa_punct": ranges(lambda c: c in off.mlqa.PUNCT),
        "word": ranges(lambda c: c.isalnum() or c == "_"),
        "space": ranges(lambda c: c.isspace()),
        "unassigned": ranges(lambda c: unicodedata.category(c) == "Cn"),
    }


# ----------------------------------------------------------------------------------------------
# lm-eval acc / acc_norm and prompts
# ----------------------------------------------------------------------------------------------
def mc_fixture(off, rng: random.Random) -> dict:
    cases = []
    choice_sets = [["A", "B", "C", "D"], ["是的", "abcd", "không", "نعم"], ["x", "longer choice", "mid"],
                   [" lead", "trail ", "é"], ["一二三四五六", "abcdef"]]
    for k in range(60):
        choices = choice_sets[k % len(choice_sets)]
        gold = rng.randrange(len(choices))
        if k % 7 == 0:
            lls = [-1.0] * len(choices)  # ties
        else:
            lls = [round(-rng.uniform(0.1, 30.0), 3) for _ in choices]
        fake = types.SimpleNamespace(
            config=types.SimpleNamespace(process_results=None),
            _metric_fn_list={"acc": None, "acc_norm": None, "acc_bytes": None},
            OUTPUT_TYPE="multiple_choice",
            doc_to_choice=lambda doc: doc["choices"],
            doc_to_target=lambda doc: doc["gold"],
            multiple_input=False,
            multiple_target=False,
        )
        doc = {"choices": choices, "gold": gold}
        res = off.lm_task.ConfigurableTask.process_results(fake, doc, [(ll, False) for ll in lls])
        cases.append({"choices": choices, "gold": gold, "lls": lls, "acc": res["acc"], "acc_norm": res["acc_norm"],
                      "acc_bytes": res["acc_bytes"]})
    return {"cases": cases}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))


def task_yaml(off, rel: str) -> dict:
    path = off.tasks / rel
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    if "include" in cfg:
        base = task_yaml(off, str(Path(rel).parent / cfg["include"]))
        base.update({k: v for k, v in cfg.items() if k != "include"})
        cfg = base
    return cfg


def render(off, template: str, doc: dict) -> str:
    return off.lm_utils.apply_template(template, doc)


def render_choices(off, template, doc: dict) -> list[str]:
    if isinstance(template, list):
        return template
    import ast
    return ast.literal_eval(render(off, template, doc))


def prompt_fixture(off, data: Path) -> dict:
    items = []

    def add(task, lang, file, index, doc, context, choices, gold):
        items.append({"task": task, "lang": lang, "file": file, "index": index, "doc": doc,
                      "context": context, "choices": choices, "gold": gold})

    for l in LANGS:
        cfg = task_yaml(off, f"xnli/xnli_{l}.yaml")
        file = f"xnli/dev-{l}.sample.tsv"
        for i, line in enumerate((data / file).read_text(encoding="utf-8").splitlines()[:4]):
            premise, hypothesis, label = line.split("\t")
            doc = {"premise": premise, "hypothesis": hypothesis, "label": ["entailment", "neutral", "contradiction"].index(label)}
            add("xnli", l, file, i, doc, render(off, cfg["doc_to_text"], doc), render_choices(off, cfg["doc_to_choice"], doc), doc["label"])
    for l in ["en", "zh", "vi"]:
        file = f"xcopa/val.{l}.jsonl"
        for i, line in enumerate((data / file).read_text(encoding="utf-8").splitlines()[:6]):
            doc = json.loads(line)
            text = off.mods["copa"].doc_to_text(doc) if l == "en" else getattr(off.mods["xcopa"], f"doc_to_text_{l}")(doc)
            add("xcopa", l, file, i, doc, text, off.mods["xcopa"].doc_to_choice(doc), doc["label"])
    cfg = task_yaml(off, "xstorycloze/default_ar.yaml")
    for l in ["en", "zh", "ar"]:
        file = f"xstorycloze/spring2016.val.{l}.tsv.split_20_80_train.tsv"
        rows = (data / file).read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(rows[1:4]):
            c = line.split("\t")
            doc = {"input_sentence_1": c[1], "input_sentence_2": c[2], "input_sentence_3": c[3], "input_sentence_4": c[4],
                   "sentence_quiz1": c[5], "sentence_quiz2": c[6], "answer_right_ending": int(c[7])}
            gold = int(render(off, cfg["doc_to_target"], doc))
            add("xstorycloze", l, file, i, doc, render(off, cfg["doc_to_text"], doc), render_choices(off, cfg["doc_to_choice"], doc), gold)
    cfg = task_yaml(off, "truthfulqa/truthfulqa_mc1.yaml")
    file = "truthfulqa/en/data/v0/mc_task.json"
    for i, row in enumerate(json.loads((data / file).read_text(encoding="utf-8"))[:3]):
        doc = {"question": row["question"], "mc1_targets": {"choices": list(row["mc1_targets"]), "labels": list(row["mc1_targets"].values())}}
        add("truthfulqa", "en", file, i, doc, render(off, cfg["doc_to_text"], doc), render_choices(off, cfg["doc_to_choice"], doc), cfg["doc_to_target"])
    tqa = off.mods["okapi_tqa"]
    for l in ["zh", "vi", "ar"]:
        file = f"truthfulqa/m_truthfulqa/{l}_validation.sample.json"
        for i, row in enumerate(json.loads((data / file).read_text(encoding="utf-8"))[:3]):
            query = tqa.QA_PROMPT + "\n\nQ: " + tqa.preprocess(row["question"]) + "\nA:"
            add("truthfulqa", l, file, i, {"question": row["question"]}, query, row["mc1_targets_choices"], 0)
    cfg = task_yaml(off, "mmlu/default/mmlu_abstract_algebra.yaml")
    file = "mmlu/en/dev/abstract_algebra_dev.csv"
    import csv
    with open(data / file, encoding="utf-8", newline="") as f:
        for i, r in enumerate(list(csv.reader(f))[:3]):
            doc = {"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5])}
            add("mmlu", "en", file, i, doc, render(off, cfg["doc_to_text"], doc), cfg["doc_to_choice"], doc["answer"])
    cfg = task_yaml(off, "okapi/mmlu_multilingual/m_mmlu_zh.yaml")
    for l in ["zh", "vi", "ar"]:
        file = f"mmlu/m_mmlu/{l}_dev.json"
        for i, doc in enumerate(json.loads((data / file).read_text(encoding="utf-8"))[:3]):
            choices = cfg["doc_to_choice"]
            add("mmlu", l, file, i, doc, render(off, cfg["doc_to_text"], doc), choices, choices.index(doc["answer"]))
    cfg = task_yaml(off, "mlqa/mlqa_en_en.yaml")
    for l in LANGS:
        file = f"mlqa/dev-context-{l}-question-{l}.sample.json"
        art = json.loads((data / file).read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]
        doc = {"context": art["context"], "question": art["qas"][0]["question"]}
        add("mlqa", l, file, 0, doc, render(off, cfg["doc_to_text"], doc), [a["text"] for a in art["qas"][0]["answers"]], 0)
    return {"lm_eval": LM_EVAL, "items": items}


def dump(obj: dict) -> str:
    """JSON with one list element per line (compact, yet diffable)."""
    parts = []
    for k, v in obj.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            body = ",\n  ".join(json.dumps(x, ensure_ascii=False) for x in v)
            parts.append(f"{json.dumps(k)}: [\n  {body}\n ]")
        else:
            parts.append(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}")
    return "{\n " + ",\n ".join(parts) + "\n}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "eval")
    ap.add_argument("--out", type=Path, default=REPO / "crates" / "dft-eval" / "tests" / "fixtures")
    default_cache = Path(os.environ.get("DFT_CACHE", REPO / ".cache")) / "oracle-wheels"
    ap.add_argument("--cache", type=Path, default=default_cache)
    args = ap.parse_args()
    off = load_official(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    fixtures = {
        "qa_f1.json": qa_fixture(off, args.data, random.Random(0)),
        "mt_metrics.json": mt_fixture(args.data, random.Random(1)),
        "python_unicode.json": unicode_fixture(off),
        "mc_acc.json": mc_fixture(off, random.Random(2)),
        "lm_eval_prompts.json": prompt_fixture(off, args.data),
    }
    for name, obj in fixtures.items():
        obj = {"generated_by": "tools/oracle/metric_fixtures.py", **obj}
        (args.out / name).write_text(dump(obj) + "\n", encoding="utf-8")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
