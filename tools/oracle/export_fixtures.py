#!/usr/bin/env python3
"""Oracle fixtures for `dft export` (crates/dft-models/src/export.rs, gguf/writer.rs; test
crates/dft-models/tests/export.rs).

`target/release/dft export` (build it first: `cargo build --release`) writes HF directories and GGUF
files of the committed tiny models; then the reference tools load what it wrote:

* HF exports (tiny-llama, tiny-gemma2, tiny-gemma3 in f32; tiny-llama in bf16 sharded at 40KB;
  tiny_llama.gguf with its tokenizer and a chat template): transformers' AutoModelForCausalLM (eager,
  f32) logits of fixed ids; AutoTokenizer ids of a few strings and `apply_chat_template` text and ids.
* GGUF exports (tiny_llama.gguf and tiny_gemma2.gguf in f32, f16, q8_0): the `gguf` package's
  GGUFReader (tensor names, types, shapes, chosen metadata), transformers (`gguf_file=`) logits and
  tokenizer ids; every F16 / Q8_0 tensor's bytes must equal `gguf.quants.quantize` of the f32 export's
  values (asserted here; the count is recorded).

Per export it records the sha256 of every file, so the Rust test (which re-exports with the library)
knows transformers/gguf loaded exactly the bytes it writes, and compares dft-rs's logits and ids on the
re-imported export with the ones recorded here. Run from the repository root:

    cargo build --release && /work/oracle-venv/bin/python tools/oracle/export_fixtures.py
    /work/oracle-venv/bin/python tools/oracle/export_fixtures.py --real   # SmolLM2 + Gemma-3-270M (see below)

Writes crates/dft-models/tests/fixtures/export/export.json (small).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

FIX = Path("crates/dft-models/tests/fixtures")
OUT = FIX / "export" / "export.json"
DFT = Path("target/release/dft")
IDS = [[1, 5, 9, 17, 33, 2, 40, 7]]
TEXTS = ["Hello world", "the quick brown fox", " leading space", "a\nb"]
CONVERSATIONS = [
    [{"role": "user", "content": "hi there"}],
    [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}],
]


def sha256s(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def logits(model) -> list:
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits[0].float().numpy().astype(float).round(7).tolist()


def tokenizer_part(tok) -> dict:
    out = {"ids": [tok(t)["input_ids"] for t in TEXTS]}
    if tok.chat_template:
        chats = []
        for conv in CONVERSATIONS:
            text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
            ids = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=True)
            if not isinstance(ids, list):
                ids = ids["input_ids"]
            chats.append({"messages": conv, "text": text, "ids": [int(i) for i in ids]})
        out["chat"] = chats
    return out


def dft_export(args: list[str]) -> None:
    subprocess.run([str(DFT), "export", *args], check=True, capture_output=True)


def main() -> None:
    chat = json.loads((FIX / "chat" / "gemma3.json").read_text())["template"]
    result: dict = {"ids": IDS, "texts": TEXTS, "hf": [], "gguf": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "chat.jinja").write_text(chat)
        hf_cases = [
            ("tiny-llama", str(FIX / "tiny-llama"), []),
            ("tiny-gemma2", str(FIX / "tiny-gemma2"), []),
            ("tiny-gemma3", str(FIX / "tiny-gemma3"), []),
            ("tiny-llama-bf16-sharded", str(FIX / "tiny-llama"), ["--dtype", "bf16", "--shard-size", "40KB"]),
            ("tiny_llama-tokenizer", str(FIX / "gguf" / "tiny_llama.gguf"), ["--chat-template", str(tmp / "chat.jinja")]),
        ]
        for name, src, extra in hf_cases:
            out = tmp / name
            dft_export(["--checkpoint", src, "--out", str(out), *extra])
            model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32, attn_implementation="eager")
            case = {"name": name, "source": src, "args": extra, "files": sha256s(out), "logits": logits(model)}
            if (out / "tokenizer.json").is_file():
                case["tokenizer"] = tokenizer_part(AutoTokenizer.from_pretrained(str(out)))
            result["hf"].append(case)
            print(name, sorted(case["files"]))
        for src in ("tiny_llama", "tiny_gemma2"):
            for ty in ("f32", "f16", "q8_0"):
                out = tmp / f"{src}.{ty}.gguf"
                dft_export(["--checkpoint", str(FIX / "gguf" / f"{src}.gguf"), "--gguf", str(out), "--type", ty])
                reader = gguf.GGUFReader(str(out))
                same = None
                if ty != "f32":
                    # our F16 / Q8_0 bytes equal gguf-py's quantisation of the f32 export's values
                    ref = {t.name: t for t in gguf.GGUFReader(str(tmp / f"{src}.f32.gguf")).tensors}
                    same = 0
                    for t in reader.tensors:
                        if t.tensor_type.name in ("F16", "Q8_0"):
                            values = np.asarray(ref[t.name].data, dtype=np.float32)
                            want = gguf.quants.quantize(values, t.tensor_type)
                            assert bytes(np.asarray(t.data).tobytes()) == bytes(want.tobytes()), (out.name, t.name)
                            same += 1
                tensors = [[t.name, t.tensor_type.name, [int(d) for d in t.shape]] for t in reader.tensors]
                keys = sorted(k for k in reader.fields if not k.startswith("GGUF."))
                config = AutoConfig.from_pretrained(str(tmp), gguf_file=out.name)
                patched = {}
                if src == "tiny_gemma2":
                    # transformers' GGUF loader leaves these at Gemma2Config's defaults; set the values the
                    # file carries (llama.cpp's reading: query scale 1/sqrt(head_dim))
                    field = lambda k: reader.fields[k].contents()  # noqa: E731
                    patched = {
                        "attn_logit_softcapping": float(field("gemma2.attn_logit_softcapping")),
                        "final_logit_softcapping": float(field("gemma2.final_logit_softcapping")),
                        "sliding_window": int(field("gemma2.attention.sliding_window")),
                        "query_pre_attn_scalar": int(field("gemma2.attention.key_length")),
                    }
                    for k, v in patched.items():
                        setattr(config, k, v)
                model = AutoModelForCausalLM.from_pretrained(
                    str(tmp), gguf_file=out.name, config=config, dtype=torch.float32, attn_implementation="eager"
                )
                tok = AutoTokenizer.from_pretrained(str(tmp), gguf_file=out.name)
                result["gguf"].append({
                    "name": f"{src}.{ty}",
                    "source": str(FIX / "gguf" / f"{src}.gguf"),
                    "type": ty,
                    "files": sha256s(out),
                    "gguf_tensors": tensors,
                    "gguf_keys": keys,
                    "config_patched": patched,
                    "logits": logits(model),
                    "tokenizer": tokenizer_part(tok),
                    **({"quantized_like_gguf_py": same} if same is not None else {}),
                })
                print(out.name, len(tensors), "tensors")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, ensure_ascii=False) + "\n")
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__" and "--real" not in __import__("sys").argv:
    main()


# ---------------------------------------------------------------------------------------------------
# Real models (`--real`): SmolLM2-135M-Instruct and Gemma-3-270M GGUFs (env DFT_SMOLLM2_GGUF /
# DFT_GEMMA3_GGUF) exported by `dft export` to an f32 HF directory and an f32 GGUF; transformers loads
# both. Writes crates/dft-models/tests/fixtures/export/real.json: sha256 of every file, transformers'
# logits of a prompt at every position for a strided sample of vocabulary ids (every 509th, plus the
# argmax), the argmax, token ids of a few strings and, where the model has a chat template,
# apply_chat_template text and ids.
REAL_PROMPT = "The capital of France is Paris, and the capital of China is"
VOCAB_STRIDE = 509


def sampled_logits(model, ids: list[int]) -> dict:
    with torch.no_grad():
        full = model(torch.tensor([ids])).logits[0].float().numpy()
    return {
        "stride": VOCAB_STRIDE,
        "strided": full[:, ::VOCAB_STRIDE].astype(float).round(6).tolist(),
        "argmax": [int(i) for i in full.argmax(axis=1)],
        "max": full.max(axis=1).astype(float).round(6).tolist(),
    }


def real(name: str, gguf_path: Path, out_json: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hf, gg = tmp / "hf", tmp / f"{name}.f32.gguf"
        dft_export(["--checkpoint", str(gguf_path), "--out", str(hf), "--gguf", str(gg), "--type", "f32"])
        tok = AutoTokenizer.from_pretrained(str(hf))
        ids = tok(REAL_PROMPT)["input_ids"]
        entry = {"hf_files": sha256s(hf), "gguf_files": sha256s(gg), "prompt_ids": ids}
        model = AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32, attn_implementation="eager")
        entry["hf_logits"] = sampled_logits(model, ids)
        entry["hf_tokenizer"] = tokenizer_part(tok)
        del model
        model = AutoModelForCausalLM.from_pretrained(
            str(tmp), gguf_file=gg.name, dtype=torch.float32, attn_implementation="eager"
        )
        entry["gguf_logits"] = sampled_logits(model, ids)
        entry["gguf_tokenizer"] = tokenizer_part(AutoTokenizer.from_pretrained(str(tmp), gguf_file=gg.name))
        out_json[name] = entry
        print(name, "done")


def main_real() -> None:
    import os

    out: dict = {"prompt": REAL_PROMPT, "texts": TEXTS}
    real("smollm2", Path(os.environ["DFT_SMOLLM2_GGUF"]), out)
    real("gemma3", Path(os.environ["DFT_GEMMA3_GGUF"]), out)
    path = FIX / "export" / "real.json"
    path.write_text(json.dumps(out, ensure_ascii=False) + "\n")
    print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__" and "--real" in __import__("sys").argv:
    main_real()
