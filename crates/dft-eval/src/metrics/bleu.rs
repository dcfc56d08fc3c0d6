//! Corpus-level BLEU with sacrebleu's definitions (`sacrebleu/metrics/bleu.py`, 2.x): the `13a`
//! tokenizer (mteval-v13a, sacrebleu's default; `zh` is offered for Chinese targets), n-grams of
//! orders 1..=4 with clipped counts summed over the corpus, brevity penalty from summed lengths,
//! and `exp` smoothing (NIST: the k-th zero-match order gets precision `100 / (2^k · total)`).
//! One reference per hypothesis.
use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::text::{py_lower, py_rstrip, py_split, py_squash_whitespace, py_strip};

/// sacrebleu tokenizers implemented here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BleuTokenizer {
    /// `13a` (default).
    Tok13a,
    /// `zh`: CJK characters (sacrebleu's ranges, quirks included) become tokens, then `13a`'s
    /// regular expressions.
    Zh,
    /// `none`: split on whitespace only.
    None,
}

/// Smoothing of zero n-gram precisions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum BleuSmoothing {
    /// No smoothing: a zero precision makes BLEU 0.
    None,
    /// `floor`: zero-match precisions become `100 · value / total`.
    Floor(f64),
    /// `exp` (default): the k-th zero-match order gets `100 / (2^k · total)`.
    Exp,
}

/// BLEU options (sacrebleu `BLEU(...)` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BleuConfig {
    pub tokenizer: BleuTokenizer,
    pub smoothing: BleuSmoothing,
    pub lowercase: bool,
    pub max_order: usize,
}

impl Default for BleuConfig {
    /// sacrebleu's defaults: `13a`, `exp`, case-sensitive, order 4.
    fn default() -> Self {
        BleuConfig { tokenizer: BleuTokenizer::Tok13a, smoothing: BleuSmoothing::Exp, lowercase: false, max_order: 4 }
    }
}

/// A corpus BLEU score (0–100) and its parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BleuScore {
    pub score: f64,
    /// Clipped n-gram matches per order.
    pub counts: Vec<u64>,
    /// Hypothesis n-grams per order.
    pub totals: Vec<u64>,
    /// Precisions per order in percent (after smoothing).
    pub precisions: Vec<f64>,
    pub bp: f64,
    pub sys_len: u64,
    pub ref_len: u64,
}

struct PostTokenizerRegexes {
    period_comma_after_non_digit: Regex,
    period_comma_before_non_digit: Regex,
    dash_after_digit: Regex,
}

fn regexes() -> &'static PostTokenizerRegexes {
    static RE: OnceLock<PostTokenizerRegexes> = OnceLock::new();
    RE.get_or_init(|| PostTokenizerRegexes {
        period_comma_after_non_digit: Regex::new(r"([^0-9])([.,])").expect("valid regex"),
        period_comma_before_non_digit: Regex::new(r"([.,])([^0-9])").expect("valid regex"),
        dash_after_digit: Regex::new(r"([0-9])(-)").expect("valid regex"),
    })
}

/// The first class of sacrebleu's `TokenizerRegexp`: `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// sacrebleu `TokenizerRegexp.__call__` (shared by `13a` and `zh`).
fn post_tokenize(line: &str) -> String {
    let mut spaced = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_13a_symbol(c) {
            spaced.push(' ');
            spaced.push(c);
            spaced.push(' ');
        } else {
            spaced.push(c);
        }
    }
    let re = regexes();
    let s = re.period_comma_after_non_digit.replace_all(&spaced, "${1} ${2} ");
    let s = re.period_comma_before_non_digit.replace_all(&s, " ${1} ${2}");
    let s = re.dash_after_digit.replace_all(&s, "${1} ${2} ");
    py_squash_whitespace(&s)
}

/// sacrebleu `Tokenizer13a.__call__`.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    post_tokenize(&format!(" {line} "))
}

/// sacrebleu `TokenizerZh._is_chinese_char`. Two of its ranges are written with 5 hex digits
/// after `\u` in Python, which Python reads as a 4-digit escape plus a digit; compared as strings
/// they select U+2001..=U+2A6D and U+2F81..=U+2FA1. We keep that behaviour to match sacrebleu.
pub fn is_sacrebleu_chinese_char(c: char) -> bool {
    const RANGES: [(u32, u32); 22] = [
        (0x3400, 0x4db5),
        (0x4e00, 0x9fa5),
        (0x9fa6, 0x9fbb),
        (0xf900, 0xfa2d),
        (0xfa30, 0xfa6a),
        (0xfa70, 0xfad9),
        (0x2001, 0x2a6d),
        (0x2f81, 0x2fa1),
        (0xff00, 0xffef),
        (0x2e80, 0x2eff),
        (0x3000, 0x303f),
        (0x31c0, 0x31ef),
        (0x2f00, 0x2fdf),
        (0x2ff0, 0x2fff),
        (0x3100, 0x312f),
        (0x31a0, 0x31bf),
        (0xfe10, 0xfe1f),
        (0xfe30, 0xfe4f),
        (0x2600, 0x26ff),
        (0x2700, 0x27bf),
        (0x3200, 0x32ff),
        (0x3300, 0x33ff),
    ];
    let u = c as u32;
    RANGES.iter().any(|&(a, b)| a <= u && u <= b)
}

