//! The tokenizer a GGUF file describes, rebuilt as a `tokenizers::Tokenizer`.
//!
//! A GGUF carries no `tokenizer.json`, only llama.cpp metadata: `tokenizer.ggml.model`, `.pre`,
//! `.tokens`, `.scores`, `.token_type`, `.merges`, the special token ids and `add_bos/eos_token`.
//! The target is the tokenizer transformers (5.x) builds from the same metadata
//! (`transformers/integrations/gguf/gguf_tokenizer_mapping.py` + `TokenizersBackend`), so that
//! token ids are identical:
//!
//! * `gpt2` → byte-level BPE (`GPT2Tokenizer` shape): vocabulary as stored (tokens outside the
//!   byte alphabet re-spelled through it), merges from the file, `ByteLevel` pre-tokenizer
//!   (GPT-2 regex) — or, when `tokenizer.ggml.pre` names a known split (llama3, qwen2, ...), that
//!   regex `Split` followed by `ByteLevel` without regex —, `ByteLevel` decoder.
//! * `llama` → sentencepiece-style BPE with byte fallback (`LlamaTokenizer` shape): `Metaspace`
//!   pre-tokenizer (`▁`, prepend to the first split only), merges from the file or derived from
//!   the vocabulary and scores, decoder `▁`→space, byte fallback, fuse, strip one leading space.
//!   For `gemma*` architectures the `GemmaTokenizer` shape instead: whitespace-only tokens
//!   re-spelled as `▁…`, merges ranked by vocabulary position, normalizer space→`▁`, no prefix
//!   space, `<unk>` as unknown token. For `phi3`, a `▁` prefix normalizer instead of `Metaspace`.
//! * Added tokens: tokens of type CONTROL (3) are special (for byte-level vocabularies only those
//!   spelled in the byte alphabet); USER_DEFINED (4) are plain added tokens; the tokens named by
//!   the bos/eos/unk/padding ids are special too.
//! * Post-processor: `TemplateProcessing` adding BOS / EOS as `tokenizer.ggml.add_bos_token` /
//!   `add_eos_token` say (a `llama` vocabulary defaults to adding BOS).
//!
//! Deviation: transformers' `GemmaTokenizer` also registers its default mask token `<mask>`, which
//! gets a new id past the vocabulary when the file has no such token; here `<mask>` is only marked
//! special when the vocabulary has it (real Gemma files do, at id 4).
use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use super::{GgufError, GgufFile};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Which tokenizer family a GGUF describes (from `tokenizer.ggml.model` and the architecture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// `gpt2`: byte-level BPE.
    ByteLevelBpe,
    /// `llama`: sentencepiece BPE with byte fallback, `Metaspace` (Llama / Mistral / ...).
    SentencePiece,
    /// `llama` vocabulary of a `gemma`/`gemma2`/`gemma3` model.
    Gemma,
    /// `llama` vocabulary of a `phi3` model.
    Phi3,
}

/// Pre-tokenizer splits transformers applies for `tokenizer.ggml.pre` values (llama.cpp's names).
pub(super) const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub(super) const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn pre_tokenizer_split(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// GPT-2's reversible byte → printable character table (`bytes_to_unicode`).
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    table
}

/// Python's `str.isspace` for one character (Unicode White_Space plus U+001C..U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Merges implied by a vocabulary (transformers' `generate_merges` with scores): every split of
/// every token into two tokens of the vocabulary, ranked by the token's score (descending), then
/// the lengths of the left and right pieces (descending); ties keep vocabulary order.
fn generate_merges(tokens: &[String], scored: &[(usize, f64)]) -> Vec<(String, String)> {
    // token → id, the last occurrence winning (a Python dict built from the list)
    let mut vocab: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t, i);
    }
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    let mut local = Vec::new();
    for &(index, score) in scored {
        let token = tokens[index].as_str();
        local.clear();
        for (b, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(b);
            if let (Some(&il), Some(&ir)) = (vocab.get(l), vocab.get(r)) {
                local.push((l, r, il, ir));
            }
        }
        local.sort_by_key(|&(_, _, il, ir)| (il, ir));
        merges.extend(local.iter().map(|&(l, r, _, _)| (l, r, score, l.chars().count(), r.chars().count())));
    }
    // stable sort, descending keys: equal keys keep their order, as with Python's sorted(reverse=True)
    merges.sort_by(|a, b| {
        b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4))
    });
    merges.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect()
}

