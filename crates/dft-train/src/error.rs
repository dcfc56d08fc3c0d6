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
    #[error("{dir} is in use by {holder} (lock file {lock}); wait for it to finish, or remove the lock file if that process is not running")]
    Locked { dir: PathBuf, holder: String, lock: PathBuf },
    #[error("{dir} already holds a run ({holds}); continue it with --resume, start over with --overwrite (moves the old run to {dir}.old-<time>), or pick another output directory")]
    RunExists { dir: PathBuf, holds: String },
    #[error("no space left on device while writing {path} (needs ≈ {}, {} free)", crate::run_dir::gb(*need), crate::run_dir::gb(*free))]
    NoSpace { path: PathBuf, need: u64, free: u64 },
    #[error("--resume: the config differs from the one checkpoint {checkpoint} was trained with: {keys}; resume with the original values, or start a new run (--overwrite or another train.out_dir)")]
    ResumeConfig { checkpoint: PathBuf, keys: String },
    #[error("data-parallel run: {msg}")]
    Parallel { msg: String },
    #[error("interrupted at step {step}; checkpoint written to {path}")]
    Interrupted { step: usize, path: PathBuf },
}

pub type Result<T> = std::result::Result<T, TrainError>;
