#!/usr/bin/env python3
"""Reference numerics for dft-models, computed by Hugging Face transformers (eager attention, f32).

Writes, under crates/dft-models/tests/fixtures/:
  tiny-llama/, tiny-gqa-llama/, tiny-gemma2/, tiny-gemma3/
                                                config.json + model.safetensors (HF save_pretrained)
                                                + reference.safetensors:
      input_ids [B,T] i64, attention_mask [B,T] i64 (right padding, rows of different lengths)
      hidden.0 .. hidden.L [B,T,H] f32  hidden.0 = input of block 1 (embeddings, Gemma-scaled),
                                        hidden.k = output of decoder block k (before the final norm)
      logits [B,T,V] f32 (Gemma-2: after the final softcap)
      (tiny-gemma3: a Gemma3ForCausalLM (gemma3_text) — QK-norm, sliding (window 4 < T) and global layers
       with different RoPE bases, query_pre_attn_scalar != head_dim)
      gen.prompt [1,P] i64, gen.greedy [1,P+N] i64   transformers' greedy generate() with its KV cache
  tiny-llama-sharded/   the tiny-llama weights saved in several shards + model.safetensors.index.json
  smollm2/reference_logits.safetensors   SmolLM2-135M-Instruct loaded by transformers from the GGUF:
      p{i}.input_ids [T] i64, p{i}.last_logits [V] f32, p{i}.logits_head [T,512] f32 (first 512 vocab ids)
  smollm2/greedy.json   greedy continuation of "The capital of France is"

Usage:  tools/oracle/setup.sh && tools/oracle/.venv/bin/python tools/oracle/model_fixtures.py [--gguf PATH]
        (PATH defaults to what scripts/fetch-smollm2.sh prints; pass --skip-real to do only the tiny models,
        --only tiny-gemma3 ... for just those tiny models)

  check-saved DIR REFERENCE OUT.json   load a checkpoint directory that dft-rs saved, run the reference
        batch through transformers and write the max |logits difference| vs REFERENCE to OUT.json.
  check-roundtrip [NAME...]   for each tiny model (or the ones named): dft-rs loads it and saves it again (crates/dft-models/examples/resave.rs),
        then check-saved; results in crates/dft-models/tests/fixtures/<name>/transformers_reload.json.
Pinned versions: tools/oracle/requirements.txt.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file, load_file
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, Gemma2Config, Gemma3TextConfig

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates" / "dft-models" / "tests" / "fixtures"
torch.set_grad_enabled(False)

TINY = {
    "tiny-llama": LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    ),
    # SmolLM2-like: grouped-query attention and tied embeddings, large rope base.
    "tiny-gqa-llama": LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=100000.0,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    ),
    # Gemma-2 with every feature exercised: head_dim * heads != hidden, GQA, a sliding window (4) shorter
    # than the sequence, small softcaps so tanh bites, query_pre_attn_scalar != head_dim.
    "tiny-gemma2": Gemma2Config(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
        query_pre_attn_scalar=20, sliding_window=4, attn_logit_softcapping=2.0, final_logit_softcapping=5.0,
        hidden_activation="gelu_pytorch_tanh", bos_token_id=2, eos_token_id=1, pad_token_id=0,
        tie_word_embeddings=True,
    ),
    # Gemma-3 (text): QK-norm instead of softcaps, both layer kinds (sliding, sliding, full, sliding) with a
    # window (4) shorter than the sequence, a RoPE base per kind (local 1,000 so that a swap shows, global
    # 1,000,000), GQA, head_dim * heads != hidden, query_pre_attn_scalar != head_dim, no final softcap.
    "tiny-gemma3": Gemma3TextConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=12, max_position_embeddings=128, rms_norm_eps=1e-6,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1_000.0}},
        query_pre_attn_scalar=20, sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        hidden_activation="gelu_pytorch_tanh", bos_token_id=2, eos_token_id=1, pad_token_id=0,
        tie_word_embeddings=True,
    ),
}
GEMMA = ("gemma2", "gemma3_text")
LENGTHS = [11, 8, 5]  # right-padded batch, T = 11


def randomise(model, arch, gen):
    """HF's init (std 0.02) makes tiny activations; use O(1) weights so every op matters numerically."""
    for name, p in model.named_parameters():
        if "norm" in name:
            base = 0.0 if arch in GEMMA else 1.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
        elif p.dim() == 2 and "embed" not in name:
            p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
        else:
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if arch in GEMMA else 1.0))


def run_with_states(model, input_ids, attention_mask):
    """Logits plus h_0 (input of the first block) and the output of every block, via hooks."""
    states = {}
    layers = model.model.layers
    hooks = [layers[0].register_forward_pre_hook(lambda m, args, kwargs: states.__setitem__(0, args[0] if args else kwargs["hidden_states"]), with_kwargs=True)]
    for k, layer in enumerate(layers):
        def hook(m, args, out, k=k):
            states[k + 1] = out[0] if isinstance(out, tuple) else out
        hooks.append(layer.register_forward_hook(hook))
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    for h in hooks:
        h.remove()
    return out.logits, [states[k].float().contiguous() for k in range(len(layers) + 1)]