/// sacrebleu `TokenizerZh.__call__`.
pub fn tokenize_zh(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 3);
    for c in py_strip(line).chars() {
        if is_sacrebleu_chinese_char(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    post_tokenize(&out)
}

fn preprocess(sent: &str, cfg: &BleuConfig) -> String {
    let lowered;
    let s = if cfg.lowercase {
        lowered = py_lower(sent);
        lowered.as_str()
    } else {
        sent
    };
    let s = py_rstrip(s);
    match cfg.tokenizer {
        BleuTokenizer::Tok13a => tokenize_13a(s),
        BleuTokenizer::Zh => tokenize_zh(s),
        BleuTokenizer::None => s.to_string(),
    }
}

/// Corpus BLEU of `hypotheses` against one reference each.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
    cfg: &BleuConfig,
) -> Result<BleuScore> {
    if hypotheses.len() != references.len() {
        return Err(EvalError::LengthMismatch {
            what: "references (one per hypothesis)".into(),
            expected: hypotheses.len(),
            got: references.len(),
        });
    }
    let order = cfg.max_order;
    let (mut counts, mut totals) = (vec![0u64; order], vec![0u64; order]);
    let (mut sys_len, mut ref_len) = (0u64, 0u64);
    for (h, r) in hypotheses.iter().zip(references) {
        let (h, r) = (preprocess(h.as_ref(), cfg), preprocess(r.as_ref(), cfg));
        let ht: Vec<&str> = py_split(&h).collect();
        let rt: Vec<&str> = py_split(&r).collect();
        sys_len += ht.len() as u64;
        ref_len += rt.len() as u64;
        for n in 1..=order {
            let mut ref_counts: HashMap<&[&str], u64> = HashMap::new();
            for g in rt.windows(n) {
                *ref_counts.entry(g).or_insert(0) += 1;
            }
            let mut hyp_counts: HashMap<&[&str], u64> = HashMap::new();
            for g in ht.windows(n) {
                *hyp_counts.entry(g).or_insert(0) += 1;
            }
            for (g, c) in hyp_counts {
                totals[n - 1] += c;
                if let Some(&rc) = ref_counts.get(g) {
                    counts[n - 1] += c.min(rc);
                }
            }
        }
    }
    Ok(compute_bleu(&counts, &totals, sys_len, ref_len, cfg.smoothing))
}

/// sacrebleu `BLEU.compute_bleu` (without effective order) from summed statistics.
pub fn compute_bleu(counts: &[u64], totals: &[u64], sys_len: u64, ref_len: u64, smoothing: BleuSmoothing) -> BleuScore {
    let order = counts.len();
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = vec![0.0; order];
    let result = |score: f64, precisions: Vec<f64>| BleuScore {
        score,
        counts: counts.to_vec(),
        totals: totals.to_vec(),
        precisions,
        bp,
        sys_len,
        ref_len,
    };
    if counts.iter().all(|&c| c == 0) {
        return result(0.0, precisions);
    }
    let mut smooth_mteval = 1.0;
    for n in 0..order {
        if totals[n] == 0 {
            break;
        }
        if counts[n] == 0 {
            match smoothing {
                BleuSmoothing::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[n] = 100.0 / (smooth_mteval * totals[n] as f64);
                }
                BleuSmoothing::Floor(v) => precisions[n] = 100.0 * v / totals[n] as f64,
                BleuSmoothing::None => {}
            }
        } else {
            precisions[n] = 100.0 * counts[n] as f64 / totals[n] as f64;
        }
    }
    // sacrebleu `my_log`: log(0) is floored to -9999999999.
    let log_sum: f64 = precisions.iter().map(|&p| if p == 0.0 { -9999999999.0 } else { p.ln() }).sum();
    result(bp * (log_sum / order as f64).exp(), precisions)
}

/// Corpus BLEU with sacrebleu's defaults (13a, exp smoothing), 0–100.
pub fn corpus_bleu_13a<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> Result<f64> {
    Ok(corpus_bleu(hypotheses, references, &BleuConfig::default())?.score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_examples() {
        assert_eq!(tokenize_13a("Hello, world. It's 3.5-4 (ok)!"), "Hello , world . It's 3.5 - 4 ( ok ) !");
        assert_eq!(tokenize_13a("a &amp; b"), "a & b");
    }

    #[test]
    fn zh_tokenizer_splits_han() {
        assert_eq!(tokenize_zh("我们 ok。"), "我 们 ok 。");
    }

    #[test]
    fn perfect_match_is_100() {
        let s = corpus_bleu_13a(&["the cat sat on the mat ."], &["the cat sat on the mat ."]).unwrap();
        assert!((s - 100.0).abs() < 1e-9);
    }
}
