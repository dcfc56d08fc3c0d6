//! GGUF tokenizer metadata (`tokenizer.ggml.*`) from a Hugging Face model directory, so a model trained
//! from an HF checkpoint exports to a GGUF that llama.cpp / ollama can tokenize with.
//!
//! Two vocabulary kinds, as llama.cpp's `convert_hf_to_gguf.py` writes them:
//!
//! * **SentencePiece** (`tokenizer.model` present: Llama-2, Gemma, Mistral): model `llama`; every
//!   piece with its score and type from the protobuf (UNKNOWN, CONTROL, UNUSED, BYTE, else NORMAL,
//!   as `SentencePieceProcessor.IsUnknown/IsControl/IsUnused/IsByte` decide); `added_tokens.json`
//!   entries as USER_DEFINED; `tokenizer_config.json`'s `added_tokens_decoder` overriding their ids
//!   (CONTROL when `special` or when the text looks special, else USER_DEFINED with `▁` → space, score
//!   −1000); slots up to the model's vocabulary size as `[PAD{i}]` (UNUSED, score −10000);
//!   `add_space_prefix` from the normalizer's `add_dummy_prefix`.
//! * **Byte-level BPE** (`tokenizer.json` with a BPE model, no byte fallback, `ByteLevel` decoder:
//!   GPT-2, SmolLM2, Llama-3, Qwen2): model `gpt2`; tokens in id order from the vocabulary and the added
//!   tokens (CONTROL when special or special-looking, USER_DEFINED for other added tokens, NORMAL
//!   otherwise, `[PAD{i}]` UNUSED for ids no token has); merges as `"left right"` strings (a space
//!   inside a piece written as U+0120+... i.e. `chr(ord(' ') + 256)`, as gguf-py does); the
//!   pre-tokenizer name from the structure of `tokenizer.json`'s pre-tokenizer (see [`bpe_pre_name`];
//!   llama.cpp instead fingerprints the tokenizer's output on a test text against its table of known
//!   models, and refuses unknown ones; an unrecognised structure here is `default` with a warning).
//!
//! Special ids and `add_bos/eos_token` follow gguf-py's `SpecialVocab`: `tokenizer_config.json`'s
//! `{bos,eos,unk,sep,pad,cls,mask}_token` looked up among `tokenizer.json`'s added tokens, then
//! `config.json`'s `*_token_id`, the first found winning; `add_*_token` from `tokenizer_config.json`,
//! else from a `TemplateProcessing` post-processor's leading / trailing special token.
//! A `tokenizer.json` with byte fallback and no `tokenizer.model` (a SentencePiece vocabulary whose
//! scores are gone) is refused: llama.cpp's tokenizer merges by score, and inventing scores would give
//! a GGUF that tokenizes differently.

use super::{MetaArray, MetaValue};
use crate::error::{ModelError, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

fn err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Tokenizer { path: path.into(), msg: msg.into() }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map(Some).map_err(|e| err(path, format!("invalid JSON: {e}")))
}

/// One piece of a SentencePiece model: text, score, `sentencepiece_model.proto` type (1..=6).
#[derive(Debug, Clone, PartialEq)]
pub struct SpmPiece {
    pub piece: String,
    pub score: f32,
    pub kind: i32,
}

/// The parts of a `tokenizer.model` (SentencePiece `ModelProto`) a GGUF needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmModel {
    pub pieces: Vec<SpmPiece>,
    /// `normalizer_spec.add_dummy_prefix` (protobuf default: true).
    pub add_dummy_prefix: bool,
}

