//! Token F1 and exact match for generative QA, with each dataset's official normalisation:
//!
//! - [`QaNormalization::Squad`] (XQuAD): SQuAD v1.1 `evaluate-v1.1.py` — lower, drop ASCII
//!   punctuation, drop English articles, squash whitespace. F1 = 0 when nothing overlaps (also when
//!   both sides are empty).
//! - [`QaNormalization::Mlqa`] (MLQA): `mlqa_evaluation_v1.py` — drops every Unicode P* character and
//!   ASCII punctuation; articles per language (en a/an/the, vi của/là/cái/chiếc/những, ar: every
//!   `ال`, as the official `re.sub('\sال^|ال', ' ', text)` does); zh: every character in
//!   U+4E00..=U+9FA5 is a token, other runs are split on whitespace. F1 as SQuAD.
//! - [`QaNormalization::Mkqa`] (MKQA): `mkqa_eval_util.py` — ASCII punctuation only; the same
//!   article rules (en, vi, ar); zh (zh_cn): every non-space character is a token. F1 and EM are 1
//!   when both sides normalise to nothing, F1 is 0 when only one does.
//!
//! Per pair the scores are in [0, 1]; [`score_generative`] takes the maximum over gold answers and
//! reports the means ×100.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::items::GenerativeItem;
use crate::lang::Lang;
use crate::text::{is_ascii_punct, is_py_space, is_unicode_punct, py_lower, py_split, replace_whole_words};

/// Which official script's answer normalisation and F1 to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QaNormalization {
    /// SQuAD v1.1 (XQuAD).
    Squad,
    /// MLQA v1 (`mlqa_evaluation_v1.py`) for the answer language.
    Mlqa(Lang),
    /// MKQA (`mkqa_eval.py`) for the answer language.
    Mkqa(Lang),
}

const EN_ARTICLES: &[&str] = &["a", "an", "the"];
const VI_ARTICLES: &[&str] = &["của", "là", "cái", "chiếc", "những"];
const AR_ARTICLE: &str = "ال";

fn remove_articles(text: &str, lang: Lang) -> String {
    match lang {
        Lang::En => replace_whole_words(text, EN_ARTICLES),
        Lang::Vi => replace_whole_words(text, VI_ARTICLES),
        // `\sال^` can never match (`^` after a character), so only the bare `ال` alternative acts.
        Lang::Ar => text.replace(AR_ARTICLE, " "),
        Lang::Zh => text.to_string(),
    }
}

/// `c in PUNCT` of the MLQA script: Unicode category P* or `string.punctuation`.
fn is_mlqa_punct(c: char) -> bool {
    is_ascii_punct(c) || is_unicode_punct(c)
}

/// MLQA `mixed_segmentation`: CJK (U+4E00..=U+9FA5) and punctuation characters are tokens of
/// their own, the rest is split on whitespace.
fn mlqa_mixed_segmentation(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut run_start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if ('\u{4e00}'..='\u{9fa5}').contains(&c) || is_mlqa_punct(c) {
            if let Some(s) = run_start.take() {
                out.extend(py_split(&text[s..i]));
            }
            out.push(&text[i..i + c.len_utf8()]);
        } else if run_start.is_none() {
            run_start = Some(i);
        }
    }
    if let Some(s) = run_start {
        out.extend(py_split(&text[s..]));
    }
    out
}

/// The normalised answer string, exactly as the official script's `normalize_answer`.
pub fn normalize_answer(text: &str, norm: QaNormalization) -> String {
    let lower = py_lower(text);
    match norm {
        QaNormalization::Squad => {
            let no_punct: String = lower.chars().filter(|&c| !is_ascii_punct(c)).collect();
            py_split(&replace_whole_words(&no_punct, EN_ARTICLES)).collect::<Vec<_>>().join(" ")
        }
        QaNormalization::Mlqa(lang) => {
            let no_punct: String = lower.chars().filter(|&c| !is_mlqa_punct(c)).collect();
            let text = remove_articles(&no_punct, lang);
            let tokens: Vec<&str> = match lang {
                Lang::Zh => mlqa_mixed_segmentation(&text),
                _ => py_split(&text).collect(),
            };
            tokens.into_iter().filter(|t| !t.chars().all(is_py_space)).collect::<Vec<_>>().join(" ")
        }
        QaNormalization::Mkqa(lang) => {
            let no_punct: String = lower.chars().filter(|&c| !is_ascii_punct(c)).collect();
            let text = remove_articles(&no_punct, lang);
            match lang {
                Lang::Zh => {
                    let mut out = String::with_capacity(text.len() * 2);
                    for c in text.chars().filter(|&c| !is_py_space(c)) {
                        if !out.is_empty() {
                            out.push(' ');
                        }
                        out.push(c);
                    }
                    out
                }
                _ => py_split(&text).collect::<Vec<_>>().join(" "),
            }
        }
    }
}

