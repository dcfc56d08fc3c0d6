//! Translation scores per direction: corpus chrF++ and corpus BLEU (sacrebleu definitions, see
//! [`super::chrf`] and [`super::bleu`]) over all sentences of one direction — statistics summed
//! over the corpus, not averaged per sentence — with sacrebleu's tokenizer choice for the target:
//! `zh` for Chinese, `13a` otherwise (what `sacrebleu -l en-zh` picks). Hypotheses are the
//! generated text up to the first newline with surrounding whitespace stripped.
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::items::TranslationItem;
use crate::lang::Lang;
use crate::metrics::bleu::{corpus_bleu, BleuConfig, BleuScore, BleuTokenizer};
use crate::metrics::chrf::{corpus_chrf, ChrfConfig};
use crate::text::py_strip;

/// The BLEU tokenizer sacrebleu uses for target language `tgt`: `zh` for Chinese, else `13a`.
pub fn bleu_tokenizer_for(tgt: Lang) -> BleuTokenizer {
    match tgt {
        Lang::Zh => BleuTokenizer::Zh,
        _ => BleuTokenizer::Tok13a,
    }
}

/// The scores of one direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranslationScore {
    pub src: Lang,
    pub tgt: Lang,
    /// Sentences scored.
    pub n: usize,
    /// Few-shot examples in the prompts.
    pub shots: usize,
    /// Corpus chrF++ (char order 6, word order 2, β 2), 0–100.
    pub chrf_pp: f64,
    /// Corpus chrF (characters only, β 2), 0–100: for unsegmented Chinese the word n-grams of
    /// chrF++ are whole clauses that rarely match, so this is the easier number to read there.
    #[serde(default)]
    pub chrf: f64,
    /// Corpus BLEU (exp smoothing), 0–100.
    pub bleu: f64,
    pub bleu_tokenizer: BleuTokenizer,
    /// BLEU's n-gram statistics and brevity penalty.
    pub bleu_detail: BleuScore,
    /// Sentence-level chrF++ of each item, in item order (for inspection; the headline is the
    /// corpus score).
    pub sentence_chrf_pp: Vec<f64>,
    /// Generations that hit the new-token budget without reaching a newline (filled by the engine).
    #[serde(default)]
    pub truncated: usize,
}

impl TranslationScore {
    /// `en→zh`.
    pub fn direction(&self) -> String {
        format!("{}→{}", self.src, self.tgt)
    }
}

/// The hypothesis of a generated text: surrounding whitespace stripped.
pub fn hypothesis(generated: &str) -> &str {
    py_strip(generated)
}

/// Scores `hypotheses` (one per item, already cut at the newline) per direction, in the order the
/// directions first appear in `items`.
pub fn score_translation<H: AsRef<str>>(items: &[TranslationItem], hypotheses: &[H]) -> Result<Vec<TranslationScore>> {
    if items.len() != hypotheses.len() {
        return Err(EvalError::LengthMismatch {
            what: "translations (one per item)".into(),
            expected: items.len(),
            got: hypotheses.len(),
        });
    }
    let mut directions: Vec<(Lang, Lang)> = Vec::new();
    for it in items {
        if !directions.contains(&(it.src, it.tgt)) {
            directions.push((it.src, it.tgt));
        }
    }
    let mut out = Vec::with_capacity(directions.len());
    for (src, tgt) in directions {
        let idx: Vec<usize> = (0..items.len()).filter(|&i| items[i].src == src && items[i].tgt == tgt).collect();
        let hyps: Vec<&str> = idx.iter().map(|&i| hypothesis(hypotheses[i].as_ref())).collect();
        let refs: Vec<&str> = idx.iter().map(|&i| items[i].reference.as_str()).collect();
        let chrf = corpus_chrf(&hyps, &refs, &ChrfConfig::CHRF_PLUS_PLUS)?;
        let cfg = BleuConfig { tokenizer: bleu_tokenizer_for(tgt), ..BleuConfig::default() };
        let bleu = corpus_bleu(&hyps, &refs, &cfg)?;
        let sentence_chrf_pp = hyps
            .iter()
            .zip(&refs)
            .map(|(h, r)| corpus_chrf(&[h], &[r], &ChrfConfig::CHRF_PLUS_PLUS).map(|s| s.score))
            .collect::<Result<Vec<_>>>()?;
        out.push(TranslationScore {
            src,
            tgt,
            n: idx.len(),
            shots: items[idx[0]].shots,
            chrf_pp: chrf.score,
            chrf: corpus_chrf(&hyps, &refs, &ChrfConfig::CHRF)?.score,
            bleu: bleu.score,
            bleu_tokenizer: cfg.tokenizer,
            bleu_detail: bleu,
            sentence_chrf_pp,
            truncated: 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(src: Lang, tgt: Lang, reference: &str) -> TranslationItem {
        TranslationItem {
            id: format!("{src}-{tgt}"),
            src,
            tgt,
            source: String::new(),
            reference: reference.into(),
            prompt: String::new(),
            shots: 1,
        }
    }

    #[test]
    fn directions_are_scored_separately_at_corpus_level() {
        let items = vec![
            item(Lang::En, Lang::Zh, "我们今天去北京。"),
            item(Lang::Zh, Lang::En, "We go to Beijing today."),
            item(Lang::En, Lang::Zh, "天气很好。"),
            item(Lang::Zh, Lang::En, "The weather is nice."),
        ];
        let hyps = [" 我们明天去北京。", "We went to Beijing today.\n", "天气很好。 ", "Nice weather."];
        let s = score_translation(&items, &hyps).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].direction().as_str(), s[0].n, s[0].bleu_tokenizer), ("en→zh", 2, BleuTokenizer::Zh));
        assert_eq!((s[1].direction().as_str(), s[1].bleu_tokenizer), ("zh→en", BleuTokenizer::Tok13a));
        // Corpus scores equal the metrics on the direction's sentences alone (hypotheses stripped) …
        let want = corpus_chrf(
            &["我们明天去北京。", "天气很好。"],
            &["我们今天去北京。", "天气很好。"],
            &ChrfConfig::CHRF_PLUS_PLUS,
        )
        .unwrap()
        .score;
        assert!((s[0].chrf_pp - want).abs() < 1e-12);
        let want =
            corpus_chrf(&["我们明天去北京。", "天气很好。"], &["我们今天去北京。", "天气很好。"], &ChrfConfig::CHRF)
                .unwrap()
                .score;
        assert!((s[0].chrf - want).abs() < 1e-12 && s[0].chrf > s[0].chrf_pp);
        let zh = BleuConfig { tokenizer: BleuTokenizer::Zh, ..BleuConfig::default() };
        let want =
            corpus_bleu(&["我们明天去北京。", "天气很好。"], &["我们今天去北京。", "天气很好。"], &zh).unwrap().score;
        assert!((s[0].bleu - want).abs() < 1e-12);
        // … and are not the mean of the sentence scores.
        assert!((s[0].sentence_chrf_pp[1] - 100.0).abs() < 1e-9);
        let mean = s[0].sentence_chrf_pp.iter().sum::<f64>() / 2.0;
        assert!((mean - s[0].chrf_pp).abs() > 1e-6);
        assert!(score_translation(&items, &hyps[..3]).is_err());
    }
}
