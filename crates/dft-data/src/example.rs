//! The parallel example: one instruction, its input and its answer in English and in a target
//! language (paper notation `x_en, y_en, x_tgt, y_tgt`).

use serde::{Deserialize, Serialize};

use crate::error::{DataReport, RecordLocation};

/// A query: the Alpaca instruction plus its optional input. An empty `input` means "no input" and
/// selects the no-input prompt (stanford_alpaca tests `input != ""`, so whitespace counts as input).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Query {
    pub instruction: String,
    pub input: String,
}

impl Query {
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }
}

/// One training example in English and in the target language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParallelExample {
    /// The record's `id` field (string or integer) when it has one, otherwise its 0-based position
    /// in the input (across files, in reading order). Unique within a corpus.
    pub id: String,
    pub x_en: Query,
    pub y_en: String,
    pub x_tgt: Query,
    pub y_tgt: String,
    /// Translation-quality rating 1..=5 where the source has one (alpaca_en_zh `metadata.score`).
    pub score: Option<u8>,
    /// Where the record was read (the target-language record for two-file sources).
    pub origin: RecordLocation,
}

/// Parallel examples for one target language, with what reading and filtering removed.
#[derive(Debug, Clone)]
pub struct ParallelCorpus {
    /// Language code of the target side (`zh`, `vi`, `ar`, ...).
    pub target_lang: String,
    pub examples: Vec<ParallelExample>,
    /// Reading, then each filter applied, summed (`report.kept == examples.len()`).
    pub report: DataReport,
}
