//! # dft-train
//!
//! The training loop behind `dft train`: reads a TOML run config, loads a model (HF directory, GGUF
//! or the embedded SmolLM2), prepares parallel data with dft-data, and optimises the DFT objective of
//! dft-losses with AdamW (PyTorch semantics), a cosine schedule with warm-up, gradient accumulation and
//! global-norm clipping. It logs every step (JSONL + progress bar), evaluates a held-out loss, writes
//! atomic checkpoints that resume exactly, and exports an HF checkpoint directory at the end.
//!
//! One step from the CLI to the loss: `dft train` → [`trainer::train`] → [`data_prep::to_loss_batch`]
//! → `dft_losses::dft_loss`.

pub mod aliases;
pub mod alloc;
pub mod auto_layers;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod data_prep;
pub mod error;
pub mod fetch;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod plan;
pub mod run_dir;
pub mod run_info;
pub mod schedule;
pub mod sweep;
#[cfg(test)]
mod test_scratch;
pub mod trainer;

pub use alloc::retain_freed_memory;
pub use config::{LayerChoice, Method, TrainConfig};
pub use error::{Result, TrainError};
pub use optim::FusedAdamW;
pub use plan::MemoryPlan;
pub use sweep::{run_sweep, SweepAux, SweepReport, SweepRun, SweepSpec};
pub use trainer::{eval_loss, heldout_corpus, resolve_model_path, train, TrainHooks, TrainSummary};
