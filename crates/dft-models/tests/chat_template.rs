//! Chat templates against transformers' `apply_chat_template` (tools/oracle/chat_template_fixtures.py):
//! for SmolLM2-135M-Instruct (template from its GGUF) and Gemma-3-270M (Gemma-3's template), on
//! single- and multi-turn conversations with and without a system turn, with the generation prompt on
//! and off, the rendered string and the token ids equal transformers'; where the template raises
//! (Gemma's role alternation), we raise with the same message.
//!
//! The strings are checked always (the templates and special tokens are in the fixtures); the ids and
//! the template/special tokens read from the GGUF need the real models (skipped when absent unless
//! `DFT_REQUIRE_MODELS=1`).
mod common;
use common::*;
use dft_models::gguf::GgufFile;
use dft_models::{ChatMessage, ChatTemplate, SpecialTokenStrings, TokenizerMeta};
use std::path::Path;

struct Case {
    messages: Vec<ChatMessage>,
    gen: bool,
    text: Option<String>,
    ids: Option<Vec<u32>>,
    error: Option<String>,
}

struct Fixture {
    template: String,
    special: SpecialTokenStrings,
    cases: Vec<Case>,
}

fn load(name: &str) -> Fixture {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("chat/{name}.json"))).unwrap()).unwrap();
    let s = |k: &str| v["special_tokens"][k].as_str().map(String::from);
    let special = SpecialTokenStrings {
        bos_token: s("bos_token"),
        eos_token: s("eos_token"),
        unk_token: s("unk_token"),
        pad_token: s("pad_token"),
    };
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            messages: serde_json::from_value(c["messages"].clone()).unwrap(),
            gen: c["add_generation_prompt"].as_bool().unwrap(),
            text: c["text"].as_str().map(String::from),
            ids: c.get("ids").map(|i| serde_json::from_value(i.clone()).unwrap()),
            error: c["error"].as_str().map(String::from),
        })
        .collect();
    Fixture { template: v["template"].as_str().unwrap().to_string(), special, cases }
}

fn check_strings(name: &str) {
    let f = load(name);
    let t = ChatTemplate::new(&f.template, f.special.clone(), Path::new(name)).unwrap();
    assert!(f.cases.len() >= 10);
    for (i, c) in f.cases.iter().enumerate() {
        match (&c.text, &c.error) {
            (Some(want), _) => assert_eq!(&t.render(&c.messages, c.gen).unwrap(), want, "{name} case {i}"),
            (None, Some(msg)) => {
                let e = t.render(&c.messages, c.gen).unwrap_err().to_string();
                assert!(e.contains(msg.as_str()), "{name} case {i}: {e}");
            }
            _ => panic!("case without text or error"),
        }
    }
}

fn check_ids(name: &str, gguf: &Path, template_from_file: bool) {
    let file = GgufFile::open(gguf).unwrap();
    let tok = file.tokenizer().unwrap();
    let mut meta = TokenizerMeta::from_gguf(&file);
    let f = load(name);
    assert_eq!(meta.special_strings(), f.special, "{name}: special tokens as transformers reads them");
    if template_from_file {
        assert_eq!(meta.chat_template.as_deref(), Some(f.template.as_str()), "{name}: GGUF template");
    } else {
        assert_eq!(meta.chat_template, None);
        meta.chat_template = Some(f.template.clone());
    }
    let t = meta.chat_template().unwrap();
    let mut checked = 0;
    for (i, c) in f.cases.iter().enumerate() {
        if let Some(want) = &c.ids {
            assert_eq!(&t.encode(&tok, &c.messages, c.gen).unwrap(), want, "{name} case {i}");
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

#[test]
fn smollm2_chat_template_renders_like_transformers() {
    check_strings("smollm2");
}

#[test]
fn gemma3_chat_template_renders_like_transformers() {
    check_strings("gemma3");
}

#[test]
fn smollm2_chat_ids_match_transformers() {
    let Some(p) = smollm2_gguf() else { return };
    check_ids("smollm2", &p, true);
}

#[test]
fn gemma3_chat_ids_match_transformers() {
    let Some(p) = gemma3_gguf() else { return };
    check_ids("gemma3", &p, false);
}

#[test]
fn missing_template_is_a_clear_error() {
    let meta = TokenizerMeta { origin: "model.gguf".into(), ..Default::default() };
    let e = meta.chat_template().unwrap_err().to_string();
    assert!(e.contains("model.gguf") && e.contains("no chat template"), "{e}");
}
