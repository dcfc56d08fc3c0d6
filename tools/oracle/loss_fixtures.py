#!/usr/bin/env python3
"""Reference values of the DFT objective (METHOD.md §3), computed with PyTorch autograd on HF models.

Independent of dft-rs: the logit lens, truncated forwards (here: full forwards with hooks — blocks above k
cannot change h_k), pooling and cosine losses are written from the spec with plain torch ops.

Writes tests/fixtures/objective/ (at the repository root):
  <model>/config.json + model.safetensors   tiny random Llama (untied head) and Gemma-2 (tied, softcaps,
                                            sliding window shorter than the sequences), vocab = 256 bytes + 4
  sequences.json    4 real en–zh Alpaca examples (shared/data/train/alpaca_en_zh part 0), tokenized as UTF-8
                    bytes (id = byte + 4; 1 = BOS, 2 = EOS, 0 = pad): every sequence kind of the objective
  <model>/expected.json          per case: each loss component and the total
  <model>/grads.safetensors      per case: gradients of selected parameters ("<case>/<param>")

  <model>/expected_bf16_autocast.json   (`loss_fixtures.py bf16`) every case's components under
                                 torch.autocast("cpu", dtype=torch.bfloat16) on the committed f32 models

Usage: tools/oracle/setup.sh && tools/oracle/.venv/bin/python tools/oracle/loss_fixtures.py [bf16]
Pinned versions: tools/oracle/requirements.txt.
"""
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, Gemma2Config

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "objective"
SHARED = Path(os.environ.get("DFT_SHARED_DATA", ROOT.parent / "shared" / "data"))
PAD, BOS, EOS, OFFSET = 0, 1, 2, 4

WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
              "Write a response that appropriately completes the request.\n\n"
              "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
NO_INPUT = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Response:")

MODELS = {
    "llama": LlamaConfig(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD),
    "gemma2": Gemma2Config(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
                           rms_norm_eps=1e-6, query_pre_attn_scalar=8, sliding_window=16,
                           attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                           hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                           bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD),
}

# (name, lc, et, i, j, alpha, beta, pooling, english_stop_grad, main_kind, main_labelled)
CASES = [
    ("tft", "off", "off", 1, 1, 1.0, 1.0, "query_mean", False, "tft", True),
    ("sft", "off", "off", 1, 1, 1.0, 1.0, "query_mean", False, "sft", True),
    ("dft_logits", "logits", "logits", 1, 3, 0.7, 1.3, "query_mean", False, "tft", True),
    ("dft_feature", "feature", "feature", 1, 2, 1.0, 1.0, "query_mean", False, "tft", True),
    ("dft_feature_stopgrad_prompt_mean", "feature", "feature", 2, 2, 0.5, 2.0, "prompt_mean", True, "tft", True),
    ("lc_last_token_et_logits", "feature", "logits", 1, 2, 1.0, 0.25, "last_prompt_token", False, "tft", True),
    # Main sequences without labels: the gradient comes from the lens losses alone, so final norm and
    # head must get none.
    ("aux_only_logits", "logits", "logits", 2, 3, 1.0, 1.0, "query_mean", False, "tft", False),
    # ET-feature with English stop-grad at j=2 of 4 and nothing else: blocks 3, 4 are only on the
    # English path, so they must get no gradient.
    ("et_feature_stopgrad_only", "off", "feature", 1, 2, 1.0, 1.0, "query_mean", True, "tft", False),
]
GRAD_PARAMS = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
               "model.layers.1.mlp.down_proj.weight", "model.layers.3.self_attn.o_proj.weight",
               "model.layers.3.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight"]


def enc(text):
    return [b + OFFSET for b in text.encode("utf-8")]


def render(instruction, inp):
    """The prompt's ids and the byte spans of the instruction and input inside it (BOS first)."""
    tmpl = WITH_INPUT if inp else NO_INPUT
    pre_i = tmpl.split("{instruction}")[0]
    ids = [BOS] + enc(pre_i)
    spans = [[len(ids), len(ids) + len(enc(instruction))]]
    ids += enc(instruction)
    if inp:
        mid = tmpl.split("{instruction}")[1].split("{input}")[0]
        ids += enc(mid)
        spans.append([len(ids), len(ids) + len(enc(inp))])
        ids += enc(inp)
        ids += enc(tmpl.split("{input}")[1])
    else:
        ids += enc(tmpl.split("{instruction}")[1])
    return ids, spans