def make_tiny(name, cfg):
    gen = torch.Generator().manual_seed(1234 + sum(map(ord, name)))
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    arch = cfg.model_type
    randomise(model, arch, gen)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    out_dir = FIX / name
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    for extra in ["generation_config.json"]:
        (out_dir / extra).unlink(missing_ok=True)

    B, T = len(LENGTHS), max(LENGTHS)
    ids = torch.randint(3, cfg.vocab_size, (B, T), generator=gen)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        ids[b, n:] = cfg.pad_token_id
    logits, hidden = run_with_states(model, ids, mask)
    ref = {"input_ids": ids, "attention_mask": mask, "logits": logits.float().contiguous()}
    for k, h in enumerate(hidden):
        ref[f"hidden.{k}"] = h

    prompt = ids[:1, :6].clone()
    greedy = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10, do_sample=False,
                            eos_token_id=None, pad_token_id=cfg.pad_token_id, use_cache=True, min_new_tokens=10)
    ref["gen.prompt"] = prompt
    ref["gen.greedy"] = greedy
    save_file(ref, str(out_dir / "reference.safetensors"))
    print(f"{name}: {sum(p.numel() for p in model.parameters())} params, greedy {greedy.tolist()}")
    return model


def make_sharded(model):
    out_dir = FIX / "tiny-llama-sharded"
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="40KB")
    (out_dir / "generation_config.json").unlink(missing_ok=True)
    print("tiny-llama-sharded:", sorted(p.name for p in out_dir.iterdir()))


def default_gguf():
    return subprocess.check_output([str(ROOT / "scripts" / "fetch-smollm2.sh")], text=True).strip()


PROMPTS = [
    "The capital of France is",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "中国的首都是",
    "请写一首关于秋天的短诗。",
    "Thủ đô của Việt Nam là",
    "عاصمة مصر هي",
]


def make_real(gguf_path):
    gguf_path = Path(gguf_path)
    tok = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    out_dir = FIX / "smollm2"
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = {}
    for i, text in enumerate(PROMPTS):
        ids = tok(text, return_tensors="pt").input_ids
        logits = model(input_ids=ids, use_cache=False).logits[0].float()
        ref[f"p{i}.input_ids"] = ids[0].contiguous()
        ref[f"p{i}.last_logits"] = logits[-1].contiguous()
        ref[f"p{i}.logits_head"] = logits[:, :512].contiguous()
    save_file(ref, str(out_dir / "reference_logits.safetensors"))
    ids = tok(PROMPTS[0], return_tensors="pt").input_ids
    greedy = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False, use_cache=True)
    new = greedy[0, ids.shape[1]:].tolist()
    info = {"prompt": PROMPTS[0], "prompt_ids": ids[0].tolist(), "new_ids": new,
            "new_text": tok.decode(new), "transformers": transformers.__version__, "torch": torch.__version__,
            "prompts": PROMPTS}
    (out_dir / "greedy.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n")
    print("smollm2 greedy:", repr(info["new_text"]))


def check_saved(model_dir, reference, out_json):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    ref = load_file(reference)
    logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"], use_cache=False).logits
    mask = ref["attention_mask"].bool()
    diff = (logits - ref["logits"]).abs()[mask].max().item()
    res = {"model_dir": str(Path(model_dir).name), "loaded_by": f"transformers {transformers.__version__}",
           "architecture": type(model).__name__, "max_abs_logits_diff": diff, "ok": diff <= 1e-5}
    Path(out_json).write_text(json.dumps(res, indent=1) + "\n")
    print(res)
    return res["ok"]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "check-roundtrip":
        import tempfile
        ok = True
        for name in sys.argv[2:] or TINY:
            out = Path(tempfile.mkdtemp()) / name
            subprocess.check_call(["cargo", "run", "--release", "-q", "-p", "dft-models", "--example", "resave", "--",
                                   str(FIX / name), str(out)], cwd=ROOT)
            ok &= check_saved(out, FIX / name / "reference.safetensors", FIX / name / "transformers_reload.json")
        sys.exit(0 if ok else 1)
    if len(sys.argv) > 1 and sys.argv[1] == "check-saved":
        sys.exit(0 if check_saved(*sys.argv[2:5]) else 1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--only", nargs="+", choices=sorted(TINY), help="only these tiny models (no sharded copy, no real model)")
    a = ap.parse_args()
    if a.only:
        for name in a.only:
            make_tiny(name, TINY[name])
        return
    models = {name: make_tiny(name, cfg) for name, cfg in TINY.items()}
    make_sharded(models["tiny-llama"])
    if not a.skip_real:
        make_real(a.gguf or default_gguf())


if __name__ == "__main__":
    main()
