#!/usr/bin/env python3
"""Reference logit-lens entropies (and latent-English masses) for dft-layers-select, by transformers.

SmolLM2-135M-Instruct is loaded from the same GGUF as dft-rs (dequantised to f32, eager attention);
hidden states h_0..h_L are captured with forward hooks exactly as tools/oracle/model_fixtures.py does
(h_0 = input of block 1, h_k = output of block k, before the final norm) and the lens is
`model.lm_head(model.model.norm(h_k))` in f32. Entropies are computed in f64 from those f32 logits as
logsumexp(z) - sum(softmax(z) * z). Each sentence runs alone (no padding), so the Rust side, which
batches with right padding, is checked against an unpadded reference.

Writes crates/dft-layers-select/tests/fixtures/smollm2_lens.json:
  zh, en: for the first SENTENCES FLORES devtest sentences (/work/shared/data/eval/flores200 sample):
      ids          full token ids of each sentence (the tokenizer check)
      cut          the number of tokens of each sentence that is used: 4, 6, 8, 10, 12, 4, ... (short, to keep
                   the Rust test fast; different lengths so that its padded batches are exercised)
      mean_all     per block k = 0..L: mean entropy (nats) over every position of the cut sentences
      mean_last    per block: mean entropy at the last position of each cut sentence
      sentence0    per block: the per-token entropies of the first (cut) sentence
  latent: the latent-English probe (dft_layers_select::latent) on the first LATENT_PAIRS zh word pairs
      of crates/dft-layers-select/data/word-pairs-zh.tsv: prompts, prompt ids, token sets, and per block
      the mean lens probability of the English set (p_en) and of the target token (p_tgt) at the last
      prompt position.

Usage:  tools/oracle/setup.sh && tools/oracle/.venv/bin/python tools/oracle/lens_fixtures.py [--gguf PATH]
        (PATH defaults to what scripts/fetch-smollm2.sh prints)
Pinned versions (tools/oracle/requirements.txt): torch 2.15.0, transformers 5.24.0, gguf 0.19.0,
tokenizers 0.23.3, safetensors 0.8.0, numpy 2.4.6.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_fixtures import run_with_states  # noqa: E402  (the same hooks as the model fixtures)

OUT = ROOT / "crates" / "dft-layers-select" / "tests" / "fixtures" / "smollm2_lens.json"
FLORES = Path("/work/shared/data/eval/flores200")
SENTENCES = 16
LATENT_PAIRS = 4
SHOTS = 4
LABEL = "中文"
torch.set_grad_enabled(False)


def entropy(z):
    """Entropy (nats) of softmax over the last dim, in f64, from f32 logits."""
    z = z.double()
    return torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)


def lens_logits(model, h):
    return model.lm_head(model.model.norm(h))


def states(model, ids):
    logits, hidden = run_with_states(model, ids, torch.ones_like(ids))
    # Block L through the lens is the model's own output.
    assert torch.allclose(lens_logits(model, hidden[-1]), logits, atol=1e-4), "lens(h_L) != logits"
    return hidden


def cut_len(n):
    return 4 + 2 * (n % 5)


def language_curve(model, tok, code):
    lines = (FLORES / f"{code}.devtest.sample").read_text(encoding="utf-8").splitlines()[:SENTENCES]
    full = [tok(line).input_ids for line in lines]
    cuts = [min(len(ids), cut_len(n)) for n, ids in enumerate(full)]
    per_block_all, per_block_last, sentence0 = None, None, None
    for n, ids in enumerate(full):
        cut = torch.tensor([ids[:cuts[n]]])
        hidden = states(model, cut)
        ent = [entropy(lens_logits(model, h)[0]) for h in hidden]  # per block: [t]
        if per_block_all is None:
            per_block_all = [[] for _ in ent]
            per_block_last = [[] for _ in ent]
            sentence0 = [e.tolist() for e in ent]
        for k, e in enumerate(ent):
            per_block_all[k].extend(e.tolist())
            per_block_last[k].append(e[-1].item())
    mean = lambda xs: sum(xs) / len(xs)
    return {
        "file": f"{code}.devtest.sample",
        "ids": full,
        "cut": cuts,
        "mean_all": [mean(x) for x in per_block_all],
        "mean_last": [mean(x) for x in per_block_last],
        "sentence0": sentence0,
    }


def read_pairs():
    path = ROOT / "crates" / "dft-layers-select" / "data" / "word-pairs-zh.tsv"
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        t, e = line.split("\t")
        pairs.append((t.strip(), e.strip()))
    return pairs


def repetition_prompt(pairs, q):
    shots = min(SHOTS, len(pairs) - 1)
    lines = []
    for d in range(1, shots + 1):
        w = pairs[(q + d) % len(pairs)][0]
        lines.append(f'{LABEL}: "{w}" - {LABEL}: "{w}"')
    lines.append(f'{LABEL}: "{pairs[q][0]}" - {LABEL}: "')
    return "\n".join(lines)


def latent(model, tok):
    # Prompts cycle over the whole list (as the Rust probe does); only the first LATENT_PAIRS are run.
    pairs = read_pairs()
    rows = []
    for q in range(LATENT_PAIRS):
        t, e = pairs[q]
        en = []
        for variant in [e, " " + e]:
            first = tok(variant, add_special_tokens=False).input_ids[0]
            if first not in en:
                en.append(first)
        tgt = [tok(t, add_special_tokens=False).input_ids[0]]
        assert not set(en) & set(tgt), (t, e)
        prompt = repetition_prompt(pairs, q)
        ids = tok(prompt).input_ids
        hidden = states(model, torch.tensor([ids]))
        p = [torch.softmax(lens_logits(model, h)[0, -1].double(), -1) for h in hidden]
        rows.append({
            "target": t, "english": e, "prompt": prompt, "prompt_ids": ids, "english_tokens": en,
            "target_tokens": tgt, "p_en": [pk[en].sum().item() for pk in p], "p_tgt": [pk[tgt].sum().item() for pk in p],
        })
    blocks = len(rows[0]["p_en"])
    return {
        "label": LABEL, "shots": SHOTS, "pairs": rows,
        "p_en": [sum(r["p_en"][k] for r in rows) / len(rows) for k in range(blocks)],
        "p_tgt": [sum(r["p_tgt"][k] for r in rows) / len(rows) for k in range(blocks)],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    a = ap.parse_args()
    gguf = Path(a.gguf or subprocess.check_output([str(ROOT / "scripts" / "fetch-smollm2.sh")], text=True).strip())
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    out = {
        "about": "tools/oracle/lens_fixtures.py: transformers logit-lens entropies of SmolLM2-135M-Instruct (GGUF)",
        "gguf": gguf.name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "sentences": SENTENCES,
        "zh": language_curve(model, tok, "zho_Hans"),
        "en": language_curve(model, tok, "eng_Latn"),
        "latent": latent(model, tok),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")
    for lang in ["zh", "en"]:
        print(lang, " ".join(f"{x:.3f}" for x in out[lang]["mean_all"]))
    print("p_en", " ".join(f"{x:.4f}" for x in out["latent"]["p_en"]))
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
