//! Errors and skip accounting for every stage of the data pipeline.
//!
//! Each error names the file and the record (with its line; plus the column for invalid JSON) and
//! the field at fault. Readers, filters and the tokenizer run in [`Strictness::Strict`] mode (the
//! first record-level problem is an error) or [`Strictness::Lenient`] mode (the record is skipped
//! and counted under its [`SkipReason`] in a [`DataReport`]); nothing is ever dropped silently.
//! Problems that leave no record to skip (unreadable file, invalid JSON in a JSON array, invalid
//! UTF-8 in a JSON array) are errors in both modes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What to do with a record-level problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strictness {
    /// The first problem is returned as an error.
    Strict,
    /// The record is skipped and counted under its [`SkipReason`].
    #[default]
    Lenient,
}

/// Where a record came from: file, 1-based line of the record's start, 0-based record index in
/// that file (position in the JSON array, or non-blank line index for JSONL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLocation {
    pub path: Arc<Path>,
    pub line: usize,
    pub record: usize,
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (record {})", self.path.display(), self.line, self.record)
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    Missing,
    /// Empty or whitespace only where text is required.
    Empty,
    /// Present but of the wrong JSON type (the string names the type found).
    WrongType(&'static str),
    /// Present with a value outside the allowed range.
    Invalid(String),
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::Missing => write!(f, "missing"),
            FieldProblem::Empty => write!(f, "empty"),
            FieldProblem::WrongType(found) => write!(f, "wrong type ({found})"),
            FieldProblem::Invalid(why) => write!(f, "invalid ({why})"),
        }
    }
}

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}:{line}:{column}: invalid UTF-8 (byte offset {byte_offset})", path.display())]
    InvalidUtf8 { path: PathBuf, line: usize, column: usize, byte_offset: usize },

    #[error("{}:{line}:{column}: invalid JSON: {message}", path.display())]
    InvalidJson { path: PathBuf, line: usize, column: usize, message: String },

    #[error("{location}: field `{field}`: {problem}")]
    Field { location: RecordLocation, field: String, problem: FieldProblem },

    #[error("{location}: duplicate id `{id}` (first seen at line {first_line})")]
    DuplicateId { location: RecordLocation, id: String, first_line: usize },

    #[error(
        "pair count mismatch: {} has {en_count} records, {} has {tgt_count}",
        en_path.display(),
        tgt_path.display()
    )]
    PairCountMismatch { en_path: PathBuf, en_count: usize, tgt_path: PathBuf, tgt_count: usize },

    #[error("{location}: id `{id}` has no partner in {}", other_path.display())]
    Unpaired { location: RecordLocation, id: String, other_path: PathBuf },

    #[error(
        "{location}: prompt {which} is {prompt_len} tokens, leaving no room for a supervised token \
         within max_len {max_len}"
    )]
    PromptTooLong { location: RecordLocation, which: &'static str, prompt_len: usize, max_len: usize },

    #[error("{location}: sequence {which} is {len} tokens, over max_len {max_len} (overlong = skip)")]
    SequenceTooLong { location: RecordLocation, which: &'static str, len: usize, max_len: usize },

    #[error("{location}: tokenizer failed: {message}")]
    Tokenizer { location: RecordLocation, message: String },

    #[error("{}: no files named {pattern}", dir.display())]
    NoFiles { dir: PathBuf, pattern: String },

    #[error("{0}")]
    Config(String),

    #[error("cannot resume from {position:?}: {why}")]
    BadPosition { position: crate::batch::DataPosition, why: String },
}

impl DataError {
    /// The skip reason of a record-level problem; `None` for problems that cannot be skipped.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            DataError::Field { problem: FieldProblem::Missing, .. } => Some(SkipReason::MissingField),
            DataError::Field { problem: FieldProblem::Empty, .. } => Some(SkipReason::EmptyField),
            DataError::Field { .. } => Some(SkipReason::InvalidField),
            DataError::DuplicateId { .. } => Some(SkipReason::DuplicateId),
            DataError::Unpaired { .. } => Some(SkipReason::Unpaired),
            DataError::PromptTooLong { .. } => Some(SkipReason::PromptTooLong),
            DataError::SequenceTooLong { .. } => Some(SkipReason::SequenceTooLong),
            DataError::Tokenizer { .. } => Some(SkipReason::TokenizerError),
            // Within a JSONL file one bad line is one record: skippable. Readers of JSON arrays
            // never route these through `Policy::handle`.
            DataError::InvalidJson { .. } => Some(SkipReason::InvalidJsonLine),
            DataError::InvalidUtf8 { .. } => Some(SkipReason::InvalidUtf8Line),
            DataError::Io { .. }
            | DataError::PairCountMismatch { .. }
            | DataError::NoFiles { .. }
            | DataError::Config(_)
            | DataError::BadPosition { .. } => None,
        }
    }
}