/// `(index of first occurrence, score of last occurrence)` per distinct token: the item order and
/// values of a Python dict built from `zip(tokens, scores)`.
fn dict_order(tokens: &[String], score: impl Fn(usize) -> f64) -> Vec<(usize, f64)> {
    let mut slot: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        match slot.get(t.as_str()) {
            Some(&s) => out[s].1 = score(i),
            None => {
                slot.insert(t, out.len());
                out.push((i, score(i)));
            }
        }
    }
    out
}

impl GgufFile {
    fn tok_err(&self, msg: impl Into<String>) -> GgufError {
        GgufError::Tokenizer { path: self.path().into(), msg: msg.into() }
    }

    /// The tokenizer family this file describes.
    pub fn tokenizer_kind(&self) -> Result<TokenizerKind, GgufError> {
        let model = self.get_str("tokenizer.ggml.model")?;
        let arch = self.opt("general.architecture", GgufFile::get_str)?.unwrap_or("");
        match model {
            "gpt2" => Ok(TokenizerKind::ByteLevelBpe),
            "llama" => Ok(match arch {
                "gemma" | "gemma2" | "gemma3" => TokenizerKind::Gemma,
                "phi3" => TokenizerKind::Phi3,
                _ => TokenizerKind::SentencePiece,
            }),
            other => Err(self.tok_err(format!(
                "`tokenizer.ggml.model` is `{other}`; supported: gpt2 (byte-level BPE), llama (sentencepiece)"
            ))),
        }
    }

    fn special_id(&self, key: &str) -> Option<u32> {
        self.opt(key, GgufFile::get_u32).ok().flatten()
    }

