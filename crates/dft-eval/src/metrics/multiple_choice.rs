//! Multiple-choice accuracy from per-choice log-likelihoods, as lm-evaluation-harness computes it
//! (`api/task.py`, `process_results` for `output_type: multiple_choice`):
//! - acc: argmax of the summed log-likelihoods;
//! - acc_norm: argmax of `loglik / len(choice)` with `len` in characters (Unicode code points) of
//!   the choice text *without* the leading delimiter;
//! - acc_bytes: the same with the UTF-8 byte length.
//!
//! Ties go to the lowest index and a NaN wins (`numpy.argmax`). TruthfulQA MC1 is acc with one
//! true choice. Results are percentages (0–100), like the paper's tables.
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::items::MultipleChoiceItem;

/// The predictions for one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McPrediction {
    /// argmax of the log-likelihoods.
    pub pred: usize,
    /// argmax of log-likelihood per character.
    pub pred_norm: usize,
    /// argmax of log-likelihood per UTF-8 byte.
    pub pred_bytes: usize,
    pub gold: usize,
}

/// Accuracy over a task, in percent, with the per-item predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MCResult {
    pub acc: f64,
    pub acc_norm: f64,
    pub acc_bytes: f64,
    pub n: usize,
    pub per_item: Vec<McPrediction>,
}

impl MCResult {
    /// TruthfulQA's MC1 is the accuracy over items with a single true choice.
    pub fn mc1(&self) -> f64 {
        self.acc
    }
}

/// `numpy.argmax`: first maximum; the first NaN if there is one.
fn np_argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = 0;
    let mut best_v = f64::NEG_INFINITY;
    for (i, v) in values.enumerate() {
        if v.is_nan() {
            return i;
        }
        if i == 0 || v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

/// Predictions of one item from its per-choice log-likelihoods.
pub fn predict(item: &MultipleChoiceItem, logliks: &[f64]) -> Result<McPrediction> {
    item.validate()?;
    if logliks.len() != item.choices.len() {
        return Err(EvalError::LengthMismatch {
            what: format!("log-likelihoods of item `{}` (one per choice)", item.id),
            expected: item.choices.len(),
            got: logliks.len(),
        });
    }
    let lls = || logliks.iter().copied();
    let chars = item.choices.iter().map(|c| c.chars().count() as f64);
    let bytes = item.choices.iter().map(|c| c.len() as f64);
    Ok(McPrediction {
        pred: np_argmax(lls()),
        pred_norm: np_argmax(lls().zip(chars).map(|(l, n)| l / n)),
        pred_bytes: np_argmax(lls().zip(bytes).map(|(l, n)| l / n)),
        gold: item.gold,
    })
}

/// Scores a task: `logliks[i][j]` is the summed log-likelihood of choice `j` of `items[i]`
/// (see [`MultipleChoiceItem::continuation`]).
pub fn score_multiple_choice(items: &[MultipleChoiceItem], logliks: &[Vec<f64>]) -> Result<MCResult> {
    if items.len() != logliks.len() {
        return Err(EvalError::LengthMismatch {
            what: "log-likelihood rows (one per multiple-choice item)".into(),
            expected: items.len(),
            got: logliks.len(),
        });
    }
    let per_item = items.iter().zip(logliks).map(|(it, ll)| predict(it, ll)).collect::<Result<Vec<_>>>()?;
    let n = per_item.len();
    let pct = |hits: usize| if n == 0 { 0.0 } else { 100.0 * hits as f64 / n as f64 };
    Ok(MCResult {
        acc: pct(per_item.iter().filter(|p| p.pred == p.gold).count()),
        acc_norm: pct(per_item.iter().filter(|p| p.pred_norm == p.gold).count()),
        acc_bytes: pct(per_item.iter().filter(|p| p.pred_bytes == p.gold).count()),
        n,
        per_item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(choices: &[&str], gold: usize) -> MultipleChoiceItem {
        MultipleChoiceItem::new("t", "ctx", choices.iter().map(|s| s.to_string()).collect(), gold).unwrap()
    }

    #[test]
    fn acc_and_acc_norm_by_characters() {
        // "是的是的" is 4 chars but 12 bytes: per char -2.0 vs -2.5, per byte -0.67 vs -0.5.
        let it = item(&["是的是的", "abcd"], 0);
        let p = predict(&it, &[-8.0, -10.0]).unwrap();
        assert_eq!((p.pred, p.pred_norm, p.pred_bytes), (0, 0, 0));
        let p = predict(&it, &[-9.0, -8.0]).unwrap();
        assert_eq!((p.pred, p.pred_norm, p.pred_bytes), (1, 1, 0));
        let r = score_multiple_choice(&[it.clone(), it], &[vec![-1.0, -1.0], vec![-3.0, -1.0]]).unwrap();
        assert_eq!(r.acc, 50.0); // tie goes to index 0
        assert!(score_multiple_choice(&[item(&["a", "b"], 0)], &[vec![0.0]]).is_err());
    }

    #[test]
    fn nan_wins_like_numpy() {
        assert_eq!(np_argmax([1.0, f64::NAN, 3.0].into_iter()), 1);
        assert_eq!(np_argmax([f64::NEG_INFINITY, f64::NEG_INFINITY].into_iter()), 0);
    }
}