/// Token F1 in [0, 1] between one prediction and one gold answer.
pub fn f1_score(prediction: &str, gold: &str, norm: QaNormalization) -> f64 {
    let p_norm = normalize_answer(prediction, norm);
    let g_norm = normalize_answer(gold, norm);
    let pred: Vec<&str> = py_split(&p_norm).collect();
    let gold: Vec<&str> = py_split(&g_norm).collect();
    if matches!(norm, QaNormalization::Mkqa(_)) && (pred.is_empty() || gold.is_empty()) {
        return if pred == gold { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = 1.0 * same as f64 / pred.len() as f64;
    let recall = 1.0 * same as f64 / gold.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// Exact match (1.0 or 0.0) of the normalised strings.
pub fn exact_match(prediction: &str, gold: &str, norm: QaNormalization) -> f64 {
    if normalize_answer(prediction, norm) == normalize_answer(gold, norm) {
        1.0
    } else {
        0.0
    }
}

/// F1 and EM of one prediction, each the maximum over the gold answers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaScore {
    pub f1: f64,
    pub exact_match: f64,
}

/// Maximum F1 and EM over `golds` (`None` if `golds` is empty: the official scripts fail there).
pub fn max_over_answers<S: AsRef<str>>(prediction: &str, golds: &[S], norm: QaNormalization) -> Option<QaScore> {
    if golds.is_empty() {
        return None;
    }
    let mut best = QaScore { f1: f64::NEG_INFINITY, exact_match: f64::NEG_INFINITY };
    for g in golds {
        best.f1 = best.f1.max(f1_score(prediction, g.as_ref(), norm));
        best.exact_match = best.exact_match.max(exact_match(prediction, g.as_ref(), norm));
    }
    Some(best)
}

/// Corpus F1 / exact match, both ×100, with the per-item scores (in [0, 1]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct F1Result {
    pub f1: f64,
    pub exact_match: f64,
    pub n: usize,
    pub per_item: Vec<QaScore>,
    /// XQuAD zh: the SQuAD v1.1 whitespace-token F1 (×100) beside the headline MLQA-style F1 (Chinese
    /// split into characters); see [`crate::Task::metric`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1_whitespace: Option<f64>,
}

/// Scores `predictions[i]` (the generated text, already cut at the stop string) against
/// `items[i].answers` with `metric`; the result is the mean over items ×100.
pub fn score_generative<S: AsRef<str>>(
    items: &[GenerativeItem],
    predictions: &[S],
    metric: QaNormalization,
) -> Result<F1Result> {
    if items.len() != predictions.len() {
        return Err(EvalError::LengthMismatch {
            what: "predictions (one per generative item)".into(),
            expected: items.len(),
            got: predictions.len(),
        });
    }
    let mut per_item = Vec::with_capacity(items.len());
    let (mut f1_sum, mut em_sum) = (0.0, 0.0);
    for (item, pred) in items.iter().zip(predictions) {
        let s = max_over_answers(pred.as_ref(), &item.answers, metric)
            .ok_or_else(|| EvalError::InvalidItem { id: item.id.clone(), message: "no gold answers".into() })?;
        f1_sum += s.f1;
        em_sum += s.exact_match;
        per_item.push(s);
    }
    let n = items.len();
    let mean = |sum: f64| if n == 0 { 0.0 } else { 100.0 * sum / n as f64 };
    Ok(F1Result { f1: mean(f1_sum), exact_match: mean(em_sum), n, per_item, f1_whitespace: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisations_differ_as_the_scripts_do() {
        assert_eq!(normalize_answer("The  Cat, sat!", QaNormalization::Squad), "cat sat");
        // MLQA drops Unicode punctuation, SQuAD and MKQA keep it.
        assert_eq!(normalize_answer("“x”", QaNormalization::Mlqa(Lang::En)), "x");
        assert_eq!(normalize_answer("“x”", QaNormalization::Mkqa(Lang::En)), "“x”");
        assert_eq!(normalize_answer("北京abc def", QaNormalization::Mlqa(Lang::Zh)), "北 京 abc def");
        assert_eq!(normalize_answer("北京abc", QaNormalization::Mkqa(Lang::Zh)), "北 京 a b c");
        assert_eq!(normalize_answer("البيت الكبير", QaNormalization::Mlqa(Lang::Ar)), "بيت كبير");
    }

    #[test]
    fn empty_answers_follow_each_script() {
        assert_eq!(f1_score("", "", QaNormalization::Squad), 0.0);
        assert_eq!(exact_match("", "", QaNormalization::Squad), 1.0);
        assert_eq!(f1_score("the", "", QaNormalization::Mkqa(Lang::En)), 1.0);
        assert_eq!(f1_score("x", "", QaNormalization::Mkqa(Lang::En)), 0.0);
    }

    #[test]
    fn score_generative_checks_lengths() {
        let items = vec![GenerativeItem { id: "a".into(), prompt: String::new(), answers: vec!["Paris".into()] }];
        let r = score_generative(&items, &["paris."], QaNormalization::Squad).unwrap();
        assert_eq!((r.f1, r.exact_match, r.n), (100.0, 100.0, 1));
        assert!(score_generative(&items, &[] as &[&str], QaNormalization::Squad).is_err());
    }
}