/// Why a record or example was removed. The order is the order of the one-line summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    // Reading.
    InvalidJsonLine,
    InvalidUtf8Line,
    MissingField,
    EmptyField,
    InvalidField,
    DuplicateId,
    Unpaired,
    // Filters.
    ScoreBelowMin,
    ScoreMissing,
    Duplicate,
    TooManyChars,
    // Tokenization.
    PromptTooLong,
    SequenceTooLong,
    TokenizerError,
}

impl SkipReason {
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::InvalidJsonLine => "invalid_json_line",
            SkipReason::InvalidUtf8Line => "invalid_utf8_line",
            SkipReason::MissingField => "missing_field",
            SkipReason::EmptyField => "empty_field",
            SkipReason::InvalidField => "invalid_field",
            SkipReason::DuplicateId => "duplicate_id",
            SkipReason::Unpaired => "unpaired",
            SkipReason::ScoreBelowMin => "score_below_min",
            SkipReason::ScoreMissing => "score_missing",
            SkipReason::Duplicate => "duplicate",
            SkipReason::TooManyChars => "too_many_chars",
            SkipReason::PromptTooLong => "prompt_too_long",
            SkipReason::SequenceTooLong => "sequence_too_long",
            SkipReason::TokenizerError => "tokenizer_error",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many records one stage saw, kept and skipped (per reason), plus the first few skip messages
/// so a user can find the records at fault. `Display` prints it as one line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    /// Records (or examples) that entered the stage.
    pub seen: usize,
    /// Records that left it.
    pub kept: usize,
    /// Removed records per reason; `seen == kept + sum(skipped)`.
    pub skipped: BTreeMap<SkipReason, usize>,
    /// The first [`DataReport::MAX_SAMPLES`] skip messages, in input order.
    pub samples: Vec<String>,
    /// Every skip message (reason first, then where and why), in input order; `dft train` writes them
    /// to `skipped.txt` in the run directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all: Vec<String>,
}

impl DataReport {
    pub const MAX_SAMPLES: usize = 8;

    pub fn total_skipped(&self) -> usize {
        self.skipped.values().sum()
    }

    pub fn count(&self, reason: SkipReason) -> usize {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }

    /// Count one skip with its message.
    pub fn skip(&mut self, reason: SkipReason, message: impl FnOnce() -> String) {
        *self.skipped.entry(reason).or_insert(0) += 1;
        let m = message();
        self.all.push(format!("{reason}: {m}"));
        if self.samples.len() < Self::MAX_SAMPLES {
            self.samples.push(m);
        }
    }

    /// Count `n` skips of one reason with one message.
    pub fn skip_many(&mut self, reason: SkipReason, n: usize, message: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.skipped.entry(reason).or_insert(0) += n;
        let m = message();
        self.all.push(format!("{reason} ({n} records): {m}"));
        if self.samples.len() < Self::MAX_SAMPLES {
            self.samples.push(m);
        }
    }

    /// Add another stage's counts to this one (used to sum the stages of a pipeline: `seen` is
    /// kept from `self`, `kept` is taken from `later`).
    pub fn then(&mut self, later: &DataReport) {
        for (reason, n) in &later.skipped {
            *self.skipped.entry(*reason).or_insert(0) += n;
        }
        for s in &later.samples {
            if self.samples.len() < Self::MAX_SAMPLES {
                self.samples.push(s.clone());
            }
        }
        self.all.extend(later.all.iter().cloned());
        self.kept = later.kept;
    }
}

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seen {}, kept {}, skipped {}", self.seen, self.kept, self.total_skipped())?;
        if !self.skipped.is_empty() {
            let parts: Vec<String> = self.skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Applies a [`Strictness`] to record-level errors.
pub(crate) fn handle(strictness: Strictness, report: &mut DataReport, error: DataError) -> Result<(), DataError> {
    match (strictness, error.skip_reason()) {
        (Strictness::Lenient, Some(reason)) => {
            report.skip(reason, || error.to_string());
            Ok(())
        }
        _ => Err(error),
    }
}
