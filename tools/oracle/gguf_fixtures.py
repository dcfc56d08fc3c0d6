#!/usr/bin/env python3
"""Test fixtures for the GGUF importer of `dft-models` (crates/dft-models/src/gguf/).

Run with the pinned oracle venv (torch 2.15.0, transformers 5.24.0, gguf 0.19.0, sentencepiece 0.2,
safetensors, numpy), from the repository root:

    /work/venvs/oracle/bin/python tools/oracle/gguf_fixtures.py                # everything
    /work/venvs/oracle/bin/python tools/oracle/gguf_fixtures.py --no-smollm2   # synthetic files only
    /work/venvs/oracle/bin/python tools/oracle/gguf_fixtures.py --smollm2 PATH # explicit model path
    /work/venvs/oracle/bin/python tools/oracle/gguf_fixtures.py --only-gemma3  # the Gemma-3-270M part only

The SmolLM2 part needs the model: `scripts/fetch-smollm2.sh` prints its path (default
`.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`; env `DFT_SMOLLM2_GGUF` overrides).

The Gemma-3 part needs `scripts/fetch-gemma3.sh` (default `.cache/models/gemma3/gemma-3-270m-q4_k_m.gguf`;
env `DFT_GEMMA3_GGUF` overrides; `--gemma3 PATH`); it is skipped with a note when the file is absent.

What it writes (all small, < 1 MB together, plus < 1 MB for Gemma-3):

crates/dft-models/tests/fixtures/gguf/
  quants.gguf                  one tensor per supported ggml type (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
                               Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K), random data, `general.alignment` = 64
  quants.expected.safetensors  the same tensors dequantised by `gguf.quants.dequantize` (f32, HF shape)
  truncated.gguf               quants.gguf cut inside the tensor data
  tiny_llama.gguf              a 2-layer `llama` model with a sentencepiece (`llama`) vocabulary, untied
  tiny_gemma2.gguf             a 2-layer `gemma2` model with a Gemma-style sentencepiece vocabulary, tied
  tiny_*.expected.safetensors  transformers' state dict after loading the GGUF (un-permuted Q/K, Gemma norms - 1)
  tiny_*.json                  transformers' config + tokenizer ids (with/without special tokens) + decodes

crates/dft-models/tests/fixtures/smollm2/
  gguf_tokenizer.json          transformers' ids (tokenizer loaded from the GGUF) for FLORES sentences
                               (en/zh/vi/ar) and edge strings, with and without special tokens, plus decodes
  gguf_tensors.json            config, tensor types, and per-tensor shape / f64 sum / f64 sum of squares
  gguf_tensors.safetensors     first 1024 and 1024 strided values of selected tensors, as transformers loads them

crates/dft-models/tests/fixtures/gemma3/      (google/gemma-3-270m, Q4_K_M; transformers, eager attention, f32)
  gguf_tokenizer.json          token ids (tokenizer from the GGUF) for FLORES en/zh/vi/ar and edge strings, decodes
  gguf_tensors.json            config (incl. rope_parameters, layer_types), tensor types, per-tensor shape / sums,
                               the norm convention check (raw GGUF value - transformers' value, per norm kind; and
                               the loss of a sentence as loaded vs with the q/k norms not shifted)
  gguf_tensors.safetensors     first 1024 and 1024 strided values of tensors of each ggml type and every norm kind
  reference_logits.safetensors per prompt i: p{i}.input_ids, p{i}.sample_ids [256] (last position's top 32 +
                               seeded random ids), p{i}.logits_sample [T,256], p{i}.last_strided [4096] (ids 0, 64, ..),
                               p{i}.lse [T] (logsumexp of every full row), p{i}.argmax [T]
  greedy.json                  greedy continuation (12 tokens) of "The capital of France is"
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates/dft-models/tests/fixtures"
FLORES = Path(os.environ.get("DFT_FLORES_DIR", "/work/shared/data/eval/flores200"))
LANGS = [("en", "eng_Latn"), ("zh", "zho_Hans"), ("vi", "vie_Latn"), ("ar", "arb_Arab")]

EDGE_STRINGS = [
    "",
    " ",
    "12345 67",
    "a  b   c    d",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\n",
    "\n\n",
    "emoji 😀👍🏽 and a flag 🇻🇳",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "<s>hello</s> <unk> <start_of_turn>user\nhi<end_of_turn>",
    "Ünïcödé ñ ß ﬁ ｆｕｌｌｗｉｄｔｈ",
    "don't I'll we've THEY'RE",
    "x" * 300,
]


def dump_json(report: dict) -> str:
    """Indented JSON, except that each tokenizer case is one compact line (keeps the files small)."""
    cases = report.get("tokenizer", {}).get("cases")
    if cases is None:
        return json.dumps(report, ensure_ascii=False, indent=1) + "\n"
    shallow = dict(report, tokenizer=dict(report["tokenizer"], cases="__CASES__"))
    text = json.dumps(shallow, ensure_ascii=False, indent=1)
    lines = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    return text.replace('"__CASES__"', "[\n" + lines + "\n  ]") + "\n"


def flores(lang_file: str, n: int) -> list[str]:
    lines = (FLORES / f"{lang_file}.devtest.sample").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()][:n]


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# (a) one tensor per quantisation type
# ---------------------------------------------------------------------------------------------


def random_f16_bytes(r: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """`n` finite f16 scales as raw little-endian bytes."""
    return r.uniform(lo, hi, size=n).astype(np.float16).view(np.uint8).reshape(n, 2)


def raw_kquant_blocks(qtype: T, n_blocks: int, r: np.random.Generator) -> np.ndarray:
    """Random blocks for types gguf-py cannot quantise: random payload bytes, valid (finite) scales."""
    block_bytes = gguf.GGML_QUANT_SIZES[qtype][1]
    b = r.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype == T.Q2_K:  # scales[16] qs[64] d dmin
        b[:, 80:82] = random_f16_bytes(r, n_blocks, 0.001, 0.05)
        b[:, 82:84] = random_f16_bytes(r, n_blocks, 0.001, 0.05)
    elif qtype == T.Q3_K:  # hmask[32] qs[64] scales[12] d
        b[:, 108:110] = random_f16_bytes(r, n_blocks, -0.05, 0.05)
    elif qtype in (T.Q4_K, T.Q5_K):  # d dmin scales[12] (qh[32]) qs[128]
        b[:, 0:2] = random_f16_bytes(r, n_blocks, 0.0005, 0.01)
        b[:, 2:4] = random_f16_bytes(r, n_blocks, 0.0005, 0.01)
    elif qtype == T.Q6_K:  # ql[128] qh[64] scales[16] d
        b[:, 208:210] = random_f16_bytes(r, n_blocks, -0.01, 0.01)
    elif qtype == T.Q8_K:  # d: f32, qs[256]: i8, bsums[16]: i16
        b[:, 0:4] = r.uniform(-0.02, 0.02, size=n_blocks).astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
    else:
        raise ValueError(qtype)
    return b


def dequant_q8_k(blocks: np.ndarray) -> np.ndarray:
    """gguf-py has no Q8_K dequantiser; ggml's `dequantize_row_q8_K` is `y = d * q` in f32."""
    d = blocks[:, 0:4].copy().view(np.float32)
    q = blocks[:, 4:260].view(np.int8).astype(np.float32)
    return (d * q).astype(np.float32)


