//! Errors of a training run; each names the key, file, step or batch at fault.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config key `{key}`: {msg}")]
    Config { key: String, msg: String },
    #[error("{path}: {msg}")]
    ConfigFile { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Model(#[from] dft_models::ModelError),
    #[error(transparent)]
    Data(#[from] dft_data::DataError),
    #[error(transparent)]
    Loss(#[from] dft_losses::LossError),
    #[error("auto layer selection: {0}")]
    Layers(#[from] dft_layers_select::LayersError),
    #[error("step {step}, batch {batch} (examples {examples}): the loss is not finite ({value}); nothing was trained on it (set train.on_nonfinite = \"skip\" to skip such batches)")]
    NonFiniteLoss { step: usize, batch: usize, examples: String, value: f64 },
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("interrupted at step {step}; checkpoint written to {path}")]
    Interrupted { step: usize, path: PathBuf },
}

pub type Result<T> = std::result::Result<T, TrainError>;