def make_sequences():
    data = json.loads((SHARED / "train/alpaca_en_zh/data_v3/alpaca_chinese_part_0.json").read_text())
    examples = [data[i] for i in (1, 5, 11, 37)]
    kinds = {k: [] for k in ("tft", "sft", "lc", "et", "en_prompt")}
    for e in examples:
        p_tgt, sp_tgt = render(e["zh_instruction"], e["zh_input"])
        p_en, sp_en = render(e["en_instruction"], e["en_input"])
        x_en = e["en_instruction"] + ("\n" + e["en_input"] if e["en_input"] else "")
        for kind, prompt, spans, answer in [("tft", p_tgt, sp_tgt, e["zh_output"]), ("sft", p_en, sp_en, e["en_output"]),
                                            ("lc", p_tgt, sp_tgt, x_en), ("et", p_tgt, sp_tgt, e["en_output"]),
                                            ("en_prompt", p_en, sp_en, None)]:
            if answer is None:
                ids, labels = list(prompt), [-100] * len(prompt)
            else:
                ans = enc(answer) + [EOS]
                ids, labels = prompt + ans, [-100] * len(prompt) + ans
            kinds[kind].append({"ids": ids, "labels": labels, "prompt_len": len(prompt), "spans": spans})
    out = {}
    for kind, rows in kinds.items():
        t = max(len(r["ids"]) for r in rows)
        out[kind] = {
            "seq_len": t,
            "input_ids": sum((r["ids"] + [PAD] * (t - len(r["ids"])) for r in rows), []),
            "labels": sum((r["labels"] + [-100] * (t - len(r["labels"])) for r in rows), []),
            "lengths": [len(r["ids"]) for r in rows],
            "prompt_lens": [r["prompt_len"] for r in rows],
            "query_spans": [r["spans"] for r in rows],
        }
    return out


def tensors(seq):
    b, t = len(seq["lengths"]), seq["seq_len"]
    ids = torch.tensor(seq["input_ids"]).view(b, t)
    labels = torch.tensor(seq["labels"]).view(b, t)
    mask = torch.zeros(b, t, dtype=torch.long)
    for r, n in enumerate(seq["lengths"]):
        mask[r, :n] = 1
    return ids, labels, mask


def hidden_states(model, ids, mask):
    """h_0..h_L with h_k = output of block k (before the final norm), gradient-carrying."""
    states = {}
    layers = model.model.layers
    hooks = [layers[0].register_forward_pre_hook(
        lambda m, a, kw: states.__setitem__(0, a[0] if a else kw["hidden_states"]), with_kwargs=True)]
    for k, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(
            lambda m, a, o, k=k: states.__setitem__(k + 1, o[0] if isinstance(o, tuple) else o)))
    model(input_ids=ids, attention_mask=mask, use_cache=False)
    for h in hooks:
        h.remove()
    return [states[k] for k in range(len(layers) + 1)]


def final_norm(model, h, detached):
    norm = model.model.norm
    w = norm.weight.detach() if detached else norm.weight
    x = h.float()
    eps = norm.eps if hasattr(norm, "eps") else norm.variance_epsilon
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * ((1.0 + w) if model.config.model_type == "gemma2" else w)


def head(model, x, detached):
    w = model.lm_head.weight.detach() if detached else model.lm_head.weight
    z = x @ w.T
    cap = getattr(model.config, "final_logit_softcapping", None)
    return cap * torch.tanh(z / cap) if cap else z


def lm_ce(model, h, labels, detached):
    """HF convention: shift, ignore -100, mean over all labelled tokens of the batch."""
    if (labels[:, 1:] != -100).sum() == 0:
        return torch.zeros((), requires_grad=False), 0
    logits = head(model, final_norm(model, h, detached), detached)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100), \
        int((labels[:, 1:] != -100).sum())


def pool(h, seq, pooling):
    b, t = len(seq["lengths"]), seq["seq_len"]
    w = torch.zeros(b, t)
    for r in range(b):
        p = seq["prompt_lens"][r]
        spans = {"query_mean": seq["query_spans"][r], "prompt_mean": [[0, p]], "last_prompt_token": [[p - 1, p]]}[pooling]
        idx = [i for s, e in spans for i in range(s, e)]
        w[r, idx] = 1.0 / len(idx)
    return torch.einsum("bt,bth->bh", w, h)


