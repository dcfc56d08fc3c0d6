//! Host-side batches the objective consumes: right-padded token rows with labels, lengths and the
//! prompt / query-content spans used for pooling. `dft-data` produces them; other trainers can fill
//! them from their own pipelines.

use crate::error::{LossError, Result};
use std::ops::Range;

/// Label value that is ignored by the cross-entropy (HF convention).
pub const IGNORE_INDEX: i64 = -100;

/// One kind of sequence for a batch of examples, right-padded to `seq_len`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sequences {
    pub seq_len: usize,
    /// `[rows * seq_len]`, row-major, padding after `lengths[r]`.
    pub input_ids: Vec<u32>,
    /// Same shape; `labels[t]` is the token expected at position `t` (`IGNORE_INDEX` on the prompt and
    /// padding). The loss at position `t` predicts `labels[t + 1]` (the shift is done by the loss).
    pub labels: Vec<i64>,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
    /// Tokens of the prompt `P(x)` per row (a prefix of the row).
    pub prompt_lens: Vec<usize>,
    /// The query-content tokens inside the prompt, per row: the instruction's span and, when the
    /// example has one, the input's span (the template text between them is not query content).
    pub query_spans: Vec<Vec<Range<usize>>>,
}

impl Sequences {
    pub fn rows(&self) -> usize {
        self.lengths.len()
    }

    /// Shape and range checks; `what` names the sequence kind in errors.
    pub fn validate(&self, what: &'static str) -> Result<()> {
        let bad = |msg: String| LossError::BadBatch { what, msg };
        let n = self.rows() * self.seq_len;
        if self.input_ids.len() != n {
            return Err(bad(format!("input_ids has {} entries, rows × seq_len = {n}", self.input_ids.len())));
        }
        if self.labels.len() != n {
            return Err(bad(format!(
                "labels has {} entries, input_ids has {n} (label/sequence shape mismatch)",
                self.labels.len()
            )));
        }
        for (name, len) in [("prompt_lens", self.prompt_lens.len()), ("query_spans", self.query_spans.len())] {
            if len != self.rows() {
                return Err(bad(format!("{name} has {len} rows, lengths has {}", self.rows())));
            }
        }
        for r in 0..self.rows() {
            if self.lengths[r] == 0 || self.lengths[r] > self.seq_len {
                return Err(bad(format!("row {r}: length {} not in 1..={}", self.lengths[r], self.seq_len)));
            }
            if self.prompt_lens[r] > self.lengths[r] {
                return Err(bad(format!(
                    "row {r}: prompt length {} exceeds row length {}",
                    self.prompt_lens[r], self.lengths[r]
                )));
            }
            for s in &self.query_spans[r] {
                if s.start > s.end || s.end > self.prompt_lens[r] {
                    return Err(bad(format!(
                        "row {r}: query span {s:?} is not inside the prompt (0..{})",
                        self.prompt_lens[r]
                    )));
                }
            }
        }
        Ok(())
    }

    /// The same rows padded only to the longest real row (`max(lengths)`): columns after it are
    /// padding in every row, which no loss reads, so a pass over them is wasted work (a batch padded
    /// to a fixed length by another pipeline). Borrowed when there is nothing to trim.
    pub fn trim_padding(&self) -> std::borrow::Cow<'_, Sequences> {
        let width = self.lengths.iter().copied().max().unwrap_or(0);
        if width >= self.seq_len || self.rows() == 0 {
            return std::borrow::Cow::Borrowed(self);
        }
        let rows =
            |v: &[u32]| -> Vec<u32> { v.chunks(self.seq_len).flat_map(|r| r[..width].iter().copied()).collect() };
        let labels = self.labels.chunks(self.seq_len).flat_map(|r| r[..width].iter().copied()).collect();
        std::borrow::Cow::Owned(Sequences {
            seq_len: width,
            input_ids: rows(&self.input_ids),
            labels,
            lengths: self.lengths.clone(),
            prompt_lens: self.prompt_lens.clone(),
            query_spans: self.query_spans.clone(),
        })
    }

    /// Flat positions `r*seq_len + t` whose next token is labelled, with that token: the rows of
    /// hidden states the cross-entropy needs (logits are computed nowhere else).
    pub fn labelled_positions(&self) -> (Vec<i64>, Vec<u32>) {
        let mut pos = Vec::new();
        let mut tgt = Vec::new();
        for r in 0..self.rows() {
            let base = r * self.seq_len;
            for t in 0..self.seq_len.saturating_sub(1) {
                let y = self.labels[base + t + 1];
                if y != IGNORE_INDEX {
                    pos.push((base + t) as i64);
                    tgt.push(y as u32);
                }
            }
        }
        (pos, tgt)
    }
}

/// Everything one optimisation step of DFT may need, for the same examples (row `r` is example `r`
/// in every field).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DftBatch {
    /// The main supervised sequences: TFT `P(x_tgt) ⊕ y_tgt` (or SFT `P(x_en) ⊕ y_en`).
    pub main: Sequences,
    /// LC-logits: `P(x_tgt) ⊕ x_en`.
    pub lc: Option<Sequences>,
    /// ET-logits: `P(x_tgt) ⊕ y_en`.
    pub et: Option<Sequences>,
    /// The English prompts `P(x_en)` (feature losses).
    pub en_prompt: Option<Sequences>,
}

impl DftBatch {
    /// Every kind of sequence padded only to its longest real row ([`Sequences::trim_padding`]).
    pub fn trim_padding(&self) -> std::borrow::Cow<'_, DftBatch> {
        fn opt(s: &Option<Sequences>) -> Option<std::borrow::Cow<'_, Sequences>> {
            s.as_ref().map(Sequences::trim_padding)
        }
        let (main, lc, et, en) = (self.main.trim_padding(), opt(&self.lc), opt(&self.et), opt(&self.en_prompt));
        let owned = |c: &std::borrow::Cow<'_, Sequences>| matches!(c, std::borrow::Cow::Owned(_));
        if !owned(&main) && ![&lc, &et, &en].iter().any(|c| c.as_ref().is_some_and(owned)) {
            return std::borrow::Cow::Borrowed(self);
        }
        std::borrow::Cow::Owned(DftBatch {
            main: main.into_owned(),
            lc: lc.map(|c| c.into_owned()),
            et: et.map(|c| c.into_owned()),
            en_prompt: en.map(|c| c.into_owned()),
        })
    }
}
