//! Errors of the layer-selection crate; each names the file, record or input at fault.
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LayersError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: no usable lines (empty or blank file)")]
    EmptyFile { path: PathBuf },

    #[error(
        "{target} has {target_lines} lines but {english} has {english_lines}; parallel files must be line-aligned"
    )]
    NotParallel { target: PathBuf, target_lines: usize, english: PathBuf, english_lines: usize },

    #[error("no `{lang}` text under {dir}: tried {tried} (pass the files explicitly: --data TARGET.txt ENGLISH.txt)")]
    MissingLanguage { lang: String, dir: PathBuf, tried: String },

    #[error("{what}: tokenizer failed: {msg}")]
    Tokenizer { what: String, msg: String },

    #[error("input {index} ({what}) has no tokens")]
    EmptyInput { what: String, index: usize },

    #[error("{source_name}: line {line}: {msg}")]
    WordPairs { source_name: String, line: usize, msg: String },

    #[error("entropy curve has {len} points; critical-layer detection needs at least {need} from block {start}")]
    CurveTooShort { len: usize, need: usize, start: usize },

    #[error("critical layers i = {i}, j = {j} are invalid for a {layers}-block model (need 1 <= i < j <= {layers})")]
    InvalidLayers { i: usize, j: usize, layers: usize },

    #[error("{path}: plot failed: {msg}")]
    Plot { path: PathBuf, msg: String },

    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
}

pub type Result<T, E = LayersError> = std::result::Result<T, E>;
