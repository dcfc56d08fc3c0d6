//! Corpus-level chrF / chrF++ with sacrebleu's definitions (`sacrebleu/metrics/chrf.py`, 2.x):
//! character n-grams of orders 1..=char_order over the sentence with whitespace removed, word
//! n-grams of orders 1..=word_order over words with one leading/trailing ASCII punctuation
//! character split off; n-gram statistics are summed over the corpus, then precision and recall
//! are averaged over the orders that have both hypothesis and reference n-grams ("effective
//! order", sacrebleu's default) and combined into F-beta. chrF++ = char order 6, word order 2,
//! beta 2. One reference per hypothesis.
use std::collections::HashMap;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::text::{is_ascii_punct, py_lower, py_split};

/// chrF options (sacrebleu `CHRF(...)` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChrfConfig {
    pub char_order: usize,
    pub word_order: usize,
    pub beta: f64,
    pub lowercase: bool,
    /// Keep whitespace inside character n-grams.
    pub whitespace: bool,
    /// chrF++.py-style epsilon smoothing instead of the effective order.
    pub eps_smoothing: bool,
}

impl ChrfConfig {
    /// chrF++ (sacrebleu `CHRF(word_order=2)`).
    pub const CHRF_PLUS_PLUS: ChrfConfig = ChrfConfig {
        char_order: 6,
        word_order: 2,
        beta: 2.0,
        lowercase: false,
        whitespace: false,
        eps_smoothing: false,
    };
    /// chrF2 (sacrebleu `CHRF()`).
    pub const CHRF: ChrfConfig = ChrfConfig { word_order: 0, ..Self::CHRF_PLUS_PLUS };
}

impl Default for ChrfConfig {
    fn default() -> Self {
        Self::CHRF_PLUS_PLUS
    }
}

/// A corpus chrF score (0–100) with its summed statistics `[hyp, ref, match]` per order
/// (character orders first, then word orders).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChrfScore {
    pub score: f64,
    pub stats: Vec<[u64; 3]>,
}

fn counts<K: Hash + Eq>(items: impl Iterator<Item = K>) -> HashMap<K, u64> {
    let mut m = HashMap::new();
    for k in items {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// sacrebleu `_get_match_statistics`: hypothesis count (0 when the reference has no n-gram of
/// this order), reference count, clipped matches.
fn match_stats<K: Hash + Eq>(hyp: &HashMap<K, u64>, reference: &HashMap<K, u64>) -> [u64; 3] {
    let mut hyp_count = 0;
    let mut matches = 0;
    for (ng, &c) in hyp {
        hyp_count += c;
        if let Some(&r) = reference.get(ng) {
            matches += c.min(r);
        }
    }
    [if reference.is_empty() { 0 } else { hyp_count }, reference.values().sum(), matches]
}

/// sacrebleu `_remove_punctuation`.
fn words(sent: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in py_split(sent) {
        let mut it = w.chars();
        let (first, last) = (it.next(), it.next_back());
        match (first, last) {
            (Some(_), None) => out.push(w),
            (Some(f), Some(l)) => {
                if is_ascii_punct(l) {
                    let cut = w.len() - l.len_utf8();
                    out.extend([&w[..cut], &w[cut..]]);
                } else if is_ascii_punct(f) {
                    out.extend([&w[..1], &w[1..]]);
                } else {
                    out.push(w);
                }
            }
            (None, _) => {}
        }
    }
    out
}

fn segment_stats(hyp: &str, reference: &str, cfg: &ChrfConfig) -> Vec<[u64; 3]> {
    let chars_of = |s: &str| -> Vec<char> {
        if cfg.whitespace {
            s.chars().collect()
        } else {
            py_split(s).flat_map(str::chars).collect()
        }
    };
    let (hc, rc) = (chars_of(hyp), chars_of(reference));
    let mut stats = Vec::with_capacity(cfg.char_order + cfg.word_order);
    for n in 1..=cfg.char_order {
        stats.push(match_stats(&counts(hc.windows(n)), &counts(rc.windows(n))));
    }
    if cfg.word_order > 0 {
        let (hw, rw) = (words(hyp), words(reference));
        for n in 1..=cfg.word_order {
            stats.push(match_stats(&counts(hw.windows(n)), &counts(rw.windows(n))));
        }
    }
    stats
}

/// sacrebleu `_compute_f_score` on summed statistics.
fn f_score(stats: &[[u64; 3]], cfg: &ChrfConfig) -> f64 {
    let eps = 1e-16;
    let factor = cfg.beta * cfg.beta;
    let (mut score, mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0.0, 0usize);
    for &[n_hyp, n_ref, n_match] in stats {
        let prec = if n_hyp > 0 { n_match as f64 / n_hyp as f64 } else { eps };
        let rec = if n_ref > 0 { n_match as f64 / n_ref as f64 } else { eps };
        let denom = factor * prec + rec;
        score += if denom > 0.0 { (1.0 + factor) * prec * rec / denom } else { eps };
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += prec;
            avg_rec += rec;
            effective_order += 1;
        }
    }
    if cfg.eps_smoothing {
        return 100.0 * score / stats.len() as f64;
    }
    if effective_order == 0 {
        avg_prec = 0.0;
        avg_rec = 0.0;
    } else {
        avg_prec /= effective_order as f64;
        avg_rec /= effective_order as f64;
    }
    if avg_prec + avg_rec != 0.0 {
        let s = (1.0 + factor) * avg_prec * avg_rec;
        100.0 * (s / ((factor * avg_prec) + avg_rec))
    } else {
        0.0
    }
}

/// Corpus chrF of `hypotheses` against one reference each.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
    cfg: &ChrfConfig,
) -> Result<ChrfScore> {
    if hypotheses.len() != references.len() {
        return Err(EvalError::LengthMismatch {
            what: "references (one per hypothesis)".into(),
            expected: hypotheses.len(),
            got: references.len(),
        });
    }
    let prep = |s: &str| if cfg.lowercase { py_lower(s) } else { s.to_string() };
    let mut total = vec![[0u64; 3]; cfg.char_order + cfg.word_order];
    for (h, r) in hypotheses.iter().zip(references) {
        for (t, s) in total.iter_mut().zip(segment_stats(&prep(h.as_ref()), &prep(r.as_ref()), cfg)) {
            for k in 0..3 {
                t[k] += s[k];
            }
        }
    }
    Ok(ChrfScore { score: f_score(&total, cfg), stats: total })
}

/// Corpus chrF++ (char order 6, word order 2, beta 2), 0–100.
pub fn corpus_chrf_pp<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> Result<f64> {
    Ok(corpus_chrf(hypotheses, references, &ChrfConfig::CHRF_PLUS_PLUS)?.score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_punctuation_split_like_sacrebleu() {
        assert_eq!(words("(hi) a, .b c"), ["(hi", ")", "a", ",", ".", "b", "c"]);
    }

    #[test]
    fn identical_corpus_scores_100() {
        let s = corpus_chrf_pp(&["the cat sat."], &["the cat sat."]).unwrap();
        assert!((s - 100.0).abs() < 1e-12);
        assert_eq!(corpus_chrf_pp(&[""], &["x"]).unwrap(), 0.0);
    }
}
