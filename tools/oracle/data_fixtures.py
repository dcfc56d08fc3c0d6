#!/usr/bin/env python3
"""Reference token ids and label masks for `dft-data` (crates/dft-data), from the transformers tokenizer.

Run with the pinned oracle venv, from the repository root:

    /work/venvs/oracle/bin/python tools/oracle/data_fixtures.py                 # ids fixture
    /work/venvs/oracle/bin/python tools/oracle/data_fixtures.py --write-tokenizer  # + tokenizer.json

The tokenizer is SmolLM2-135M-Instruct's, as transformers builds it from the GGUF
(`scripts/fetch-smollm2.sh` fetches it; env `DFT_SMOLLM2_GGUF` overrides the path). Without the GGUF,
the committed `smollm2-tokenizer.json` (which `--write-tokenizer` wrote from the GGUF) is used.

What it writes, under crates/dft-data/tests/fixtures/:

  smollm2-tokenizer.json       (--write-tokenizer) `save_pretrained`'s tokenizer.json, minified (same
                               content); Apache-2.0 like the model.
  oracle_smollm2_alpaca.json   ~33 cases on real pairs of data/alpaca_en_zh/train.json: Alpaca prompts
                               with and without input, answers that start with punctuation, truncation
                               (max_len 128), ChatML with and without SmolLM2's default system turn.
                               For each case: the target and English prompt ids, the query-content token
                               spans, and input_ids + labels of the TFT, LC, ET and SFT sequences.

The preprocessing follows stanford_alpaca's `preprocess` (re-implemented here, not copied): tokenize
`prompt + answer + eos_token` as ONE string (truncated to max_len) and mask the first
`len(tokenize(prompt))` labels with -100. dft-data adds one rule: where the prompt's ids are not a
prefix of that joint encoding (the tokenizer merged the prompt's last character with the answer's
first), the sequence is `prompt ids + ids(answer) + [eos]` instead, so that the prompt is an exact
prefix of every sequence built from it. Such cases carry `joint_fallback: true` and also the pure
stanford_alpaca ids (`stanford_input_ids`, `stanford_labels`) for comparison.

Query spans: every prompt token whose character offsets overlap the instruction (resp. input) text.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "crates/dft-data/tests/fixtures"
TOKENIZER_JSON = FIXTURES / "smollm2-tokenizer.json"
OUT = FIXTURES / "oracle_smollm2_alpaca.json"
DATA = ROOT / "data/alpaca_en_zh/train.json"
DEFAULT_GGUF = ROOT / ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
IGNORE = -100

# stanford_alpaca's two prompts (METHOD.md §2), written out here.
WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def load_tokenizer():
    gguf = Path(os.environ.get("DFT_SMOLLM2_GGUF", DEFAULT_GGUF))
    if gguf.exists():
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), f"GGUF {gguf.name}"
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(TOKENIZER_JSON), bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    return tok, TOKENIZER_JSON.name


def write_tokenizer_fixture(tok) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        data = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
    TOKENIZER_JSON.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    print(f"wrote {TOKENIZER_JSON.relative_to(ROOT)}")


def render(template: dict, instruction: str, inp: str, tok) -> tuple[str, tuple[int, int], tuple[int, int] | None]:
    """Prompt text and the character ranges of instruction and input in it."""
    if template["kind"] == "alpaca":
        text = (WITH_INPUT if inp != "" else NO_INPUT).format(instruction=instruction, input=inp)
        head = text.index("### Instruction:\n") + len("### Instruction:\n")
        ins = (head, head + len(instruction))
        inp_range = None
        if inp != "":
            start = ins[1] + len("\n\n### Input:\n")
            inp_range = (start, start + len(inp))
        return text, ins, inp_range
    content = instruction if inp == "" else instruction + "\n\n" + inp
    system = template.get("system")
    if system == SMOLLM2_SYSTEM:
        # SmolLM2's own chat template inserts this system turn: render with it.
        text = tok.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    else:
        head = "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
        text = f"{head}<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
    start = text.index("<|im_start|>user\n") + len("<|im_start|>user\n")
    ins = (start, start + len(instruction))
    inp_range = None if inp == "" else (ins[1] + 2, ins[1] + 2 + len(inp))
    assert text[ins[0] : ins[1]] == instruction
    return text, ins, inp_range


def encode(tok, text: str) -> list[int]:
    # As stanford_alpaca calls the tokenizer (special tokens per the tokenizer's own post-processor;
    # SmolLM2's adds none).
    return tok(text)["input_ids"]


def token_span(offsets, char_range) -> list[int] | None:
    if char_range is None:
        return None
    hits = [i for i, (s, e) in enumerate(offsets) if s < char_range[1] and e > char_range[0]]
    return [hits[0], hits[-1] + 1]


def stanford_sequence(tok, prompt: str, answer: str, max_len: int) -> tuple[list[int], list[int]]:
    """stanford_alpaca: one string, truncated to max_len, first len(ids(prompt)) labels masked."""
    ids = tok(prompt + answer + tok.eos_token, max_length=max_len, truncation=True)["input_ids"]
    n_prompt = len(tok(prompt, max_length=max_len, truncation=True)["input_ids"])
    labels = [IGNORE] * min(n_prompt, len(ids)) + ids[n_prompt:]
    return ids, labels


def sequence(tok, prompt: str, answer: str, max_len: int) -> dict:
    prompt_ids = encode(tok, prompt)
    st_ids, st_labels = stanford_sequence(tok, prompt, answer, max_len)
    untruncated = encode(tok, prompt + answer + tok.eos_token)
    fallback = untruncated[: len(prompt_ids)] != prompt_ids
    if fallback:
        full = prompt_ids + encode(tok, answer) + [tok.eos_token_id]
    else:
        full = untruncated
    truncated = len(full) > max_len
    ids = full[:max_len]
    labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids) :]
    out = {"input_ids": ids, "labels": labels, "joint_fallback": fallback, "truncated": truncated}
    if fallback:
        out["stanford_input_ids"] = st_ids
        out["stanford_labels"] = st_labels
    else:
        assert (ids, labels) == (st_ids, st_labels)
    return out


def pick_cases(records: list[dict]) -> list[dict]:
    """Deterministic picks from train.json (indices are positions in that file)."""
    alpaca = {"kind": "alpaca"}
    cases: list[dict] = []
    used: set[int] = set()

    def take(pred, n, template, max_len=512, why=""):
        for i, r in enumerate(records):
            if n == 0:
                return
            if i in used or not pred(r):
                continue
            used.add(i)
            cases.append({"index": i, "template": template, "max_len": max_len, "why": why})
            n -= 1

    def starts_with_punct(s: str) -> bool:
        return s[:1] in "-\"'(/{[|*#"

    take(lambda r: r["en_input"] == "" and r["zh_input"] == "", 12, alpaca, why="no input")
    take(lambda r: r["en_input"] != "" and r["zh_input"] != "", 10, alpaca, why="with input")
    take(lambda r: starts_with_punct(r["en_output"]), 3, alpaca, why="English answer starts with punctuation")
    take(lambda r: starts_with_punct(r["zh_output"]), 1, alpaca, why="Chinese answer starts with punctuation")
    take(lambda r: len(r["en_output"]) > 600, 2, alpaca, max_len=128, why="truncated at max_len 128")
    take(lambda r: True, 2, {"kind": "chat_ml", "system": SMOLLM2_SYSTEM}, why="ChatML, SmolLM2 system turn")
    take(lambda r: r["zh_input"] != "", 1, {"kind": "chat_ml", "system": SMOLLM2_SYSTEM}, why="ChatML with input")
    take(lambda r: r["zh_input"] != "", 2, {"kind": "chat_ml", "system": None}, why="ChatML, no system turn")
    return cases


def build_case(tok, record: dict, case: dict) -> dict:
    template, max_len = case["template"], case["max_len"]
    tgt_text, tgt_ins, tgt_inp = render(template, record["zh_instruction"], record["zh_input"], tok)
    en_text, en_ins, en_inp = render(template, record["en_instruction"], record["en_input"], tok)
    tgt_enc = tok(tgt_text, return_offsets_mapping=True)
    en_enc = tok(en_text, return_offsets_mapping=True)
    lc_text = record["en_instruction"] + ("\n" + record["en_input"] if record["en_input"] != "" else "")
    return {
        **case,
        "id": str(case["index"]),
        "tgt_prompt_ids": tgt_enc["input_ids"],
        "en_prompt_ids": en_enc["input_ids"],
        "tgt_query": {
            "instruction": token_span(tgt_enc["offset_mapping"], tgt_ins),
            "input": token_span(tgt_enc["offset_mapping"], tgt_inp),
        },
        "en_query": {
            "instruction": token_span(en_enc["offset_mapping"], en_ins),
            "input": token_span(en_enc["offset_mapping"], en_inp),
        },
        "sequences": {
            "tft": sequence(tok, tgt_text, record["zh_output"], max_len),
            "lc": sequence(tok, tgt_text, lc_text, max_len),
            "et": sequence(tok, tgt_text, record["en_output"], max_len),
            "sft": sequence(tok, en_text, record["en_output"], max_len),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-tokenizer", action="store_true", help="also (re)write smollm2-tokenizer.json")
    args = parser.parse_args()

    tok, source = load_tokenizer()
    if args.write_tokenizer:
        write_tokenizer_fixture(tok)
    assert tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
    assert encode(tok, "Hi") == tok("Hi", add_special_tokens=False)["input_ids"], "SmolLM2 adds no BOS"

    records = json.loads(DATA.read_text(encoding="utf-8"))
    cases = [build_case(tok, records[c["index"]], c) for c in pick_cases(records)]
    fallbacks = sum(s["joint_fallback"] for c in cases for s in c["sequences"].values())
    truncated = sum(s["truncated"] for c in cases for s in c["sequences"].values())
    doc = {
        "generator": "tools/oracle/data_fixtures.py",
        "tokenizer": source,
        "data": str(DATA.relative_to(ROOT)),
        "bos": None,
        "eos": tok.eos_token_id,
        "cases": cases,
    }
    lines = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, ensure_ascii=False)[:-1]
    OUT.write_text(f'{head}, "cases": [\n{lines}\n]}}\n', encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(cases)} cases, {fallbacks} joint fallbacks, {truncated} truncated")


if __name__ == "__main__":
    main()
