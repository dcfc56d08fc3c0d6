#!/usr/bin/env python3
"""Reference scores for dft-eval's scoring engine: SmolLM2-135M-Instruct (the GGUF, loaded by
transformers in f32 with eager attention) run through lm-evaluation-harness 0.4.13's own HFLM.

Writes crates/dft-eval/tests/fixtures/smollm2_eval.json (skipped with --only flores):
  items       multiple-choice items of xnli, xcopa, xstorycloze, truthfulqa (MC1) and mmlu in zh and
              en (the first --zh / --en items of each sample file, in the order dft-eval's loaders
              return them): context and choices rendered with lm-eval's task templates, and per choice
              lm-eval's request tokens (`TemplateLM.loglikelihood` / `_encode_pair`), summed
              log-likelihood and is_greedy from `HFLM._loglikelihood_tokens` — with lm-eval's
              default float32 log-softmax (`loglik`) and with `softmax_dtype=float64` (`loglik_f64`).
  generation  greedy continuations of XQuAD / MKQA prompts: the prompt ids, transformers'
              `generate(do_sample=False, max_new_tokens=N)` ids (stopping only at EOS) and the text of
              lm-eval's `HFLM.generate_until` with `until: ["\\n"]`.

and crates/dft-eval/tests/fixtures/smollm2_flores.json (skipped with --only mc), FLORES-200 en–zh
devtest sentences as dft-eval builds them (tasks/flores.rs, prompts.rs `translation_prompt`):
  translation  1-shot prompts (the last devtest line is the example) for the first --mt sentences in
               each direction (en→zh, zh→en): prompt ids and transformers'
               `generate(do_sample=False, max_new_tokens=--mt-max-new)` ids (stopping only at EOS).
  alignment    the first --align pairs: token ids, and per block k = 0..L the cosine (float64) of the
               mean-pooled hidden states of the English sentence and of its translation (matched) and
               of the next pair's translation (mismatched). h_0 = the embedding output, h_k = the
               output of decoder layer k (forward hooks; h_L before the final norm), pooled over the
               tokens that are not special tokens.

Usage:  python tools/oracle/eval_fixtures.py [--gguf PATH] [--data DIR] [--only all|mc|flores]
        [--zh 50] [--en 50] [--gen 2] [--mt 3] [--align 6]
        (the committed fixtures: these defaults — 50 items per multiple-choice task and language
        where the sample has that many (TruthfulQA zh: 40): 490 items / 1,584 choices, 8 QA prompts,
        6 translations, 6 + 6 pairs. On the shared 2-core machine the multiple-choice part took 70 min
        wall / 56 min CPU, the FLORES part 3 min.)
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


# ----------------------------------------------------------------------------------------------
# FLORES-200: translation prompts and pooled hidden states (dft-eval tasks/flores.rs, align.rs)
# ----------------------------------------------------------------------------------------------
FLORES_CODE = {"en": "eng_Latn", "zh": "zho_Hans", "vi": "vie_Latn", "ar": "arb_Arab"}
ENGLISH_NAME = {"en": "English", "zh": "Chinese", "vi": "Vietnamese", "ar": "Arabic"}


def flores_file(data: Path, lang: str) -> Path:
    f = FLORES_CODE[lang]
    for base in [data / "flores200", data]:
        for name in [f"{f}.devtest", f"devtest/{f}.devtest", f"{f}.devtest.sample"]:
            if (base / name).is_file():
                return base / name
    raise FileNotFoundError(f"no FLORES devtest file for {lang} under {data}")


def flores_pairs(data: Path, lang: str) -> list[tuple[int, str, str]]:
    """(line, english, target) of the non-blank pairs, as dft-eval's `read_parallel`."""
    def lines(p):
        ls = [l.rstrip("\r") for l in p.read_text(encoding="utf-8").split("\n")]
        while ls and not ls[-1].strip():
            ls.pop()
        return ls
    en, tgt = lines(flores_file(data, "en")), lines(flores_file(data, lang))
    assert len(en) == len(tgt)
    return [(n, e, t) for n, (e, t) in enumerate(zip(en, tgt)) if e.strip() and t.strip()]


def translation_prompt(src: str, tgt: str, shots: list[tuple[str, str]], source: str) -> str:
    s, t = ENGLISH_NAME[src], ENGLISH_NAME[tgt]
    return "".join(f"{s}: {a}\n{t}: {b}\n\n" for a, b in shots) + f"{s}: {source}\n{t}:"


def translation_prompts(data: Path, lang: str, n: int) -> list[dict]:
    pairs = flores_pairs(data, lang)
    shot, pairs = pairs[-1], pairs[:-1]  # 1-shot from the end of devtest (no dev split in the samples)
    out = []
    for src, tgt in [("en", lang), (lang, "en")]:
        side = lambda l, p: p[1] if l == "en" else p[2]  # noqa: E731
        for p in pairs[:n]:
            out.append({"src": src, "tgt": tgt, "line": p[0], "id": f"flores-{src}-{tgt}/{p[0]}",
                        "prompt": translation_prompt(src, tgt, [(side(src, shot), side(tgt, shot))], side(src, p)),
                        "reference": side(tgt, p)})
    return out


