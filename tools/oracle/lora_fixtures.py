#!/usr/bin/env python3
"""Reference numerics for LoRA adapters, computed by Hugging Face PEFT on transformers models (eager, f32).

For each tiny model under crates/dft-models/tests/fixtures/ (tiny-llama: untied head, MHA; tiny-gemma2:
tied head, GQA, softcaps, sliding window) and each case below, writes crates/dft-models/tests/fixtures/lora/<case>/:
  adapter/adapter_config.json + adapter/adapter_model.safetensors   PEFT's save_pretrained of the adapter
  reference.safetensors:
      input_ids [B,T] i64 (no padding)
      logits [B,T,V] f32            the PEFT model's forward (adapter active, unmerged)
      merged_logits [B,T,V] f32     after merge_and_unload()
      loss [] f32                   mean next-token cross-entropy over all B*(T-1) positions
      grad.<peft name> f32          d loss / d each trainable tensor (lora_A [r,in], lora_B [out,r],
                                    modules_to_save copies), named as in adapter_model.safetensors
The adapter's A and B are seeded random normals (B is non-zero, unlike PEFT's init), so every path of
the forward and backward is exercised.

  check-adapter ADAPTER_DIR BASE_DIR REFERENCE OUT.json   load an adapter that dft-rs saved with
        PeftModel.from_pretrained onto BASE_DIR (a fixture name or a path), run the input_ids (REFERENCE or
        input_ids.safetensors beside it) and write the max |logits difference| vs REFERENCE's logits to
        OUT.json. The dft-rs side: DFT_WRITE_LORA_FIXTURE=1 cargo test --release -p dft-models --test lora
        -- peft_loads (writes lora/dftrs-llama/), then
        check-adapter lora/dftrs-llama/adapter tiny-llama lora/dftrs-llama/logits.safetensors lora/dftrs-llama/peft_check.json

Usage:  tools/oracle/setup.sh && tools/oracle/.venv/bin/python tools/oracle/lora_fixtures.py
Pinned versions: tools/oracle/requirements.txt.
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file, load_file
from transformers import AutoModelForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "crates" / "dft-models" / "tests" / "fixtures"
OUT = FIX / "lora"

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (case, base model, rank, alpha, target modules, modules_to_save, rslora)
CASES = [
    ("llama-all", "tiny-llama", 4, 8, ALL, None, False),
    ("llama-qv-head", "tiny-llama", 2, 16, ["q_proj", "v_proj"], ["lm_head"], False),
    ("gemma2-all", "tiny-gemma2", 4, 4, ALL, None, False),
    ("gemma2-mlp-rslora", "tiny-gemma2", 8, 16, ["gate_proj", "up_proj", "down_proj"], None, True),
]


def load_base(name):
    return AutoModelForCausalLM.from_pretrained(FIX / name, torch_dtype=torch.float32, attn_implementation="eager")


def make(case):
    name, base, r, alpha, targets, save, rslora = case
    torch.manual_seed(1234)
    model = load_base(base)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, modules_to_save=save,
                     bias="none", task_type="CAUSAL_LM", use_rslora=rslora)
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "modules_to_save" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (2, 11), generator=g)
    peft_model.train()  # dropout is 0; train() so that the modules_to_save copies are the ones used
    out = peft_model(input_ids=ids)
    logits = out.logits
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
    loss.backward()
    d = OUT / name
    (d / "adapter").mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(d / "adapter")
    saved = load_file(d / "adapter" / "adapter_model.safetensors")
    # Map each trainable parameter to its saved name (PEFT drops the adapter name "default" and, for
    # modules_to_save, the "modules_to_save.default" part).
    grads = {}
    for n, p in peft_model.named_parameters():
        if p.grad is None:
            continue
        key = n.replace(".default", "").replace(".modules_to_save", "")
        assert key in saved, (key, list(saved)[:4])
        grads["grad." + key] = p.grad.detach().clone().contiguous()
    assert set(k[5:] for k in grads) == set(saved), (sorted(grads), sorted(saved))
    with torch.no_grad():
        peft_model.eval()
        logits_eval = peft_model(input_ids=ids).logits
        assert torch.allclose(logits_eval, logits, atol=1e-6)
        merged = peft_model.merge_and_unload()
        merged_logits = merged(input_ids=ids).logits
    tensors = {"input_ids": ids.contiguous(), "logits": logits.detach().contiguous(),
               "merged_logits": merged_logits.contiguous(), "loss": loss.detach().reshape([])}
    tensors.update(grads)
    save_file(tensors, d / "reference.safetensors")
    print(f"{name}: loss {loss.item():.6f}, {len(saved)} adapter tensors, "
          f"|merged - unmerged| {float((merged_logits - logits).abs().max()):.2e}")


def check_adapter(adapter_dir, base_dir, reference, out):
    ref = load_file(reference)
    ids_file = Path(reference).with_name("input_ids.safetensors")
    if "input_ids" not in ref and ids_file.is_file():
        ref.update(load_file(ids_file))
    model = load_base(base_dir) if not Path(base_dir).is_absolute() else \
        AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation="eager")
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    peft_model.eval()
    with torch.no_grad():
        logits = peft_model(input_ids=ref["input_ids"]).logits
    diff = float((logits - ref["logits"]).abs().max())
    result = {"max_abs_logits_diff": diff, "adapter": str(adapter_dir), "base": str(base_dir)}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "check-adapter":
        check_adapter(*sys.argv[2:6])
    else:
        for c in CASES:
            make(c)
