#!/usr/bin/env python3
"""Reference scores for dft-eval's scoring engine: SmolLM2-135M-Instruct (the GGUF, loaded by
transformers in f32 with eager attention) run through lm-evaluation-harness 0.4.13's own HFLM.

Writes crates/dft-eval/tests/fixtures/smollm2_eval.json:
  items       multiple-choice items of xnli, xcopa, xstorycloze, truthfulqa (MC1) and mmlu in zh and
              en (the first --zh / --en items of each sample file, in the order dft-eval's loaders
              return them): context and choices rendered with lm-eval's task templates, and per choice
              lm-eval's request tokens (`TemplateLM.loglikelihood` / `_encode_pair`), summed
              log-likelihood and is_greedy from `HFLM._loglikelihood_tokens` — with lm-eval's
              default float32 log-softmax (`loglik`) and with `softmax_dtype=float64` (`loglik_f64`).
  generation  greedy continuations of XQuAD / MKQA prompts: the prompt ids, transformers'
              `generate(do_sample=False, max_new_tokens=N)` ids (stopping only at EOS) and the text of
              lm-eval's `HFLM.generate_until` with `until: ["\\n"]`.

Usage:  python tools/oracle/eval_fixtures.py [--gguf PATH] [--data DIR]
        [--zh 16] [--en 10] [--gen 2]
        (the committed fixture: these defaults, 130 items / 430 choices and 8 prompts; ~30 min of
        CPU on a busy 2-core machine)
  --gguf   default: $DFT_SMOLLM2_GGUF or .cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  --data   the eval data folder (default: ../shared/data/eval beside the repository)
Needs torch, transformers, gguf, numpy, pyyaml, jinja2, sacrebleu (tools/oracle/requirements.txt);
lm_eval==0.4.13 is fetched as a wheel by metric_fixtures.py's `fetch_wheel` (never installed).
"""
from __future__ import annotations

import argparse
import csv
import importlib.machinery
import json
import os
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

torch.set_grad_enabled(False)
torch.manual_seed(0)


def import_lm_eval(cache: Path):
    """lm-eval's HFLM and Instance from the pinned wheel, plus metric_fixtures' template helpers."""
    import metric_fixtures as mf

    lm_root = mf.fetch_wheel(mf.LM_EVAL, cache)
    # lm-eval imports `datasets` at module level for what we do not call; a stub with a spec suffices.
    stub = types.ModuleType("datasets")
    stub.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    stub.Dataset = type("Dataset", (), {})
    sys.modules.setdefault("datasets", stub)
    sys.path.insert(0, str(lm_root))
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    real_dill = sys.modules.get("dill")
    off = mf.load_official(cache)
    if real_dill is None and "dill" in sys.modules and not hasattr(sys.modules["dill"], "extend"):
        del sys.modules["dill"]  # metric_fixtures' stub would break torch's lazy dill import
    return mf, off, HFLM, Instance