def objective(model, seqs, case):
    name, lc, et, i, j, alpha, beta, pooling, stop, main_kind, main_labelled = case
    main = seqs[main_kind]
    ids, labels, mask = tensors(main)
    if not main_labelled:
        labels = torch.full_like(labels, -100)
    hs = hidden_states(model, ids, mask)
    L = len(hs) - 1
    l_main, n_main = lm_ce(model, hs[L], labels, False)
    total = l_main
    comps = {"main": float(l_main), "main_tokens": n_main, "lc": None, "et": None, "lc_tokens": 0, "et_tokens": 0}
    if "feature" in (lc, et):
        en = seqs["en_prompt"]
        eids, _, emask = tensors(en)
        ehs = hidden_states(model, eids, emask)
        teacher = (lambda x: x.detach()) if stop else (lambda x: x)
        if lc == "feature":
            v = 1 - F.cosine_similarity(teacher(pool(ehs[i], en, pooling)), pool(hs[i], main, pooling), dim=-1).mean()
            comps["lc"] = float(v)
            total = total + alpha * v
        if et == "feature":
            v = 1 - F.cosine_similarity(teacher(pool(ehs[L], en, pooling)), pool(hs[j], main, pooling), dim=-1).mean()
            comps["et"] = float(v)
            total = total + beta * v
    for kind, mode, layer, weight in (("lc", lc, i, alpha), ("et", et, j, beta)):
        if mode == "logits":
            s = seqs[kind]
            sids, slabels, smask = tensors(s)
            v, n = lm_ce(model, hidden_states(model, sids, smask)[layer], slabels, True)
            comps[kind], comps[kind + "_tokens"] = float(v), n
            total = total + weight * v
    comps["total"] = float(total)
    return total, comps


def main():
    import importlib.util
    spec = importlib.util.spec_from_file_location("mf", Path(__file__).with_name("model_fixtures.py"))
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    torch.set_grad_enabled(True)  # model_fixtures turns autograd off at import
    OUT.mkdir(parents=True, exist_ok=True)
    seqs = make_sequences()
    (OUT / "sequences.json").write_text(json.dumps(seqs) + "\n")
    for name, cfg in MODELS.items():
        gen = torch.Generator().manual_seed(99 + len(name))
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
        with torch.no_grad():
            mf.randomise(model, cfg.model_type, gen)
        if cfg.tie_word_embeddings:
            model.tie_weights()
        model.eval()  # no dropout anyway; eval keeps HF from any training-only path
        d = OUT / name
        model.save_pretrained(d, safe_serialization=True)
        (d / "generation_config.json").unlink(missing_ok=True)
        expected, grads = {}, {}
        params = dict(model.named_parameters())
        for case in CASES:
            model.zero_grad(set_to_none=True)
            assert torch.is_grad_enabled()
            total, comps = objective(model, seqs, case)
            if total.requires_grad:
                total.backward()
            for p in GRAD_PARAMS:
                if p == "lm_head.weight" and cfg.tie_word_embeddings:
                    continue
                g = params[p].grad
                grads[f"{case[0]}/{p}"] = (torch.zeros_like(params[p]) if g is None else g).detach().contiguous()
            expected[case[0]] = {"components": comps, "config": dict(zip(
                ["name", "lc", "et", "lc_layer", "et_layer", "alpha", "beta", "pooling", "english_stop_grad",
                 "main", "main_labelled"], case))}
            print(name, case[0], {k: v for k, v in comps.items() if v is not None})
        (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        save_file(grads, str(d / "grads.safetensors"))


def bf16_autocast():
    """The same cases under torch.autocast(bfloat16) on the committed models (f32 weights): writes
    <model>/expected_bf16_autocast.json. What dft-rs's train.precision = "bf16-mixed" is compared with."""
    import sys
    torch.set_grad_enabled(True)
    seqs = json.loads((OUT / "sequences.json").read_text())
    for name in MODELS:
        d = OUT / name
        model = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
        model.eval()
        expected = {}
        for case in CASES:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, comps = objective(model, seqs, case)
            expected[case[0]] = {"components": comps}
            print(name, case[0], "bf16 autocast", {k: v for k, v in comps.items() if v is not None}, file=sys.stderr)
        (d / "expected_bf16_autocast.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["bf16"]:
        bf16_autocast()
    else:
        main()
