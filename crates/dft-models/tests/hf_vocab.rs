//! GGUF tokenizer metadata from a Hugging Face directory (`dft_models::gguf::hf_vocab`).
//!
//! The SentencePiece case is checked against llama.cpp's own gguf-py package on a SentencePiece model
//! trained by the `sentencepiece` library (tools/oracle/gguf_vocab_fixtures.py): pieces, scores and
//! token types equal `gguf.vocab.SentencePieceVocab`, special ids and add_bos/eos equal
//! `gguf.vocab.SpecialVocab`. The byte-level BPE case is checked on the real SmolLM2 in export_real.rs
//! (against the GGUF llama.cpp's converter wrote).
mod common;
use common::fixture;
use dft_models::gguf::hf_vocab::{bpe_pre_name, hf_tokenizer_metadata, looks_special, SpmModel};
use dft_models::gguf::{MetaArray, MetaValue};
use dft_test_support::scratch::ScratchDir;

fn get<'a>(kv: &'a [(String, MetaValue)], k: &str) -> &'a MetaValue {
    &kv.iter().find(|(key, _)| key == k).unwrap_or_else(|| panic!("no key {k}")).1
}

fn strings(v: &MetaValue) -> &[String] {
    match v {
        MetaValue::Array(MetaArray::String(s)) => s,
        other => panic!("not a string array: {other:?}"),
    }
}

/// A fresh scratch directory holding a copy of the SentencePiece fixture, removed when the test passes and
/// kept when it fails.
fn tmp_copy(name: &str) -> ScratchDir {
    let dir = ScratchDir::new(format!("dft-hf-vocab-{}-{name}", std::process::id()));
    for f in ["tokenizer.model", "config.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("export/spm").join(f), dir.join(f)).unwrap();
    }
    dir
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("export/spm/expected.json")).unwrap()).unwrap()
}

#[test]
fn sentencepiece_vocab_equals_gguf_py() {
    let want = expected();
    let kv = hf_tokenizer_metadata(&fixture("export/spm"), 1500).unwrap().unwrap();
    assert_eq!(get(&kv, "tokenizer.ggml.model"), &MetaValue::String("llama".into()));
    let tokens = strings(get(&kv, "tokenizer.ggml.tokens"));
    let want_tokens: Vec<String> = serde_json::from_value(want["tokens"].clone()).unwrap();
    assert_eq!(tokens, want_tokens.as_slice());
    let MetaValue::Array(MetaArray::F32(scores)) = get(&kv, "tokenizer.ggml.scores") else { panic!() };
    let want_scores: Vec<f32> = serde_json::from_value(want["scores"].clone()).unwrap();
    assert_eq!(scores, &want_scores);
    let MetaValue::Array(MetaArray::I32(types)) = get(&kv, "tokenizer.ggml.token_type") else { panic!() };
    let want_types: Vec<i32> = serde_json::from_value(want["token_type"].clone()).unwrap();
    assert_eq!(types, &want_types);
    assert!(types.contains(&6) && types.contains(&3) && types.contains(&2), "byte, control and unknown pieces");
    for (typ, key) in [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id")] {
        let id = want["special_token_ids"][typ].as_u64().unwrap() as u32;
        assert_eq!(get(&kv, &format!("tokenizer.ggml.{key}")), &MetaValue::U32(id), "{typ}");
    }
    assert_eq!(get(&kv, "tokenizer.ggml.add_bos_token"), &MetaValue::Bool(want["add_special_token"]["bos"] == true));
    assert_eq!(get(&kv, "tokenizer.ggml.add_eos_token"), &MetaValue::Bool(want["add_special_token"]["eos"] == true));
    assert_eq!(get(&kv, "tokenizer.ggml.add_space_prefix"), &MetaValue::Bool(false));
}