# ----------------------------------------------------------------------------------------------
# Items, in dft-eval's loader order, rendered with lm-eval's templates
# ----------------------------------------------------------------------------------------------
def build_items(mf, off, data: Path, lang: str, n: int) -> list[dict]:
    items = []

    def add(task, file, index, context, choices, gold):
        items.append({"task": task, "lang": lang, "file": file, "index": index,
                      "context": context, "choices": list(choices), "gold": gold})

    # XNLI: headerless premise \t hypothesis \t label.
    cfg = mf.task_yaml(off, f"xnli/xnli_{lang}.yaml")
    file = f"xnli/dev-{lang}.sample.tsv"
    lines = [l for l in (data / file).read_text(encoding="utf-8").splitlines() if l.strip()]
    for i, line in enumerate(lines[:n]):
        premise, hypothesis, label = line.split("\t")
        doc = {"premise": premise, "hypothesis": hypothesis,
               "label": ["entailment", "neutral", "contradiction"].index(label)}
        add("xnli", file, i, mf.render(off, cfg["doc_to_text"], doc), mf.render_choices(off, cfg["doc_to_choice"], doc),
            doc["label"])
    # XCOPA (English: lm-eval's COPA).
    file = f"xcopa/val.{lang}.jsonl"
    lines = [l for l in (data / file).read_text(encoding="utf-8").splitlines() if l.strip()]
    for i, line in enumerate(lines[:n]):
        doc = json.loads(line)
        text = off.mods["copa"].doc_to_text(doc) if lang == "en" else getattr(off.mods["xcopa"], f"doc_to_text_{lang}")(doc)
        add("xcopa", file, i, text, off.mods["xcopa"].doc_to_choice(doc), doc["label"])
    # XStoryCloze: header row, then InputStoryid, 4 sentences, 2 endings, answer.
    cfg = mf.task_yaml(off, f"xstorycloze/default_{lang}.yaml")
    file = f"xstorycloze/spring2016.val.{lang}.tsv.split_20_80_train.tsv"
    rows = [l for l in (data / file).read_text(encoding="utf-8").splitlines() if l.strip()]
    for i, line in enumerate(rows[1:n + 1]):
        c = line.split("\t")
        doc = {"input_sentence_1": c[1], "input_sentence_2": c[2], "input_sentence_3": c[3],
               "input_sentence_4": c[4], "sentence_quiz1": c[5], "sentence_quiz2": c[6],
               "answer_right_ending": int(c[7])}
        gold = int(mf.render(off, cfg["doc_to_target"], doc))
        add("xstorycloze", file, i, mf.render(off, cfg["doc_to_text"], doc),
            mf.render_choices(off, cfg["doc_to_choice"], doc), gold)
    # TruthfulQA MC1: lm-eval's truthfulqa_mc1 (en) / Okapi's multilingual utils (zh).
    if lang == "en":
        cfg = mf.task_yaml(off, "truthfulqa/truthfulqa_mc1.yaml")
        file = "truthfulqa/en/data/v0/mc_task.json"
        for i, row in enumerate(json.loads((data / file).read_text(encoding="utf-8"))[:n]):
            doc = {"question": row["question"],
                   "mc1_targets": {"choices": list(row["mc1_targets"]), "labels": list(row["mc1_targets"].values())}}
            add("truthfulqa", file, i, mf.render(off, cfg["doc_to_text"], doc),
                mf.render_choices(off, cfg["doc_to_choice"], doc), cfg["doc_to_target"])
    else:
        tqa = off.mods["okapi_tqa"]
        file = f"truthfulqa/m_truthfulqa/{lang}_validation.sample.json"
        for i, row in enumerate(json.loads((data / file).read_text(encoding="utf-8"))[:n]):
            query = tqa.QA_PROMPT + "\n\nQ: " + tqa.preprocess(row["question"]) + "\nA:"
            add("truthfulqa", file, i, query, row["mc1_targets_choices"], 0)
    # MMLU: lm-eval's mmlu/default template (en dev CSVs, subjects in name order) / Okapi m_mmlu.
    if lang == "en":
        cfg = mf.task_yaml(off, "mmlu/default/mmlu_abstract_algebra.yaml")
        k = 0
        for path in sorted((data / "mmlu/en/dev").glob("*_dev.csv")):
            with open(path, encoding="utf-8", newline="") as f:
                for r in csv.reader(f):
                    if k >= n:
                        break
                    doc = {"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5])}
                    add("mmlu", str(path.relative_to(data)), k, mf.render(off, cfg["doc_to_text"], doc),
                        cfg["doc_to_choice"], doc["answer"])
                    k += 1
    else:
        cfg = mf.task_yaml(off, f"okapi/mmlu_multilingual/m_mmlu_{lang}.yaml")
        file = f"mmlu/m_mmlu/{lang}_dev.json"
        for i, doc in enumerate(json.loads((data / file).read_text(encoding="utf-8"))[:n]):
            choices = cfg["doc_to_choice"]
            add("mmlu", file, i, mf.render(off, cfg["doc_to_text"], doc), choices, choices.index(doc["answer"]))
    return items


def score_items(lm, Instance, items: list[dict]) -> None:
    """Fills each item's `requests` with lm-eval's tokens, log-likelihood and is_greedy.

    Each item runs through `HFLM.loglikelihood` twice on the same logits (`_model_call` is memoised
    per item): with lm-eval's default float32 log-softmax (`loglik`) and with its
    `softmax_dtype=float64` option (`loglik_f64`), the latter free of float32 rounding in the
    49k-term softmax sum (~1e-5 per token).
    """
    original_call, original_tokens = lm._model_call, lm._loglikelihood_tokens
    memo, captured = {}, []

    def model_call(inps, attn_mask=None, labels=None):
        key = (tuple(inps.shape), inps.numpy().tobytes())
        if key not in memo:
            memo[key] = original_call(inps, attn_mask=attn_mask, labels=labels)
        return memo[key]

    def capture(reqs, **kw):
        captured.extend(reqs)
        return original_tokens(reqs, **kw)

    lm._model_call = model_call
    for it in items:
        reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(it["context"], " " + c), idx=0)
                for c in it["choices"]]
        captured.clear()
        lm._loglikelihood_tokens = capture
        lm.softmax_dtype = None
        res32 = lm.loglikelihood(reqs, disable_tqdm=True)
        lm._loglikelihood_tokens = original_tokens
        lm.softmax_dtype = torch.float64
        res64 = lm.loglikelihood(reqs, disable_tqdm=True)
        memo.clear()
        it["requests"] = []
        for (_, ctx_enc, cont_enc), (ll, greedy), (ll64, _) in zip(captured, res32, res64, strict=True):
            it["requests"].append({"context_ids": list(ctx_enc), "continuation_ids": list(cont_enc),
                                   "loglik": float(ll), "loglik_f64": float(ll64), "is_greedy": bool(greedy)})
        for key, field in [("pred", "loglik"), ("pred_f64", "loglik_f64")]:
            lls = [r[field] for r in it["requests"]]
            it[key] = max(range(len(lls)), key=lambda i: (lls[i], -i))  # numpy.argmax: first maximum
    lm._model_call, lm.softmax_dtype = original_call, None