def translate(model, tok, prompts: list[dict], max_new: int) -> None:
    eos = model.generation_config.eos_token_id
    for p in prompts:
        ids = tok(p["prompt"], return_tensors="pt").input_ids
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
                             num_beams=1, eos_token_id=eos, pad_token_id=eos)
        p["prompt_ids"] = ids[0].tolist()
        p["greedy_ids"] = out[0, ids.shape[1]:].tolist()
        p["text"] = tok.decode(p["greedy_ids"], skip_special_tokens=True).split("\n")[0]


def pooled_states(model, tok, text: str):
    """[L + 1, hidden] float64: h_0..h_L (h_L before the final norm) averaged over non-special tokens."""
    enc = tok(text, return_special_tokens_mask=True, return_tensors="pt")
    captured = []
    hooks = [model.model.embed_tokens.register_forward_hook(lambda m, i, o: captured.append(o))]
    for layer in model.model.layers:
        hooks.append(layer.register_forward_hook(
            lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o)))
    try:
        model(input_ids=enc.input_ids, attention_mask=torch.ones_like(enc.input_ids))
    finally:
        for h in hooks:
            h.remove()
    assert len(captured) == len(model.model.layers) + 1
    keep = (enc.special_tokens_mask[0] == 0)
    states = torch.stack([h[0, keep].double().mean(0) for h in captured])
    return enc.input_ids[0].tolist(), states


def alignment_pairs(model, tok, data: Path, lang: str, n: int) -> tuple[list[dict], list[dict]]:
    pairs = flores_pairs(data, lang)[:n + 1]
    pooled = [(pooled_states(model, tok, e), pooled_states(model, tok, t)) for _, e, t in pairs]
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=-1).tolist()  # noqa: E731
    matched, mismatched = [], []
    for i in range(n):
        (en_ids, en), (tgt_ids, tgt) = pooled[i]
        matched.append({"lang": lang, "line": pairs[i][0], "en": pairs[i][1], "tgt": pairs[i][2],
                        "en_ids": en_ids, "tgt_ids": tgt_ids, "cos": cos(en, tgt)})
        other = pooled[i + 1][1][1]
        mismatched.append({"lang": lang, "en_line": pairs[i][0], "tgt_line": pairs[i + 1][0], "cos": cos(en, other)})
    return matched, mismatched


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_gguf = os.environ.get("DFT_SMOLLM2_GGUF", str(REPO / ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gguf", type=Path, default=Path(default_gguf))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "eval")
    ap.add_argument("--out", type=Path, default=REPO / "crates/dft-eval/tests/fixtures/smollm2_eval.json")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("DFT_CACHE", REPO / ".cache")) / "oracle-wheels")
    ap.add_argument("--flores-out", type=Path, default=REPO / "crates/dft-eval/tests/fixtures/smollm2_flores.json")
    ap.add_argument("--only", choices=["all", "mc", "flores"], default="all",
                    help="mc: smollm2_eval.json only; flores: smollm2_flores.json only")
    ap.add_argument("--zh", type=int, default=50, help="items per task in Chinese")
    ap.add_argument("--en", type=int, default=50, help="items per task in English")
    ap.add_argument("--gen", type=int, default=2, help="generation prompts per task and language")
    ap.add_argument("--max-new", type=int, default=24)
    ap.add_argument("--mt", type=int, default=3, help="FLORES sentences per translation direction")
    ap.add_argument("--mt-max-new", type=int, default=20)
    ap.add_argument("--align", type=int, default=6, help="FLORES pairs for the pooled-state cosines")
    args = ap.parse_args()

    t0 = time.time()
    d, name = str(args.gguf.parent), args.gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    print(f"loaded in {time.time() - t0:.1f}s", flush=True)
    if args.only in ("all", "flores"):
        import metric_fixtures as mf
        t0 = time.time()
        prompts = translation_prompts(args.data, "zh", args.mt)
        translate(model, tok, prompts, args.mt_max_new)
        matched, mismatched = alignment_pairs(model, tok, args.data, "zh", args.align)
        fixture = {
            "generated_by": "tools/oracle/eval_fixtures.py",
            "model": name,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "shots": 1,
            "max_new_tokens": args.mt_max_new,
            "num_layers": len(model.model.layers),
            "translation": prompts,
            "alignment": matched,
            "alignment_mismatched": mismatched,
        }
        args.flores_out.write_text(mf.dump(fixture) + "\n", encoding="utf-8")
        print(f"wrote {args.flores_out} in {time.time() - t0:.1f}s", flush=True)
    if args.only == "flores":
        return

    mf, off, HFLM, Instance = import_lm_eval(args.cache)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    print(f"prefix_token_id={lm.prefix_token_id}", flush=True)

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