    /// `tokenizer.ggml.bos_token_id`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.special_id("tokenizer.ggml.bos_token_id")
    }

    /// `tokenizer.ggml.eos_token_id`.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.special_id("tokenizer.ggml.eos_token_id")
    }

    /// `tokenizer.ggml.padding_token_id`.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.special_id("tokenizer.ggml.padding_token_id")
    }

    /// `tokenizer.ggml.unknown_token_id`.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.special_id("tokenizer.ggml.unknown_token_id")
    }

    /// Whether encoding with special tokens prepends BOS: `tokenizer.ggml.add_bos_token`, by
    /// default true for a `llama` (sentencepiece) vocabulary and false otherwise; false without a BOS id.
    pub fn add_bos_token(&self) -> bool {
        let default = self.opt("tokenizer.ggml.model", GgufFile::get_str).ok().flatten() == Some("llama");
        let flag = self.opt("tokenizer.ggml.add_bos_token", GgufFile::get_bool).ok().flatten().unwrap_or(default);
        flag && self.bos_token_id().is_some()
    }

    /// Whether encoding with special tokens appends EOS (`tokenizer.ggml.add_eos_token`, default false).
    pub fn add_eos_token(&self) -> bool {
        let flag = self.opt("tokenizer.ggml.add_eos_token", GgufFile::get_bool).ok().flatten().unwrap_or(false);
        flag && self.eos_token_id().is_some()
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.opt("tokenizer.chat_template", GgufFile::get_str).ok().flatten()
    }

    /// Build the tokenizer described by the metadata; token ids match transformers'
    /// `AutoTokenizer.from_pretrained(dir, gguf_file=...)` (see the module docs).
    pub fn tokenizer(&self) -> Result<Tokenizer, GgufError> {
        let kind = self.tokenizer_kind()?;
        let tokens = self.get_str_array("tokenizer.ggml.tokens")?;
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(self.tok_err(format!("`tokenizer.ggml.tokens` has {} entries", tokens.len())));
        }
        let token_types = self.opt("tokenizer.ggml.token_type", GgufFile::get_int_array)?;
        if let Some(t) = &token_types {
            if t.len() != tokens.len() {
                return Err(self.tok_err(format!(
                    "`tokenizer.ggml.token_type` has {} entries, `tokenizer.ggml.tokens` {}",
                    t.len(),
                    tokens.len()
                )));
            }
        }
        let file_merges = self.opt("tokenizer.ggml.merges", GgufFile::get_str_array)?;

        // vocabulary spelling, merges, and pipeline per family
        let byte_chars = byte_alphabet();
        let in_byte_alphabet = |t: &str| t.chars().all(|c| byte_chars.contains(&c));
        let spelled: Vec<String> =
            match kind {
                TokenizerKind::ByteLevelBpe => tokens
                    .iter()
                    .map(|t| {
                        if in_byte_alphabet(t) {
                            t.clone()
                        } else {
                            t.bytes().map(|b| byte_chars[b as usize]).collect()
                        }
                    })
                    .collect(),
                TokenizerKind::Gemma => tokens
                    .iter()
                    .map(|t| {
                        if t.contains(' ') && t.chars().all(py_isspace) {
                            "\u{2581}".repeat(t.chars().count())
                        } else {
                            t.clone()
                        }
                    })
                    .collect(),
                TokenizerKind::SentencePiece | TokenizerKind::Phi3 => tokens.to_vec(),
            };
        let merges: Vec<(String, String)> = match file_merges {
            Some(m) => m
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| self.tok_err(format!("`tokenizer.ggml.merges`[{i}] = {s:?} is not two tokens")))
                })
                .collect::<Result<_, _>>()?,
            None => match kind {
                TokenizerKind::Gemma => generate_merges(&spelled, &dict_order(&spelled, |i| -(i as f64))),
                _ => {
                    let scores = self.get_f32_array("tokenizer.ggml.scores").map_err(|_| {
                        self.tok_err("no `tokenizer.ggml.merges` and no `tokenizer.ggml.scores` to derive them from")
                    })?;
                    if scores.len() != tokens.len() {
                        return Err(self.tok_err(format!(
                            "`tokenizer.ggml.scores` has {} entries, `tokenizer.ggml.tokens` {}",
                            scores.len(),
                            tokens.len()
                        )));
                    }
                    generate_merges(&spelled, &dict_order(&spelled, |i| scores[i] as f64))
                }
            },
        };
        let vocab: Vocab = spelled.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut bpe = BPE::builder().vocab_and_merges(vocab, merges);
        bpe = match kind {
            TokenizerKind::ByteLevelBpe => {
                bpe.continuing_subword_prefix(String::new()).end_of_word_suffix(String::new()).fuse_unk(false)
            }
            TokenizerKind::SentencePiece | TokenizerKind::Phi3 => bpe.fuse_unk(true).byte_fallback(true),
            TokenizerKind::Gemma => bpe.fuse_unk(true).byte_fallback(true).unk_token("<unk>".into()),
        };
        let bpe = bpe.build().map_err(|e| self.tok_err(format!("cannot build the BPE model: {e}")))?;
        let mut tok = Tokenizer::new(bpe);
        let strip_space = || -> DecoderWrapper {
            DecoderSequence::new(vec![
                Replace::new("\u{2581}", " ").unwrap().into(),
                ByteFallback::new().into(),
                Fuse::new().into(),
                Strip::new(' ', 1, 0).into(),
            ])
            .into()
        };
        match kind {
            TokenizerKind::ByteLevelBpe => {
                let pre = self.opt("tokenizer.ggml.pre", GgufFile::get_str)?.unwrap_or("");
                let pre_tok: PreTokenizerWrapper = match pre_tokenizer_split(pre) {
                    Some(regex) => {
                        let split =
                            Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false)
                                .map_err(|e| self.tok_err(format!("bad split regex for `{pre}`: {e}")))?;
                        PreTokenizerSequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
                    }
                    None => ByteLevel::new(false, true, true).into(),
                };
                tok.with_pre_tokenizer(Some(pre_tok));
                tok.with_decoder(Some(ByteLevel::default()));
            }
            TokenizerKind::SentencePiece => {
                tok.with_pre_tokenizer(Some(Metaspace::new('\u{2581}', PrependScheme::First, false)));
                tok.with_decoder(Some(strip_space()));
            }
            TokenizerKind::Phi3 => {
                let norm: NormalizerWrapper = NormalizerSequence::new(vec![
                    Prepend::new("\u{2581}".into()).into(),
                    Replace::new(" ", "\u{2581}").unwrap().into(),
                ])
                .into();
                tok.with_normalizer(Some(norm));
                tok.with_decoder(Some(strip_space()));
            }
            TokenizerKind::Gemma => {
                tok.with_normalizer(Some(Replace::new(" ", "\u{2581}").unwrap()));
                let split =
                    Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
                        .map_err(|e| self.tok_err(format!("{e}")))?;
                tok.with_pre_tokenizer(Some(split));
                let dec: DecoderWrapper = DecoderSequence::new(vec![
                    Replace::new("\u{2581}", " ").unwrap().into(),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ])
                .into();
                tok.with_decoder(Some(dec));
            }
        }

        // added tokens: CONTROL → special, USER_DEFINED → plain, then the named special tokens
        if let Some(types) = &token_types {
            let control: Vec<AddedToken> = tokens
                .iter()
                .zip(types)
                .filter(|(t, &ty)| {
                    ty == TOKEN_TYPE_CONTROL && (kind != TokenizerKind::ByteLevelBpe || in_byte_alphabet(t))
                })
                .map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false))
                .collect();
            tok.add_special_tokens(&control);
            let user: Vec<AddedToken> = tokens
                .iter()
                .zip(types)
                .filter(|(t, &ty)| ty == TOKEN_TYPE_USER_DEFINED && tok.token_to_id(t).is_some())
                .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
                .collect();
            tok.add_tokens(&user);
        }
        let named = |id: Option<u32>, what: &str| -> Result<Option<String>, GgufError> {
            match id {
                None => Ok(None),
                Some(i) => tokens.get(i as usize).cloned().map(Some).ok_or_else(|| {
                    self.tok_err(format!("{what} token id {i} is past the vocabulary ({} tokens)", tokens.len()))
                }),
            }
        };
        let bos = named(self.bos_token_id(), "BOS")?;
        let eos = named(self.eos_token_id(), "EOS")?;
        let unk = named(self.unk_token_id(), "unknown")?;
        let pad = named(self.pad_token_id(), "padding")?;
        let mut specials: Vec<String> = [&bos, &eos, &unk, &pad].into_iter().flatten().cloned().collect();
        if kind == TokenizerKind::Gemma && tok.token_to_id("<mask>").is_some() {
            specials.push("<mask>".into());
        }
        let specials: Vec<AddedToken> =
            specials.into_iter().map(|t| AddedToken::from(t, true).normalized(false)).collect();
        tok.add_special_tokens(&specials);

        // post-processor
        let add_bos = self.add_bos_token();
        let add_eos = self.add_eos_token();
        let mut single: Vec<String> = Vec::new();
        let mut special_tokens: Vec<(String, u32)> = Vec::new();
        let id_of =
            |t: &String| tok.token_to_id(t).ok_or_else(|| self.tok_err(format!("special token {t:?} has no id")));
        if let (true, Some(b)) = (add_bos, &bos) {
            single.push(format!("{b}:0"));
            special_tokens.push((b.clone(), id_of(b)?));
        }
        single.push("$A:0".into());
        if let (true, Some(e)) = (add_eos, &eos) {
            single.push(format!("{e}:0"));
            special_tokens.push((e.clone(), id_of(e)?));
        }
        let mut pair = single.clone();
        if let (true, Some(b)) = (add_bos, &bos) {
            pair.push(format!("{b}:1"));
        }
        pair.push("$B:1".into());
        if let (true, Some(e)) = (add_eos, &eos) {
            pair.push(format!("{e}:1"));
        }
        let template = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| self.tok_err(format!("bad post-processor template: {e}")))?
            .special_tokens(special_tokens)
            .build()
            .map_err(|e| self.tok_err(format!("bad post-processor template: {e}")))?;
        tok.with_post_processor(Some(template));
        Ok(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let t = byte_alphabet();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xAD], 'Ń');
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn merges_from_scores() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"].iter().map(|s| s.to_string()).collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -3.0, -2.0];
        let m = generate_merges(&tokens, &dict_order(&tokens, |i| scores[i]));
        // "ab" (-1) first, then "bc" (-2), then "abc" (-3): ("ab","c") before ("a","bc") by left length
        let want = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")];
        assert_eq!(m, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>());
    }

    #[test]
    fn dict_order_keeps_first_position_last_value() {
        let tokens: Vec<String> = ["x", "y", "x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(dict_order(&tokens, |i| i as f64), vec![(0, 2.0), (1, 1.0)]);
    }
}