/// convert_hf_to_gguf.py's rules beyond gguf-py's vocabulary: padding slots up to the model's
/// vocabulary size, `added_tokens_decoder` overriding types (special or special-looking → CONTROL,
/// else USER_DEFINED with `▁` → space, score −1000).
#[test]
fn padding_slots_and_added_tokens_decoder() {
    let dir = tmp_copy("decoder");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"add_bos_token": true, "added_tokens_decoder": {
            "6": {"content": "<tab>", "special": false},
            "7": {"content": "<unused0>", "special": false},
            "8": {"content": "▁x", "special": false},
            "5": {"content": "<end_of_turn>", "special": true}}}"#,
    )
    .unwrap();
    let kv = hf_tokenizer_metadata(&dir, 1503).unwrap().unwrap();
    let tokens = strings(get(&kv, "tokenizer.ggml.tokens"));
    let MetaValue::Array(MetaArray::I32(types)) = get(&kv, "tokenizer.ggml.token_type") else { panic!() };
    let MetaValue::Array(MetaArray::F32(scores)) = get(&kv, "tokenizer.ggml.scores") else { panic!() };
    assert_eq!(tokens.len(), 1503);
    assert_eq!(&tokens[1500..], ["[PAD1500]", "[PAD1501]", "[PAD1502]"]);
    assert_eq!((types[1502], scores[1502]), (5, -10000.0));
    assert_eq!((tokens[6].as_str(), types[6], scores[6]), ("<tab>", 4, -1000.0));
    assert_eq!((tokens[7].as_str(), types[7]), ("<unused0>", 3), "looks special");
    assert_eq!((tokens[8].as_str(), types[8]), (" x", 4));
    assert_eq!(types[5], 3);
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let dir = tmp_copy("bad");
    std::fs::write(dir.join("tokenizer.model"), b"\x0a\xff\xff\xff").unwrap();
    let e = hf_tokenizer_metadata(&dir, 10).unwrap_err().to_string();
    assert!(e.contains("tokenizer.model") && e.contains("not a SentencePiece model"), "{e}");

    // a byte-fallback BPE tokenizer.json without its tokenizer.model: refused (no scores)
    std::fs::remove_file(dir.join("tokenizer.model")).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []},
            "decoder": {"type": "Sequence"}, "added_tokens": []}"#,
    )
    .unwrap();
    let e = hf_tokenizer_metadata(&dir, 1).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("tokenizer.model"), "{e}");

    std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
    let e = hf_tokenizer_metadata(&dir, 1).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("invalid JSON"), "{e}");

    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert!(hf_tokenizer_metadata(&dir, 1).unwrap().is_none(), "no tokenizer at all");
    assert!(SpmModel::parse(&[]).is_err());
}

/// A tiny byte-level BPE tokenizer.json: ids in order with added tokens after the vocabulary, merges
/// in both spellings, special flags, and the SpecialVocab rules for ids and add_bos.
#[test]
fn byte_level_bpe_vocab() {
    let dir = ScratchDir::new(format!("dft-hf-vocab-{}-bpe", std::process::id()));
    let tj = serde_json::json!({
        "model": {"type": "BPE", "vocab": {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3, "Ġ": 4, "Ġa": 5},
                  "merges": [["a", "b"], ["Ġ", "a"]]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "decoder": {"type": "ByteLevel"},
        "post_processor": {"type": "ByteLevel"},
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": true},
                          {"id": 6, "content": "<tool>", "special": false},
                          {"id": 7, "content": "<|im_end|>", "special": false}]
    });
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>", "bos_token": "<|endoftext|>", "add_bos_token": false}"#,
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), r#"{"eos_token_id": 0, "pad_token_id": 7}"#).unwrap();
    let kv = hf_tokenizer_metadata(&dir, 9).unwrap().unwrap();
    assert_eq!(get(&kv, "tokenizer.ggml.model"), &MetaValue::String("gpt2".into()));
    assert_eq!(get(&kv, "tokenizer.ggml.pre"), &MetaValue::String("smollm".into()));
    assert_eq!(
        strings(get(&kv, "tokenizer.ggml.tokens")),
        ["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġa", "<tool>", "<|im_end|>", "[PAD8]"]
    );
    assert_eq!(
        get(&kv, "tokenizer.ggml.token_type"),
        &MetaValue::Array(MetaArray::I32(vec![3, 1, 1, 1, 1, 1, 4, 3, 5]))
    );
    assert_eq!(strings(get(&kv, "tokenizer.ggml.merges")), ["a b", "Ġ a"]);
    // tokenizer_config's strings first, config.json's ids only where those gave none
    assert_eq!(get(&kv, "tokenizer.ggml.eos_token_id"), &MetaValue::U32(7));
    assert_eq!(get(&kv, "tokenizer.ggml.bos_token_id"), &MetaValue::U32(0));
    assert_eq!(get(&kv, "tokenizer.ggml.padding_token_id"), &MetaValue::U32(7));
    assert_eq!(get(&kv, "tokenizer.ggml.add_bos_token"), &MetaValue::Bool(false));
}

#[test]
fn pre_tokenizer_names_and_special_looking_tokens() {
    let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    assert_eq!(bpe_pre_name(Some(&v(r#"{"type": "ByteLevel", "use_regex": true}"#))), Some("gpt-2"));
    let llama3 = r#"{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}"#;
    assert_eq!(bpe_pre_name(Some(&v(llama3))), Some("llama-bpe"));
    assert_eq!(bpe_pre_name(Some(&v(r#"{"type": "Whitespace"}"#))), None);
    assert_eq!(bpe_pre_name(None), None);
    for t in ["<|im_start|>", "<unused12>", "<mask>", "<｜begin▁of▁sentence｜>"] {
        assert!(looks_special(t), "{t}");
    }
    for t in ["<tool>", "hello", "<unused"] {
        assert!(!looks_special(t), "{t}");
    }
}