/// A protobuf reader over one message (only what `ModelProto` needs: varints, 32/64-bit, bytes).
struct Proto<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Proto<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// The next `(field number, value)`, `None` at the end, `Some(Err)` on malformed input.
    fn next(&mut self) -> Option<std::result::Result<(u64, Field<'a>), String>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let Some(key) = self.varint() else { return Some(Err("truncated field key".into())) };
        let take = |p: &mut Self, n: usize| -> std::result::Result<&'a [u8], String> {
            let end = p.pos.checked_add(n).filter(|&e| e <= p.buf.len()).ok_or("truncated field")?;
            let s = &p.buf[p.pos..end];
            p.pos = end;
            Ok(s)
        };
        let value = match key & 7 {
            0 => self.varint().map(Field::Varint).ok_or_else(|| "truncated varint".to_string()),
            1 => take(self, 8).map(|_| Field::Other),
            2 => match self.varint() {
                Some(n) => take(self, n as usize).map(Field::Bytes),
                None => Err("truncated length".into()),
            },
            5 => take(self, 4).map(|b| Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            w => Err(format!("unsupported wire type {w}")),
        };
        Some(value.map(|v| (key >> 3, v)))
    }
}

impl SpmModel {
    /// Parse a `tokenizer.model` file.
    pub fn read(path: &Path) -> Result<Self> {
        let buf = std::fs::read(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
        Self::parse(&buf).map_err(|m| err(path, format!("not a SentencePiece model: {m}")))
    }

    /// Parse the bytes of a SentencePiece `ModelProto` (field 1: pieces; field 3: normalizer spec).
    pub fn parse(buf: &[u8]) -> std::result::Result<Self, String> {
        let mut model = SpmModel { pieces: Vec::new(), add_dummy_prefix: true };
        let mut p = Proto { buf, pos: 0 };
        while let Some(f) = p.next() {
            match f? {
                (1, Field::Bytes(b)) => {
                    let mut piece = SpmPiece { piece: String::new(), score: 0.0, kind: NORMAL };
                    let mut q = Proto { buf: b, pos: 0 };
                    while let Some(g) = q.next() {
                        match g? {
                            (1, Field::Bytes(s)) => {
                                piece.piece = String::from_utf8(s.to_vec())
                                    .map_err(|_| format!("piece {} is not UTF-8", model.pieces.len()))?
                            }
                            (2, Field::Fixed32(v)) => piece.score = f32::from_bits(v),
                            (3, Field::Varint(v)) => piece.kind = v as i32,
                            _ => {}
                        }
                    }
                    if !(NORMAL..=BYTE).contains(&piece.kind) {
                        return Err(format!("piece {} has unknown type {}", model.pieces.len(), piece.kind));
                    }
                    model.pieces.push(piece);
                }
                (3, Field::Bytes(b)) => {
                    let mut q = Proto { buf: b, pos: 0 };
                    while let Some(g) = q.next() {
                        if let (3, Field::Varint(v)) = g? {
                            model.add_dummy_prefix = v != 0;
                        }
                    }
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err("no pieces".into());
        }
        Ok(model)
    }
}

/// llama.cpp's `does_token_look_special`: added tokens some models forget to mark special.
pub fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// llama.cpp's `tokenizer.ggml.pre` name for a byte-level BPE `tokenizer.json` pre-tokenizer, when its
/// structure is one llama.cpp knows: GPT-2's `ByteLevel` split alone (`gpt-2`), single digits then
/// GPT-2's split (`smollm`, as SmolLM/StarCoder), or a `Split` regex of Llama-3 / Qwen2 followed by a
/// `ByteLevel` without regex.
pub fn bpe_pre_name(pre: Option<&Value>) -> Option<&'static str> {
    let pre = pre?;
    let ty = |v: &Value| v.get("type").and_then(Value::as_str).map(String::from).unwrap_or_default();
    let byte_level_regex =
        |v: &Value| ty(v) == "ByteLevel" && v.get("use_regex").and_then(Value::as_bool) != Some(false);
    if byte_level_regex(pre) {
        return Some("gpt-2");
    }
    let items = pre.get("pretokenizers").and_then(Value::as_array)?;
    match items.as_slice() {
        [d, b]
            if ty(d) == "Digits" && d.get("individual_digits") == Some(&Value::Bool(true)) && byte_level_regex(b) =>
        {
            Some("smollm")
        }
        [s, b] if ty(s) == "Split" && ty(b) == "ByteLevel" => {
            let regex = s.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str)?;
            Some(match regex {
                super::tokenizer::LLAMA3_SPLIT => "llama-bpe",
                super::tokenizer::QWEN2_SPLIT => "qwen2",
                _ => return None,
            })
        }
        _ => None,
    }
}

/// `tokenizer.ggml.*` key/values for the tokenizer of the HF directory `dir` whose model has
/// `vocab_size` embedding rows (see the module docs). `Ok(None)` when `dir` has neither
/// `tokenizer.model` nor `tokenizer.json`.
pub fn hf_tokenizer_metadata(dir: &Path, vocab_size: usize) -> Result<Option<Vec<(String, MetaValue)>>> {
    let tok_json_path = dir.join("tokenizer.json");
    let tok_json = read_json(&tok_json_path)?;
    let tok_cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let spm_path = dir.join("tokenizer.model");
    let mut kv: Vec<(String, MetaValue)> = Vec::new();
    let tokens = if spm_path.is_file() {
        let spm = SpmModel::read(&spm_path)?;
        let (tokens, scores, types) = spm_vocab(dir, &spm, &tok_cfg, vocab_size)?;
        kv.push(("tokenizer.ggml.model".into(), MetaValue::String("llama".into())));
        kv.push(("tokenizer.ggml.pre".into(), MetaValue::String("default".into())));
        kv.push(("tokenizer.ggml.tokens".into(), MetaValue::Array(MetaArray::String(tokens.clone()))));
        kv.push(("tokenizer.ggml.scores".into(), MetaValue::Array(MetaArray::F32(scores))));
        kv.push(("tokenizer.ggml.token_type".into(), MetaValue::Array(MetaArray::I32(types))));
        kv.push(("tokenizer.ggml.add_space_prefix".into(), MetaValue::Bool(spm.add_dummy_prefix)));
        tokens
    } else if let Some(tj) = &tok_json {
        let model = &tj["model"];
        if model["type"] != "BPE" || tj["decoder"]["type"] != "ByteLevel" {
            let why = if model["byte_fallback"] == Value::Bool(true) {
                "a SentencePiece-style vocabulary (byte fallback) without its tokenizer.model: the piece scores \
                 llama.cpp merges by are not in tokenizer.json; put the model's tokenizer.model beside it"
                    .to_string()
            } else {
                format!(
                    "a {} tokenizer with a {} decoder (GGUF export supports byte-level BPE and SentencePiece)",
                    model["type"], tj["decoder"]["type"]
                )
            };
            return Err(err(&tok_json_path, why));
        }
        let (tokens, types) = bpe_vocab(&tok_json_path, tj, &tok_cfg, vocab_size)?;
        let merges = bpe_merges(&tok_json_path, &model["merges"])?;
        let pre = bpe_pre_name(tj.get("pre_tokenizer")).unwrap_or_else(|| {
            eprintln!(
                "warning: {}: pre-tokenizer not recognised; the GGUF says `default` (llama.cpp's own fallback), \
                 which may split text differently",
                tok_json_path.display()
            );
            "default"
        });
        kv.push(("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into())));
        kv.push(("tokenizer.ggml.pre".into(), MetaValue::String(pre.into())));
        kv.push(("tokenizer.ggml.tokens".into(), MetaValue::Array(MetaArray::String(tokens.clone()))));
        kv.push(("tokenizer.ggml.token_type".into(), MetaValue::Array(MetaArray::I32(types))));
        kv.push(("tokenizer.ggml.merges".into(), MetaValue::Array(MetaArray::String(merges))));
        tokens
    } else {
        return Ok(None);
    };
    special_vocab(dir, tok_json.as_ref(), &tok_cfg, tokens.len(), &mut kv)?;
    Ok(Some(kv))
}

type SpmVocab = (Vec<String>, Vec<f32>, Vec<i32>);

fn spm_vocab(dir: &Path, spm: &SpmModel, tok_cfg: &Value, vocab_size: usize) -> Result<SpmVocab> {
    let n = vocab_size.max(1);
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n];
    let mut types = vec![UNUSED; n];
    for (i, p) in spm.pieces.iter().enumerate().take(n) {
        tokens[i] = p.piece.clone();
        scores[i] = p.score;
        types[i] = match p.kind {
            UNKNOWN | CONTROL | UNUSED | BYTE => p.kind,
            _ => NORMAL,
        };
    }
    let added_path = dir.join("added_tokens.json");
    if let Some(Value::Object(added)) = read_json(&added_path)? {
        for (text, id) in added {
            let id = id.as_u64().ok_or_else(|| err(&added_path, format!("`{text}`: id is not a number")))? as usize;
            if id < n {
                tokens[id] = text.clone();
                scores[id] = -1000.0;
                types[id] = USER_DEFINED;
            }
        }
    }
    if let Some(Value::Object(dec)) = tok_cfg.get("added_tokens_decoder") {
        for (id, data) in dec {
            let Ok(id) = id.parse::<usize>() else { continue };
            let (Some(content), true) = (data.get("content").and_then(Value::as_str), id < n) else { continue };
            if data.get("special").and_then(Value::as_bool) == Some(true) || looks_special(content) {
                types[id] = CONTROL;
                tokens[id] = content.to_string();
            } else {
                types[id] = USER_DEFINED;
                tokens[id] = content.replace('\u{2581}', " ");
            }
            scores[id] = -1000.0;
        }
    }
    Ok((tokens, scores, types))
}

fn bpe_vocab(path: &Path, tj: &Value, tok_cfg: &Value, vocab_size: usize) -> Result<(Vec<String>, Vec<i32>)> {
    let vocab = tj["model"]["vocab"].as_object().ok_or_else(|| err(path, "model.vocab is not an object"))?;
    let mut by_id: HashMap<usize, String> = HashMap::with_capacity(vocab.len());
    for (t, id) in vocab {
        let id = id.as_u64().ok_or_else(|| err(path, format!("model.vocab[`{t}`] is not an id")))? as usize;
        by_id.insert(id, t.clone());
    }
    let mut added: HashMap<usize, bool> = HashMap::new();
    for a in tj["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
            return Err(err(path, format!("added_tokens entry without id/content: {a}")));
        };
        by_id.insert(id as usize, content.to_string());
        added.insert(id as usize, a["special"].as_bool().unwrap_or(false));
    }
    if let Some(Value::Object(dec)) = tok_cfg.get("added_tokens_decoder") {
        for (id, data) in dec {
            if let (Ok(id), Some(s)) = (id.parse::<usize>(), data.get("special").and_then(Value::as_bool)) {
                if added.contains_key(&id) {
                    added.insert(id, s);
                }
            }
        }
    }
    let n = vocab_size.max(by_id.keys().max().map_or(0, |m| m + 1));
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for i in 0..n {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some(t) => {
                types.push(match added.get(&i) {
                    Some(&special) if special || looks_special(t) => CONTROL,
                    Some(_) => USER_DEFINED,
                    None => NORMAL,
                });
                tokens.push(t.clone());
            }
        }
    }
    Ok((tokens, types))
}

