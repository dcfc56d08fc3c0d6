#!/usr/bin/env python3
"""Oracle fixtures for chat templates (crates/dft-models/src/chat.rs, tests/chat_template.rs).

transformers' `apply_chat_template` renders each conversation below with the model's own template,
as text (tokenize=False) and as token ids (tokenize=True), with and without the generation prompt:

* SmolLM2-135M-Instruct: tokenizer and template from the GGUF (`tokenizer.chat_template`);
* Gemma-3-270M: tokenizer from the GGUF; the GGUF has no template, so Gemma-3's template (the
  `chat_template` of google/gemma-3-270m's tokenizer_config.json, verbatim below) is set on it.

Run from the repository root with the oracle venv:

    /work/oracle-venv/bin/python tools/oracle/chat_template_fixtures.py

Model paths: env DFT_SMOLLM2_GGUF / DFT_GEMMA3_GGUF (as the tests). Writes
crates/dft-models/tests/fixtures/chat/{smollm2,gemma3}.json: the template, the special-token strings
transformers renders it with, and per case the messages, add_generation_prompt, text and ids (or the
error message when transformers raises).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import AutoTokenizer

OUT = Path("crates/dft-models/tests/fixtures/chat")

GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n"
)

U, A, S = "user", "assistant", "system"
CONVERSATIONS = [
    [(U, "What is the capital of France?")],
    [(S, "You are a terse assistant."), (U, "Name three colours.")],
    [(U, "Hi!"), (A, "Hello! How can I help?"), (U, "用一句话介绍北京。")],
    [(S, "Antworte auf Deutsch."), (U, "  Wie spät ist es?  \n"), (A, "Es ist Mittag."), (U, "Danke")],
    [(U, "Line one\nLine two\n\nTabs\there"), (A, "Xin chào, bạn khỏe không? مرحبا")],
    [(A, "I speak first."), (U, "odd order")],
]


def record(name: str, gguf: Path, template: str | None) -> None:
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if template is not None:
        tok.chat_template = template
    cases = []
    for conv in CONVERSATIONS:
        messages = [{"role": r, "content": c} for r, c in conv]
        for gen in (False, True):
            case = {"messages": messages, "add_generation_prompt": gen}
            try:
                case["text"] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
                if not isinstance(ids, list):  # BatchEncoding (transformers 5 returns a dict by default)
                    ids = ids["input_ids"]
                case["ids"] = [int(i) for i in ids]
                # the same ids as encoding the text without special tokens
                assert case["ids"] == tok(case["text"], add_special_tokens=False)["input_ids"]
            except Exception as e:  # noqa: BLE001 - the template's raise_exception
                case["error"] = str(e)
            cases.append(case)
    out = {
        "model": name,
        "source": gguf.name,
        "template": tok.chat_template,
        "special_tokens": {k: getattr(tok, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")},
        "cases": cases,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"{name}: {len(cases)} cases, {sum('error' in c for c in cases)} raise")


def main() -> None:
    smol = Path(os.environ.get("DFT_SMOLLM2_GGUF", ".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    gemma = Path(os.environ.get("DFT_GEMMA3_GGUF", ".cache/models/gemma3/gemma-3-270m-q4_k_m.gguf"))
    record("smollm2", smol, None)
    record("gemma3", gemma, GEMMA3_TEMPLATE)


if __name__ == "__main__":
    main()