def write_quant_fixtures(out: Path) -> None:
    r = rng(1234)
    w = gguf.GGUFWriter(str(out / "quants.gguf"), arch="llama")
    w.add_custom_alignment(64)
    w.add_string("fixture.note", "one tensor per ggml type; values in quants.expected.safetensors")
    w.add_array("fixture.nested", [[1, 2, 3], [4, 5]])
    w.add_array("fixture.strings", ["a", "", "ünï", "\u2581x"])
    w.add_uint8("fixture.u8", 200)
    w.add_int8("fixture.i8", -5)
    w.add_uint16("fixture.u16", 65000)
    w.add_int16("fixture.i16", -30000)
    w.add_uint32("fixture.u32", 4_000_000_000)
    w.add_int32("fixture.i32", -2_000_000_000)
    w.add_uint64("fixture.u64", 1 << 40)
    w.add_int64("fixture.i64", -(1 << 40))
    w.add_float32("fixture.f32", 0.1)
    w.add_float64("fixture.f64", 0.1)
    w.add_bool("fixture.bool", True)
    expected: dict[str, np.ndarray] = {}

    # plain floats
    x = r.normal(0, 1, size=(2, 3, 4)).astype(np.float32)
    w.add_tensor("f32_3d", x)
    expected["f32_3d"] = x
    x = r.normal(0, 1, size=(4, 64)).astype(np.float32)
    x.flat[:6] = [0.0, -0.0, 65504.0, 6e-8, -np.inf, 1e-5]  # zero, -zero, f16 max, subnormal, inf, small
    h = x.astype(np.float16)
    w.add_tensor("f16", h)
    expected["f16"] = gguf.quants.dequantize(h, T.F16).reshape(4, 64)
    x = r.normal(0, 1, size=(4, 64)).astype(np.float32)
    x.flat[:4] = [0.0, -0.0, 3.0e38, -np.inf]
    b = gguf.quants.quantize(x, T.BF16)
    w.add_tensor("bf16", b, raw_dtype=T.BF16)
    expected["bf16"] = gguf.quants.dequantize(b, T.BF16).reshape(4, 64)

    # 32-element blocks: quantised by gguf-py
    for qtype, shape in [
        (T.Q4_0, (16, 1024)),  # 512 blocks: exercises the parallel chunking
        (T.Q4_1, (4, 64)),
        (T.Q5_0, (4, 64)),
        (T.Q5_1, (4, 64)),
        (T.Q8_0, (4, 96)),
    ]:
        x = r.normal(0, 0.05, size=shape).astype(np.float32)
        q = gguf.quants.quantize(x, qtype)
        w.add_tensor(qtype.name.lower(), q, raw_dtype=qtype)
        expected[qtype.name.lower()] = gguf.quants.dequantize(q, qtype).reshape(shape)

    # 256-element super-blocks: raw random blocks
    for qtype, shape in [(T.Q2_K, (2, 512)), (T.Q3_K, (2, 512)), (T.Q4_K, (3, 512)), (T.Q5_K, (2, 512)),
                         (T.Q6_K, (2, 512)), (T.Q8_K, (2, 256))]:
        n_blocks = shape[0] * shape[1] // 256
        blocks = raw_kquant_blocks(qtype, n_blocks, r)
        byte_shape = (shape[0], shape[1] // 256 * gguf.GGML_QUANT_SIZES[qtype][1])
        q = blocks.reshape(byte_shape)
        w.add_tensor(qtype.name.lower(), q, raw_dtype=qtype)
        want = dequant_q8_k(blocks) if qtype == T.Q8_K else gguf.quants.dequantize(q, qtype)
        expected[qtype.name.lower()] = np.asarray(want, dtype=np.float32).reshape(shape)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, str(out / "quants.expected.safetensors"))

    # truncated copy: cut in the middle of the last tensor's data
    data = (out / "quants.gguf").read_bytes()
    (out / "truncated.gguf").write_bytes(data[: len(data) - 300])

    # self-check with gguf-py's reader
    reader = gguf.GGUFReader(str(out / "quants.gguf"))
    for t in reader.tensors:
        if t.tensor_type == T.Q8_K:
            continue
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(expected[t.name].shape)
        assert np.array_equal(got.view(np.uint32), expected[t.name].view(np.uint32)), t.name