/// Merges as gguf-py writes them: `"a b"` strings kept, `[a, b]` pairs joined with a space, a space
/// inside a piece written as `chr(ord(' ') + 256)`.
fn bpe_merges(path: &Path, merges: &Value) -> Result<Vec<String>> {
    let list = merges.as_array().ok_or_else(|| err(path, "model.merges is not a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) if pair.len() == 2 => {
                let part = |v: &Value| {
                    v.as_str()
                        .map(|s| s.chars().map(|c| if c == ' ' { '\u{120}' } else { c }).collect::<String>())
                        .ok_or_else(|| err(path, format!("model.merges[{i}] is not a pair of strings")))
                };
                Ok(format!("{} {}", part(&pair[0])?, part(&pair[1])?))
            }
            _ => Err(err(path, format!("model.merges[{i}] is neither \"a b\" nor [a, b]"))),
        })
        .collect()
}

/// gguf-py's `SpecialVocab` (see the module docs): special ids and `add_*_token`.
fn special_vocab(
    dir: &Path,
    tok_json: Option<&Value>,
    tok_cfg: &Value,
    n_vocab: usize,
    kv: &mut Vec<(String, MetaValue)>,
) -> Result<()> {
    const TYPES: [(&str, &str); 7] = [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("sep", "seperator_token_id"),
        ("pad", "padding_token_id"),
        ("cls", "cls_token_id"),
        ("mask", "mask_token_id"),
    ];
    let added = tok_json.and_then(|t| t["added_tokens"].as_array()).cloned().unwrap_or_default();
    let mut ids: Vec<(&str, u64)> = Vec::new();
    let mut set = |typ: &'static str, id: Option<u64>| {
        if let Some(id) = id.filter(|&i| (i as usize) < n_vocab) {
            if !ids.iter().any(|(t, _)| *t == typ) {
                ids.push((typ, id));
            }
        }
    };
    let content = |typ: &str| match tok_cfg.get(format!("{typ}_token")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    };
    let mut add: Vec<(&'static str, bool)> = Vec::new();
    let mut set_add = |typ: &'static str, b: bool| match add.iter_mut().find(|(t, _)| *t == typ) {
        Some(e) => e.1 = b,
        None => add.push((typ, b)),
    };
    // a TemplateProcessing post-processor's leading / trailing special token ...
    let post = tok_json.map(|t| &t["post_processor"]).filter(|p| p.is_object());
    let processors = post.map(|p| p["processors"].as_array().cloned().unwrap_or_else(|| vec![p.clone()]));
    for proc in processors.into_iter().flatten() {
        let single = proc["single"].as_array().filter(|_| proc["type"] == "TemplateProcessing");
        if let Some(single) = single.filter(|s| s.len() > 1) {
            let special = |v: &Value| v["SpecialToken"]["id"].as_str().map(String::from);
            if let Some(first) = special(&single[0]) {
                set_add(
                    "bos",
                    !tok_cfg.is_object()
                        || Some(&first) == content("bos").as_ref()
                        || Some(&first) == content("cls").as_ref(),
                );
            }
            if let Some(last) = special(&single[single.len() - 1]) {
                set_add("eos", !tok_cfg.is_object() || Some(&last) == content("eos").as_ref());
            }
        }
    }
    // ... overridden by tokenizer_config.json's add_*_token; its *_token strings name the special ids
    if tok_cfg.is_object() {
        for (typ, _) in TYPES {
            if let Some(b) = tok_cfg.get(format!("add_{typ}_token")).and_then(Value::as_bool) {
                set_add(typ, b);
            }
            if let Some(c) = content(typ) {
                set(typ, added.iter().find(|a| a["content"] == c.as_str()).and_then(|a| a["id"].as_u64()));
            }
        }
    }
    if let Some(cfg) = read_json(&dir.join("config.json"))? {
        for (typ, _) in TYPES {
            set(typ, cfg.get(format!("{typ}_token_id")).and_then(Value::as_u64));
        }
    }
    for (typ, key) in TYPES {
        if let Some((_, id)) = ids.iter().find(|(t, _)| *t == typ) {
            kv.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(*id as u32)));
        }
    }
    for (typ, b) in add {
        kv.push((format!("tokenizer.ggml.add_{typ}_token"), MetaValue::Bool(b)));
    }
    Ok(())
}
