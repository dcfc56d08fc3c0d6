//! Typed errors for model loading and running. Every variant names the file and/or tensor at fault.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid config.json: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: unsupported architecture `{arch}` (supported: llama, gemma2, gemma3_text)")]
    UnknownArchitecture { path: PathBuf, arch: String },
    #[error("{path}: invalid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: unexpected tensor `{tensor}` (not part of a {arch} model with this config)")]
    UnexpectedTensor { path: PathBuf, tensor: String, arch: String },
    #[error("{path}: tensor `{tensor}` has shape {got:?}, the config implies {want:?}")]
    ShapeMismatch { path: PathBuf, tensor: String, got: Vec<usize>, want: Vec<usize> },
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype}")]
    UnsupportedDtype { path: PathBuf, tensor: String, dtype: String },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("{path}: chat template {msg}")]
    ChatTemplate { path: PathBuf, msg: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