# ---------------------------------------------------------------------------------------------
# (a') tiny llama / gemma2 models with sentencepiece vocabularies, as transformers loads them
# ---------------------------------------------------------------------------------------------

USER_DEFINED = ["<start_of_turn>", "<end_of_turn>"]


def train_spm() -> "sentencepiece.SentencePieceProcessor":  # noqa: F821
    import sentencepiece as spm

    # no Chinese in training: its characters then take the byte-fallback path
    text = []
    for _, f in LANGS:
        if f != "zho_Hans":
            text += flores(f, 100)[20:]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=model,
        vocab_size=700,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.98,
        user_defined_symbols=USER_DEFINED,
        split_digits=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def spm_vocab(sp) -> tuple[list[str], list[float], list[int]]:
    """Pieces, scores and llama.cpp token types (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte)."""
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        tokens.append(piece)
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif piece in USER_DEFINED:
            types.append(4)
        else:
            types.append(1)
    # whitespace runs, as real vocabularies have them
    for piece, score in [("\u2581\u2581", -1000.0), ("\u2581\u2581\u2581\u2581", -1001.0), ("\n", -1002.0)]:
        tokens.append(piece)
        scores.append(score)
        types.append(1)
    return tokens, scores, types


def write_tiny_model(out: Path, arch: str, sp) -> None:
    r = rng(7 if arch == "llama" else 8)
    hidden, heads, kv_heads, head_dim, ffn, layers = 32, 4, 2, 8, 64, 2
    tokens, scores, types = spm_vocab(sp)
    if arch == "gemma2":
        # Gemma layout: <pad> <eos> <bos> <unk> first; whitespace-only pieces spelled with real spaces
        body = list(zip(tokens[3:], scores[3:], types[3:]))
        head = [("<pad>", 0.0, 3), ("<eos>", 0.0, 3), ("<bos>", 0.0, 3), ("<unk>", 0.0, 2)]
        rows = head + [(t.replace("\u2581", " ") if set(t) == {"\u2581"} and len(t) > 1 else t, s, ty) for t, s, ty in body]
        tokens, scores, types = map(list, zip(*rows))
        bos, eos, unk, pad = 2, 1, 3, 0
    else:
        bos, eos, unk, pad = 1, 2, 0, None
    vocab = len(tokens)

    w = gguf.GGUFWriter(str(out / f"tiny_{arch}.gguf"), arch=arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-6 if arch == "gemma2" else 1e-5)
    if arch == "llama":
        w.add_rope_freq_base(10000.0)
        w.add_rope_dimension_count(head_dim)
    else:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_attn_logit_softcapping(50.0)
        w.add_final_logit_softcapping(30.0)
        w.add_sliding_window(16)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(unk)
    if pad is not None:
        w.add_pad_token_id(pad)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(arch == "llama")
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    def tensor(name: str, shape: tuple[int, ...], qtype: T, scale: float = 0.1, offset: float = 0.0) -> None:
        x = (r.normal(0, scale, size=shape) + offset).astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(name, x)
        elif qtype == T.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)

    tensor("token_embd.weight", (vocab, hidden), T.Q8_0)
    # norms near 1: for llama that is the weight, for gemma2 llama.cpp's `w + 1` (so w near 0)
    for i in range(layers):
        p = f"blk.{i}."
        tensor(p + "attn_norm.weight", (hidden,), T.F32, 0.1, 1.0)
        tensor(p + "attn_q.weight", (heads * head_dim, hidden), T.Q8_0 if i == 0 else T.F16)
        tensor(p + "attn_k.weight", (kv_heads * head_dim, hidden), T.Q4_0 if i == 0 else T.F32)
        tensor(p + "attn_v.weight", (kv_heads * head_dim, hidden), T.F16)
        tensor(p + "attn_output.weight", (hidden, heads * head_dim), T.Q5_1)
        tensor(p + "ffn_gate.weight", (ffn, hidden), T.Q4_1)
        tensor(p + "ffn_up.weight", (ffn, hidden), T.Q5_0)
        tensor(p + "ffn_down.weight", (hidden, ffn), T.BF16)
        tensor(p + "ffn_norm.weight", (hidden,), T.F32, 0.1, 1.0)
        if arch == "gemma2":
            tensor(p + "post_attention_norm.weight", (hidden,), T.F32, 0.1, 1.0)
            tensor(p + "post_ffw_norm.weight", (hidden,), T.F16, 0.1, 1.0)
    tensor("output_norm.weight", (hidden,), T.F32, 0.1, 1.0)
    if arch == "llama":
        tensor("output.weight", (vocab, hidden), T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def transformers_view(gguf_path: Path, strings: dict[str, list[str]], keep_tensors, return_model: bool = False):
    """Load `gguf_path` with transformers: (report, {hf_name: f32 array} for the names `keep_tensors` picks, tokenizer)
    — plus the model (eager attention) when `return_model`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    extra = {"attn_implementation": "eager"} if return_model else {}
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, **extra
    ).eval()
    cfg = model.config
    report = {
        "config": {
            "model_type": cfg.model_type,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": cfg.head_dim,
            "rms_norm_eps": cfg.rms_norm_eps,
            "rope_theta": (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", None)),
            "max_position_embeddings": cfg.max_position_embeddings,
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
            "pad_token_id": cfg.pad_token_id,
            "sliding_window": getattr(cfg, "sliding_window", None),
            "attn_logit_softcapping": getattr(cfg, "attn_logit_softcapping", None),
            "final_logit_softcapping": getattr(cfg, "final_logit_softcapping", None),
            "query_pre_attn_scalar": getattr(cfg, "query_pre_attn_scalar", None),
        },
        "tokenizer": {
            "class": type(tok).__name__,
            "bos_token": tok.bos_token,
            "eos_token": tok.eos_token,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "chat_template": tok.chat_template,
            "cases": [],
        },
    }
    for group, texts in strings.items():
        for text in texts:
            with_special = tok(text, add_special_tokens=True)["input_ids"]
            without = tok(text, add_special_tokens=False)["input_ids"]
            report["tokenizer"]["cases"].append(
                {
                    "group": group,
                    "text": text,
                    "ids_with_special": with_special,
                    "ids_without_special": without,
                    "decoded": tok.decode(without, skip_special_tokens=False),
                    "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
                }
            )
    if cfg.model_type == "gemma3_text":
        rp = cfg.rope_parameters
        report["config"]["rope_theta"] = rp["full_attention"]["rope_theta"]
        report["config"]["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
        report["config"]["rope_parameters"] = rp
        report["config"]["layer_types"] = list(cfg.layer_types)
    state = {k: v.detach().to(torch.float32).contiguous().numpy() for k, v in model.state_dict().items() if keep_tensors(k)}
    if return_model:
        return report, state, tok, model
    return report, state, tok


def write_tiny_fixtures(out: Path) -> None:
    sp = train_spm()
    strings = {lang: flores(f, 100)[:4] for lang, f in LANGS}
    strings["edge"] = EDGE_STRINGS
    for arch in ["llama", "gemma2"]:
        write_tiny_model(out, arch, sp)
        path = out / f"tiny_{arch}.gguf"
        report, tensors, tok = transformers_view(path, strings, lambda k: True)
        if report["config"]["tie_word_embeddings"]:
            tensors.pop("lm_head.weight", None)
        report["tensors"] = sorted(tensors)
        (out / f"tiny_{arch}.json").write_text(dump_json(report), encoding="utf-8")
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out / f"tiny_{arch}.expected.safetensors"))
        if os.environ.get("DFT_DUMP_TOKENIZER_JSON"):
            (Path(os.environ["DFT_DUMP_TOKENIZER_JSON"]) / f"tiny_{arch}.tokenizer.json").write_text(
                tok.backend_tokenizer.to_str(pretty=True), encoding="utf-8"
            )


# ---------------------------------------------------------------------------------------------
# (b) the real SmolLM2-135M-Instruct Q4_1 file
# ---------------------------------------------------------------------------------------------

N_VALUES = 1024  # values kept per tensor, from the start and strided over the whole tensor
SMOLLM2_TENSORS = [
    "model.embed_tokens.weight",  # Q8_0
    "model.layers.0.self_attn.q_proj.weight",  # Q4_1, un-permuted
    "model.layers.0.self_attn.k_proj.weight",  # Q4_1, un-permuted
    "model.layers.29.self_attn.q_proj.weight",
    "model.layers.0.self_attn.v_proj.weight",
    "model.layers.7.self_attn.o_proj.weight",
    "model.layers.3.mlp.gate_proj.weight",
    "model.layers.3.mlp.down_proj.weight",
    "model.layers.0.input_layernorm.weight",  # F32
    "model.layers.29.post_attention_layernorm.weight",
    "model.norm.weight",
]


def write_smollm2_fixtures(gguf_path: Path, out: Path) -> None:
    strings = {lang: flores(f, 12) for lang, f in LANGS}
    strings["edge"] = EDGE_STRINGS
    tmp = Path(tempfile.mkdtemp())
    try:
        link = tmp / gguf_path.name
        os.symlink(gguf_path.resolve(), link)
        report, tensors, _ = transformers_view(link, strings, lambda k: k in SMOLLM2_TENSORS)
    finally:
        shutil.rmtree(tmp)
    reader = gguf.GGUFReader(str(gguf_path))
    report["gguf_tensor_types"] = {}
    for t in reader.tensors:
        report["gguf_tensor_types"][t.tensor_type.name] = report["gguf_tensor_types"].get(t.tensor_type.name, 0) + 1
    (out / "gguf_tokenizer.json").write_text(dump_json({"tokenizer": report.pop("tokenizer")}), encoding="utf-8")
    arrays, stats = {}, {}
    for name in SMOLLM2_TENSORS:
        v = tensors[name]
        flat = v.reshape(-1)
        stride = max(1, flat.size // N_VALUES)
        arrays[name + ".head"] = np.ascontiguousarray(flat[:N_VALUES])
        arrays[name + ".strided"] = np.ascontiguousarray(flat[::stride][:N_VALUES])
        f64 = flat.astype(np.float64)
        stats[name] = {"shape": list(v.shape), "stride": stride, "sum": float(f64.sum()), "sum_sq": float((f64 * f64).sum())}
    report["tensors"] = stats
    (out / "gguf_tensors.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    save_file(arrays, str(out / "gguf_tensors.safetensors"))


# ---------------------------------------------------------------------------------------------
# (c) the real Gemma-3-270M Q4_K_M file (google/gemma-3-270m, base model; scripts/fetch-gemma3.sh)
# ---------------------------------------------------------------------------------------------

# One or more tensors of each ggml type the file uses (Q8_0, Q5_0, Q4_K, Q6_K, F32), and every kind of norm.
GEMMA3_TENSORS = [
    "model.embed_tokens.weight",  # Q8_0 (also the tied head)
    "model.layers.0.self_attn.q_proj.weight",  # Q5_0
    "model.layers.0.self_attn.k_proj.weight",  # Q5_0
    "model.layers.0.self_attn.v_proj.weight",  # Q8_0
    "model.layers.2.self_attn.v_proj.weight",  # Q5_0
    "model.layers.0.self_attn.o_proj.weight",  # Q4_K
    "model.layers.0.mlp.down_proj.weight",  # Q6_K
    "model.layers.2.mlp.down_proj.weight",  # Q4_K
    "model.layers.17.mlp.gate_proj.weight",  # Q5_0
    "model.layers.5.mlp.up_proj.weight",  # Q5_0
    "model.layers.0.self_attn.q_norm.weight",  # F32, w + 1 in the file
    "model.layers.0.self_attn.k_norm.weight",
    "model.layers.11.self_attn.q_norm.weight",
    "model.layers.17.self_attn.k_norm.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.post_attention_layernorm.weight",
    "model.layers.0.pre_feedforward_layernorm.weight",
    "model.layers.9.post_feedforward_layernorm.weight",
    "model.norm.weight",
]
GEMMA3_PROMPTS = [
    "The capital of France is",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "中国的首都是",
    "请写一首关于秋天的短诗。",
    "Thủ đô của Việt Nam là",
    "عاصمة مصر هي",
]
N_SAMPLE_IDS = 256  # vocabulary ids whose logits are kept at every position (the last position's top 32 + seeded random)
LAST_STRIDE = 64  # the last position's logits at ids 0, 64, 128, ... (4096 values)


def stats_and_slices(tensors: dict, names: list[str]) -> tuple[dict, dict]:
    arrays, stats = {}, {}
    for name in names:
        v = tensors[name]
        flat = v.reshape(-1)
        stride = max(1, flat.size // N_VALUES)
        arrays[name + ".head"] = np.ascontiguousarray(flat[:N_VALUES])
        arrays[name + ".strided"] = np.ascontiguousarray(flat[::stride][:N_VALUES])
        f64 = flat.astype(np.float64)
        stats[name] = {"shape": list(v.shape), "stride": stride, "sum": float(f64.sum()), "sum_sq": float((f64 * f64).sum())}
    return arrays, stats


def write_gemma3_fixtures(gguf_path: Path, out: Path) -> None:
    """Tensors, config and tokenizer as transformers loads the file; logits of en/zh/vi/ar prompts (eager, f32)
    at a sample of vocabulary ids plus every position's logsumexp; the greedy continuation of
    "The capital of France is"; and a check of the norm convention (w vs w + 1)."""
    import torch
    import transformers

    strings = {lang: flores(f, 12) for lang, f in LANGS}
    strings["edge"] = EDGE_STRINGS + ["<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", "<bos><eos><pad>"]
    tmp = Path(tempfile.mkdtemp())
    try:
        link = tmp / gguf_path.name
        os.symlink(gguf_path.resolve(), link)
        report, tensors, tok, model = transformers_view(link, strings, lambda k: k in GEMMA3_TENSORS, return_model=True)
    finally:
        shutil.rmtree(tmp)
    torch.set_grad_enabled(False)
    reader = gguf.GGUFReader(str(gguf_path))
    report["gguf_tensor_types"] = {}
    for t in reader.tensors:
        report["gguf_tensor_types"][t.tensor_type.name] = report["gguf_tensor_types"].get(t.tensor_type.name, 0) + 1
    report["transformers"] = transformers.__version__
    report["torch"] = torch.__version__

    # Norm convention. llama.cpp stores Gemma norms as w + 1; transformers subtracts 1 from every
    # `*norm.weight`. Record raw - loaded for each norm kind, and the loss of an English sentence with the
    # model as loaded vs with the q/k norms shifted back by 1 (i.e. if the file had stored w for them).
    raw = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors if t.name.endswith("norm.weight")}
    sd = model.state_dict()
    conv = {}
    for g, hf in [("blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight"),
                  ("blk.0.attn_k_norm.weight", "model.layers.0.self_attn.k_norm.weight"),
                  ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
                  ("blk.0.post_attention_norm.weight", "model.layers.0.post_attention_layernorm.weight"),
                  ("blk.0.ffn_norm.weight", "model.layers.0.pre_feedforward_layernorm.weight"),
                  ("blk.0.post_ffw_norm.weight", "model.layers.0.post_feedforward_layernorm.weight"),
                  ("output_norm.weight", "model.norm.weight")]:
        d = raw[g].reshape(-1).astype(np.float64) - sd[hf].float().numpy().reshape(-1).astype(np.float64)
        conv[g] = {"hf": hf, "raw_minus_loaded_min": float(d.min()), "raw_minus_loaded_max": float(d.max()),
                   "raw_mean": float(raw[g].mean())}
    text = flores("eng_Latn", 12)[0]
    ids = tok(text, return_tensors="pt").input_ids
    loss_loaded = model(input_ids=ids, labels=ids, use_cache=False).loss.item()
    qk = [p for n, p in model.named_parameters() if n.endswith("q_norm.weight") or n.endswith("k_norm.weight")]
    for p in qk:
        p.add_(1.0)
    loss_shifted = model(input_ids=ids, labels=ids, use_cache=False).loss.item()
    for p in qk:
        p.sub_(1.0)
    conv["loss_as_loaded"] = loss_loaded
    conv["loss_if_qk_norms_stored_w"] = loss_shifted
    conv["sentence"] = text
    report["norm_convention"] = conv

    # logits
    ref = {}
    gen = torch.Generator().manual_seed(9)
    for i, prompt in enumerate(GEMMA3_PROMPTS):
        ids = tok(prompt, return_tensors="pt").input_ids
        logits = model(input_ids=ids, use_cache=False).logits[0].float()
        top = torch.topk(logits[-1], 32).indices
        rand = torch.randperm(logits.shape[-1], generator=gen)[: 2 * N_SAMPLE_IDS]
        rest = rand[~torch.isin(rand, top)][: N_SAMPLE_IDS - top.numel()]
        pick = torch.cat([top, rest]).sort().values
        ref[f"p{i}.input_ids"] = ids[0].contiguous()
        ref[f"p{i}.sample_ids"] = pick.contiguous()
        ref[f"p{i}.logits_sample"] = logits[:, pick].contiguous()
        ref[f"p{i}.last_strided"] = logits[-1, ::LAST_STRIDE].contiguous()
        ref[f"p{i}.lse"] = torch.logsumexp(logits.double(), dim=-1).float().contiguous()
        ref[f"p{i}.argmax"] = logits.argmax(dim=-1).contiguous()
    from safetensors.torch import save_file as save_torch

    save_torch(ref, str(out / "reference_logits.safetensors"))
    ids = tok(GEMMA3_PROMPTS[0], return_tensors="pt").input_ids
    greedy = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                            use_cache=True, eos_token_id=None, min_new_tokens=12)
    new = greedy[0, ids.shape[1]:].tolist()
    info = {"prompt": GEMMA3_PROMPTS[0], "prompt_ids": ids[0].tolist(), "new_ids": new, "new_text": tok.decode(new),
            "prompts": GEMMA3_PROMPTS, "sample_ids": N_SAMPLE_IDS, "last_stride": LAST_STRIDE,
            "transformers": transformers.__version__, "torch": torch.__version__}
    (out / "greedy.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("gemma3 greedy:", repr(info["new_text"]), "| norm check:", loss_loaded, "vs", loss_shifted)

    (out / "gguf_tokenizer.json").write_text(dump_json({"tokenizer": report.pop("tokenizer")}), encoding="utf-8")
    arrays, stats = stats_and_slices(tensors, GEMMA3_TENSORS)
    report["tensors"] = stats
    (out / "gguf_tensors.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    save_file(arrays, str(out / "gguf_tensors.safetensors"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", type=Path, default=None, help="path of SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--no-smollm2", action="store_true", help="only the synthetic fixtures")
    ap.add_argument("--only-smollm2", action="store_true", help="only the SmolLM2 fixtures")
    ap.add_argument("--gemma3", type=Path, default=None, help="path of gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--only-gemma3", action="store_true", help="only the Gemma-3-270M fixtures")
    args = ap.parse_args()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")

    if not args.only_smollm2 and not args.only_gemma3:
        out = FIX / "gguf"
        out.mkdir(parents=True, exist_ok=True)
        write_quant_fixtures(out)
        write_tiny_fixtures(out)
        print(f"wrote {out}")
    if not args.no_smollm2 and not args.only_gemma3:
        path = args.smollm2 or Path(
            os.environ.get("DFT_SMOLLM2_GGUF", ROOT / ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        )
        if not path.is_file():
            sys.exit(f"{path} not found: run scripts/fetch-smollm2.sh (or pass --no-smollm2)")
        out = FIX / "smollm2"
        out.mkdir(parents=True, exist_ok=True)
        write_smollm2_fixtures(path, out)
        print(f"wrote {out}")
    if not args.only_smollm2:
        path = args.gemma3 or Path(
            os.environ.get("DFT_GEMMA3_GGUF", ROOT / ".cache/models/gemma3/gemma-3-270m-q4_k_m.gguf")
        )
        if path.is_file():
            out = FIX / "gemma3"
            out.mkdir(parents=True, exist_ok=True)
            write_gemma3_fixtures(path, out)
            print(f"wrote {out}")
        elif args.gemma3 or args.only_gemma3:
            sys.exit(f"{path} not found: run scripts/fetch-gemma3.sh")
        else:
            print(f"skipping Gemma-3-270M: {path} not found (scripts/fetch-gemma3.sh)")


if __name__ == "__main__":
    main()
