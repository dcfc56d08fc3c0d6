//! The "latent English" probe (Wendler et al., 2024, *Do Llamas Work in English?*), kept simple.
//!
//! **Definition.** For each `(target word, English word)` pair we build a few-shot *repetition* prompt
//! in the target language, whose next token is the first token of the target word:
//!
//! ```text
//! 中文: "水" - 中文: "水"
//! 中文: "花" - 中文: "花"
//! 中文: "山" - 中文: "山"
//! 中文: "猫" - 中文: "猫"
//! 中文: "书" - 中文: "
//! ```
//!
//! (the shots are the next [`DEFAULT_SHOTS`] pairs of the list, cyclically). At the last prompt position
//! and every block `k` we read the lens distribution `p_k = softmax(lm_head(final_norm(h_k)))` and
//! report
//!
//! * `P_en(k)` = Σ p_k(t) over the **English set**: the first token of `english` and of `" " + english`;
//! * `P_tgt(k)` = p_k of the first token of `target` (the correct next token).
//!
//! averaged over pairs (mean ± 95% CI). Pairs whose two sets share a token are skipped. English never
//! appears in the prompt, so English mass in the middle blocks is the "thinking in English" signal the
//! paper's Language Conversion / English Thinking split rests on. A repetition task needs no third
//! language (Wendler's translation task uses a non-English source). Word lists: `data/word-pairs-*.tsv`
//! (zh, vi, ar; 40 common nouns each) or any `target<TAB>english` file.
use burn::tensor::backend::Backend;
use dft_models::CausalLm;
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::entropy::{lens_last_position_mass, LensOptions};
use crate::error::{LayersError, Result};
use crate::stats::MeanCi;

/// Few-shot examples per prompt.
pub const DEFAULT_SHOTS: usize = 4;

/// A word and its English translation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordPair {
    pub target: String,
    pub english: String,
}

/// The bundled word list for `lang` (`zh`, `vi`, `ar`), if any.
pub fn builtin_word_pairs(lang: &str) -> Option<Vec<WordPair>> {
    let (name, text) = match lang {
        "zh" => ("word-pairs-zh.tsv", include_str!("../data/word-pairs-zh.tsv")),
        "vi" => ("word-pairs-vi.tsv", include_str!("../data/word-pairs-vi.tsv")),
        "ar" => ("word-pairs-ar.tsv", include_str!("../data/word-pairs-ar.tsv")),
        _ => return None,
    };
    Some(parse_word_pairs(text, name).expect("bundled word list parses"))
}

/// Parse `target<TAB>english` lines (blank lines and `#` comments skipped).
pub fn parse_word_pairs(text: &str, source_name: &str) -> Result<Vec<WordPair>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: &str| LayersError::WordPairs { source_name: source_name.into(), line: n + 1, msg: msg.into() };
        let mut cols = line.split('\t');
        let (Some(t), Some(e), None) = (cols.next(), cols.next(), cols.next()) else {
            return Err(err("expected `target<TAB>english`"));
        };
        let (t, e) = (t.trim(), e.trim());
        if t.is_empty() || e.is_empty() {
            return Err(err("empty word"));
        }
        out.push(WordPair { target: t.into(), english: e.into() });
    }
    if out.len() < 2 {
        return Err(LayersError::WordPairs {
            source_name: source_name.into(),
            line: 0,
            msg: "need at least 2 pairs".into(),
        });
    }
    Ok(out)
}

/// Read a `target<TAB>english` word list.
pub fn read_word_pairs(path: &Path) -> Result<Vec<WordPair>> {
    let text = std::fs::read_to_string(path).map_err(|e| LayersError::Io { path: path.into(), source: e })?;
    parse_word_pairs(&text, &path.display().to_string())
}

/// The language's name in itself, used as the prompt label (`中文`, `Tiếng Việt`, `العربية`; else the code).
pub fn language_label(lang: &str) -> String {
    match lang {
        "zh" => "中文".into(),
        "vi" => "Tiếng Việt".into(),
        "ar" => "العربية".into(),
        "en" => "English".into(),
        other => other.into(),
    }
}

/// The prompt text for pair `q` (see the module docs).
pub fn repetition_prompt(pairs: &[WordPair], q: usize, label: &str, shots: usize) -> String {
    let shots = shots.min(pairs.len() - 1);
    let mut lines: Vec<String> = (1..=shots)
        .map(|d| {
            let w = &pairs[(q + d) % pairs.len()].target;
            format!("{label}: \"{w}\" - {label}: \"{w}\"")
        })
        .collect();
    lines.push(format!("{label}: \"{}\" - {label}: \"", pairs[q].target));
    lines.join("\n")
}

