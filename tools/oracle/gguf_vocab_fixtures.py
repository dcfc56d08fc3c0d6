"""Fixture for GGUF export of an HF directory's SentencePiece tokenizer (crates/dft-models/tests/hf_vocab.rs).

Trains a small SentencePiece BPE model (byte fallback, control and user-defined symbols) with the
`sentencepiece` library on the bundled Alpaca text, writes it as tests/fixtures/export/spm/tokenizer.model
with a config.json and tokenizer_config.json, and records what llama.cpp's own gguf-py package makes of
that directory: `gguf.vocab.SentencePieceVocab(dir).all_tokens()` (pieces, scores, token types) and
`gguf.vocab.SpecialVocab(dir)` (special ids, add_bos/eos) -> expected.json.

Run: /work/oracle-venv/bin/python tools/oracle/gguf_vocab_fixtures.py   (versions: requirements.txt)
"""
import json
import pathlib

import gguf
import sentencepiece as spm

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "crates/dft-models/tests/fixtures/export/spm"
out.mkdir(parents=True, exist_ok=True)
data = json.loads((root / "data/alpaca_en_zh/train.json").read_text())
text = out / "corpus.txt"
with open(text, "w") as f:
    for r in data[:400]:
        for k in ("en_instruction", "en_output", "zh_instruction", "zh_output"):
            if r.get(k):
                f.write(r[k].replace("\n", " ") + "\n")
spm.SentencePieceTrainer.train(
    input=str(text), model_prefix=str(out / "tokenizer"), vocab_size=1500, model_type="bpe",
    byte_fallback=True, character_coverage=0.98, control_symbols=["<start_of_turn>", "<end_of_turn>"],
    user_defined_symbols=["<tab>"], pad_id=0, unk_id=3, bos_id=2, eos_id=1, add_dummy_prefix=False,
    minloglevel=2,
)
text.unlink()
(out / "tokenizer.vocab").unlink()
(out / "config.json").write_text(json.dumps({"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "vocab_size": 1500}))
(out / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "add_eos_token": False}))

vocab = gguf.vocab.SentencePieceVocab(out)
toks = list(vocab.all_tokens())
special = gguf.vocab.SpecialVocab(out)
sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
expected = {
    "tokens": [t.decode("utf-8") for t, _, _ in toks],
    "scores": [s for _, s, _ in toks],
    "token_type": [int(ty) for _, _, ty in toks],
    "special_token_ids": special.special_token_ids,
    "add_special_token": special.add_special_token,
    "add_dummy_prefix": False,
    "encode_check": {"text": "Hello, 世界! <tab> 123", "pieces": sp.encode("Hello, 世界! <tab> 123", out_type=str)},
    "versions": {"gguf": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0", "sentencepiece": spm.__version__},
}
(out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=0))
print(len(toks), special)
