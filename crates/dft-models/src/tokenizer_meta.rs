//! What a checkpoint says about its tokenizer beyond `tokenizer.json`: special-token strings,
//! whether BOS/EOS are added, the chat template and the model's maximum length. Read from GGUF
//! metadata or from an HF directory's `tokenizer_config.json` (+ `chat_template.jinja`,
//! `special_tokens_map.json`); written back as the files transformers' `save_pretrained` writes.

use crate::chat::{ChatTemplate, SpecialTokenStrings};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use std::path::{Path, PathBuf};

/// Tokenizer metadata of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerMeta {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
    /// Whether encoding with special tokens prepends BOS / appends EOS.
    pub add_bos_token: bool,
    pub add_eos_token: bool,
    /// The Jinja chat template, if the checkpoint has one.
    pub chat_template: Option<String>,
    /// `model_max_length` (the context length).
    pub model_max_length: Option<usize>,
    /// Where this was read from (for error messages).
    pub origin: PathBuf,
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::Tokenizer { path: path.into(), msg: format!("invalid JSON: {e}") })
}

/// A special token in `tokenizer_config.json` / `special_tokens_map.json`: a string or an
/// `AddedToken` object `{"content": ...}`.
fn token_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

impl TokenizerMeta {
    /// From GGUF metadata (`tokenizer.ggml.*_token_id`, `add_bos_token`, `tokenizer.chat_template`,
    /// `{arch}.context_length`).
    pub fn from_gguf(file: &GgufFile) -> Self {
        let tokens = file.opt("tokenizer.ggml.tokens", GgufFile::get_str_array).ok().flatten();
        let name = |id: Option<u32>| id.and_then(|i| tokens.and_then(|t| t.get(i as usize)).cloned());
        let ctx = file
            .architecture()
            .ok()
            .and_then(|a| file.opt(&format!("{a}.context_length"), GgufFile::get_usize).ok().flatten());
        TokenizerMeta {
            bos_token: name(file.bos_token_id()),
            eos_token: name(file.eos_token_id()),
            unk_token: name(file.unk_token_id()),
            pad_token: name(file.pad_token_id()),
            add_bos_token: file.add_bos_token(),
            add_eos_token: file.add_eos_token(),
            chat_template: file.chat_template().map(String::from),
            model_max_length: ctx,
            origin: file.path().into(),
        }
    }

    /// From an HF checkpoint directory: `tokenizer_config.json` (special tokens, `add_bos_token`,
    /// `chat_template`, `model_max_length`), `chat_template.jinja` (transformers 5 writes the
    /// template there), `special_tokens_map.json` for tokens the config does not name. Missing files
    /// give empty fields.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = read_json(&cfg_path)?.unwrap_or_default();
        let map = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or_default();
        let tok = |k: &str| token_string(cfg.get(k)).or_else(|| token_string(map.get(k)));
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|source| ModelError::Io { path: jinja.clone(), source })?)
        } else {
            match cfg.get("chat_template") {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                // a list of named templates: the one called "default"
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str())
                    .map(String::from),
                _ => None,
            }
        };
        let max_len = cfg.get("model_max_length").and_then(|v| v.as_f64()).filter(|v| *v < 1e15).map(|v| v as usize);
        Ok(TokenizerMeta {
            bos_token: tok("bos_token"),
            eos_token: tok("eos_token"),
            unk_token: tok("unk_token"),
            pad_token: tok("pad_token"),
            add_bos_token: cfg.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false),
            add_eos_token: cfg.get("add_eos_token").and_then(|v| v.as_bool()).unwrap_or(false),
            chat_template,
            model_max_length: max_len,
            origin: if cfg_path.is_file() { cfg_path } else { dir.into() },
        })
    }

    /// Of a model path: a `.gguf` file (header only) or an HF directory.
    pub fn from_model_path(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "gguf") {
            Ok(Self::from_gguf(&GgufFile::open(path)?))
        } else {
            Self::from_hf_dir(path)
        }
    }

    /// The special-token strings a chat template is rendered with.
    pub fn special_strings(&self) -> SpecialTokenStrings {
        SpecialTokenStrings {
            bos_token: self.bos_token.clone(),
            eos_token: self.eos_token.clone(),
            unk_token: self.unk_token.clone(),
            pad_token: self.pad_token.clone(),
        }
    }

    /// The compiled chat template; an error naming the checkpoint when it has none.
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        let src = self.chat_template.as_deref().ok_or_else(|| ModelError::ChatTemplate {
            path: self.origin.clone(),
            msg: "is missing: the checkpoint has no chat template (GGUF `tokenizer.chat_template` or \
                  `chat_template` in tokenizer_config.json)"
                .into(),
        })?;
        ChatTemplate::new(src, self.special_strings(), &self.origin)
    }

    /// `tokenizer_config.json` as transformers' `save_pretrained` writes it for a fast tokenizer
    /// (the tokenizer itself is `tokenizer.json`).
    pub fn tokenizer_config_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        for (k, v) in self.named() {
            m.insert(k.into(), v.into());
        }
        m.insert("add_bos_token".into(), self.add_bos_token.into());
        m.insert("add_eos_token".into(), self.add_eos_token.into());
        m.insert("clean_up_tokenization_spaces".into(), false.into());
        if let Some(n) = self.model_max_length {
            m.insert("model_max_length".into(), n.into());
        }
        if let Some(t) = &self.chat_template {
            m.insert("chat_template".into(), t.clone().into());
        }
        serde_json::Value::Object(m)
    }

    /// `special_tokens_map.json`.
    pub fn special_tokens_map_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.named().into_iter().map(|(k, v)| (k.to_string(), v.into())).collect())
    }

    fn named(&self) -> Vec<(&'static str, String)> {
        [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("unk_token", &self.unk_token),
            ("pad_token", &self.pad_token),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}