def generation_prompts(data: Path, n: int) -> list[dict]:
    """XQuAD (zh, en) and MKQA (zh, en) prompts, as dft-eval's loaders build them."""
    out = []
    for lang, file in [("zh", "xquad/xquad.zh.sample.json"), ("en", "xquad/xquad.en.json")]:
        d = json.loads((data / file).read_text(encoding="utf-8"))["data"]
        qas = [(p["context"], qa) for art in d for p in art["paragraphs"] for qa in p["qas"]]
        for i, (ctx, qa) in enumerate(qas[:n]):
            out.append({"task": "xquad", "lang": lang, "file": file, "index": i, "id": qa["id"],
                        "prompt": f"Context: {ctx}\n\nQuestion: {qa['question']}\n\nAnswer:"})
    for lang, code in [("zh", "zh_cn"), ("en", "en")]:
        file = f"mkqa/mkqa-{code}.sample.jsonl"
        lines = [l for l in (data / file).read_text(encoding="utf-8").splitlines() if l.strip()]
        for i, line in enumerate(lines[:n]):
            row = json.loads(line)
            q = row.get("question") or row.get("query")
            out.append({"task": "mkqa", "lang": lang, "file": file, "index": i, "id": str(row.get("id")),
                        "prompt": f"Question: {q}\n\nAnswer:"})
    return out


def greedy(model, tok, lm, prompts: list[dict], max_new: int) -> None:
    eos = model.generation_config.eos_token_id
    for p in prompts:
        ids = tok(p["prompt"], return_tensors="pt").input_ids
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
                             num_beams=1, eos_token_id=eos, pad_token_id=eos)
        p["prompt_ids"] = ids[0].tolist()
        p["greedy_ids"] = out[0, ids.shape[1]:].tolist()
        req = types.SimpleNamespace(args=(p["prompt"], {"until": ["\n"], "do_sample": False, "max_gen_toks": max_new}))
        p["lm_eval_text"] = lm.generate_until([req], disable_tqdm=True)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_gguf = os.environ.get("DFT_SMOLLM2_GGUF", str(REPO / ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gguf", type=Path, default=Path(default_gguf))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "eval")
    ap.add_argument("--out", type=Path, default=REPO / "crates/dft-eval/tests/fixtures/smollm2_eval.json")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("DFT_CACHE", REPO / ".cache")) / "oracle-wheels")
    ap.add_argument("--zh", type=int, default=16, help="items per task in Chinese")
    ap.add_argument("--en", type=int, default=10, help="items per task in English")
    ap.add_argument("--gen", type=int, default=2, help="generation prompts per task and language")
    ap.add_argument("--max-new", type=int, default=24)
    args = ap.parse_args()

    mf, off, HFLM, Instance = import_lm_eval(args.cache)
    t0 = time.time()
    d, name = str(args.gguf.parent), args.gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    print(f"loaded in {time.time() - t0:.1f}s; prefix_token_id={lm.prefix_token_id}", flush=True)

    items = build_items(mf, off, args.data, "zh", args.zh) + build_items(mf, off, args.data, "en", args.en)
    t0 = time.time()
    score_items(lm, Instance, items)
    print(f"{len(items)} items scored in {time.time() - t0:.1f}s", flush=True)
    prompts = generation_prompts(args.data, args.gen)
    t0 = time.time()
    greedy(model, tok, lm, prompts, args.max_new)
    print(f"{len(prompts)} prompts generated in {time.time() - t0:.1f}s", flush=True)

    fixture = {
        "generated_by": "tools/oracle/eval_fixtures.py",
        "model": name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lm_eval": mf.LM_EVAL,
        "prefix_token_id": lm.prefix_token_id,
        "max_new_tokens": args.max_new,
        "items": items,
        "generation": prompts,
    }
    args.out.write_text(mf.dump(fixture) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
