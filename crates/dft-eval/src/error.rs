//! Typed errors of dft-eval. Loader errors name the file and, for line-based formats and JSON
//! arrays, the line of the record at fault (`path:line: message`), so a user can open the spot.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A task name that is not in the registry.
    #[error("unknown task `{name}` (known tasks: {known})")]
    UnknownTask { name: String, known: String },
    /// A language code other than en, zh, vi, ar.
    #[error("unknown language `{code}` (supported: en, zh, vi, ar)")]
    UnknownLanguage { code: String },
    /// The task has no data in this language (XCOPA has no Arabic, XStoryCloze no Vietnamese).
    #[error("task `{task}` does not exist in language `{lang}` (available: {available})")]
    UnsupportedLanguage { task: String, lang: String, available: String },
    /// None of the file names a task accepts exists under the data directory.
    #[error("task `{task}` ({lang}): no data file under {dir}; looked for: {tried}")]
    MissingFile { task: String, lang: String, dir: PathBuf, tried: String },
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A record that cannot be parsed or has an invalid value.
    #[error("{path}:{line}: {message}")]
    Malformed { path: PathBuf, line: usize, message: String },
    /// A record that has the wrong number of answer choices (e.g. an MMLU row with 5 columns).
    #[error("{path}:{line}: expected {expected} answer choices, found {found}")]
    ChoiceCount { path: PathBuf, line: usize, expected: usize, found: usize },
    /// A record of a JSON document whose line is unknown after parsing, named by its id.
    #[error("{path}: record `{record}`: {message}")]
    InvalidRecord { path: PathBuf, record: String, message: String },
    /// Scoring inputs that do not line up (items vs. predictions, choices vs. log-likelihoods).
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch { what: String, expected: usize, got: usize },
    /// An item that cannot be scored (no gold answer, gold index out of range, no choices).
    #[error("item `{id}`: {message}")]
    InvalidItem { id: String, message: String },
    /// The tokenizer failed on a text.
    #[error("tokenizer: {message}")]
    Tokenizer { message: String },
    /// A request whose continuation has no tokens of its own after lm-eval's context/continuation
    /// split (e.g. an empty choice), so there is nothing to score.
    #[error("item `{id}`: continuation {continuation:?} has no tokens after the context (empty choice?)")]
    EmptyContinuation { id: String, continuation: String },
    /// A generation prompt (or multiple-choice context) that tokenises to nothing.
    #[error("item `{id}`: the prompt is empty after tokenisation")]
    EmptyPrompt { id: String },
    /// A continuation longer than the model's context window (lm-eval refuses these too).
    #[error("item `{id}`: continuation of {tokens} tokens does not fit the model's {max} positions")]
    TooLong { id: String, tokens: usize, max: usize },
    /// The backend's output could not be read back (dtype / shape mismatch).
    #[error("reading the model output: {message}")]
    ModelOutput { message: String },
    /// Reading or writing a results file.
    #[error("{path}: {message}")]
    Results { path: PathBuf, message: String },

    #[error("task `{task}` ({lang}) has no items to score{detail}; a score over zero items would read as 0.0")]
    NoItems { task: String, lang: String, detail: String },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl EvalError {
    pub(crate) fn malformed(path: &std::path::Path, line: usize, message: impl Into<String>) -> Self {
        EvalError::Malformed { path: path.to_path_buf(), line, message: message.into() }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        EvalError::Io { path: path.to_path_buf(), source }
    }
}