/// Tokenized prompts and token sets, ready for [`latent_english`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentProbe {
    pub label: String,
    /// The pairs kept, in order.
    pub pairs: Vec<WordPair>,
    pub prompts: Vec<String>,
    pub prompt_ids: Vec<Vec<u32>>,
    pub english_tokens: Vec<Vec<u32>>,
    pub target_tokens: Vec<Vec<u32>>,
    /// Pairs left out, with the reason.
    pub skipped: Vec<String>,
}

fn encode(tok: &tokenizers::Tokenizer, text: &str, special: bool) -> Result<Vec<u32>> {
    tok.encode(text, special)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| LayersError::Tokenizer { what: format!("{text:?}"), msg: e.to_string() })
}

/// Build the probe: prompts (with the tokenizer's special tokens, as the model usually sees text) and
/// first-token sets (without special tokens).
pub fn build_probe(pairs: &[WordPair], label: &str, tok: &tokenizers::Tokenizer, shots: usize) -> Result<LatentProbe> {
    let mut probe = LatentProbe {
        label: label.into(),
        pairs: vec![],
        prompts: vec![],
        prompt_ids: vec![],
        english_tokens: vec![],
        target_tokens: vec![],
        skipped: vec![],
    };
    for q in 0..pairs.len() {
        let p = &pairs[q];
        let mut en: Vec<u32> = Vec::new();
        for variant in [p.english.clone(), format!(" {}", p.english)] {
            if let Some(&t) = encode(tok, &variant, false)?.first() {
                if !en.contains(&t) {
                    en.push(t);
                }
            }
        }
        let tgt: Vec<u32> = encode(tok, &p.target, false)?.first().copied().into_iter().collect();
        if tgt.is_empty() || en.is_empty() || en.iter().any(|t| tgt.contains(t)) {
            probe.skipped.push(format!("{} / {}: English and target first tokens overlap", p.target, p.english));
            continue;
        }
        let prompt = repetition_prompt(pairs, q, label, shots);
        probe.prompt_ids.push(encode(tok, &prompt, true)?);
        probe.prompts.push(prompt);
        probe.english_tokens.push(en);
        probe.target_tokens.push(tgt);
        probe.pairs.push(p.clone());
    }
    Ok(probe)
}

/// `P_en` and `P_tgt` at one block, over the probe's pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatentLayer {
    pub layer: usize,
    pub english: MeanCi,
    pub target: MeanCi,
}

/// The latent-English curve, blocks `0..=L`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentEnglish {
    pub label: String,
    pub pairs: usize,
    pub skipped: Vec<String>,
    pub layers: Vec<LatentLayer>,
    /// `per_pair[k][s] = [P_en, P_tgt]` at block k for pair s.
    pub per_pair: Vec<Vec<[f64; 2]>>,
}

/// Run the probe through the model's lens at every block.
pub fn latent_english<B: Backend>(
    model: &CausalLm<B>,
    probe: &LatentProbe,
    opts: &LensOptions,
) -> Result<LatentEnglish> {
    let sets: Vec<Vec<Vec<u32>>> =
        probe.english_tokens.iter().zip(&probe.target_tokens).map(|(e, t)| vec![e.clone(), t.clone()]).collect();
    let mass = lens_last_position_mass(model, &probe.prompt_ids, &sets, opts)?;
    let per_pair: Vec<Vec<[f64; 2]>> = mass.iter().map(|k| k.iter().map(|m| [m[0], m[1]]).collect()).collect();
    let layers = per_pair
        .iter()
        .enumerate()
        .map(|(k, rows)| LatentLayer {
            layer: k,
            english: MeanCi::of(rows.iter().map(|r| r[0])),
            target: MeanCi::of(rows.iter().map(|r| r[1])),
        })
        .collect();
    Ok(LatentEnglish {
        label: probe.label.clone(),
        pairs: probe.prompt_ids.len(),
        skipped: probe.skipped.clone(),
        layers,
        per_pair,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_lists_parse() {
        for lang in ["zh", "vi", "ar"] {
            let p = builtin_word_pairs(lang).unwrap();
            assert_eq!(p.len(), 40, "{lang}");
        }
        assert!(builtin_word_pairs("xx").is_none());
    }

    #[test]
    fn bad_pair_lines_name_the_line() {
        let e = parse_word_pairs("# c\n书\tbook\n水 water\n", "pairs.tsv").unwrap_err();
        assert_eq!(e.to_string(), "pairs.tsv: line 3: expected `target<TAB>english`");
    }

    #[test]
    fn prompt_shape() {
        let pairs = parse_word_pairs("书\tbook\n水\twater\n花\tflower\n", "t").unwrap();
        let p = repetition_prompt(&pairs, 2, "中文", 4);
        assert_eq!(p, "中文: \"书\" - 中文: \"书\"\n中文: \"水\" - 中文: \"水\"\n中文: \"花\" - 中文: \"");
    }
}
