//! Checkpoints that resume exactly: model and optimiser records (Burn's full-precision recorder, which
//! keeps parameter ids so the AdamW moments find their parameters again), the schedule position, the
//! data position and the run's config. A checkpoint is written into a temporary directory and renamed
//! into place, so a crash never leaves a half-written `checkpoint-NNNNNN`; only the last K are kept.

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use dft_data::DataPosition;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimiser steps completed.
    pub step: usize,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// Where the next micro-batch comes from.
    pub data_position: DataPosition,
    /// Batches skipped because their loss was not finite.
    pub skipped_batches: usize,
    /// Lines of metrics.jsonl that belong to steps 1..=step.
    pub metrics_lines: usize,
    pub config: TrainConfig,
}

pub const STATE_FILE: &str = "trainer_state.json";
pub const MODEL_FILE: &str = "model"; // recorder adds .mpk
/// LoRA runs: only the trainable parts (adapters, modules to save), not the frozen base.
pub const LORA_FILE: &str = "lora"; // recorder adds .mpk
pub const OPTIM_FILE: &str = "optimizer"; // recorder adds .mpk

pub fn checkpoint_dir(out_dir: &Path, step: usize) -> PathBuf {
    out_dir.join(format!("checkpoint-{step:06}"))
}

/// Complete checkpoints in `out_dir`, oldest first.
pub fn list_checkpoints(out_dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(out_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("checkpoint-")?.parse::<usize>().ok()?;
            e.path().join(STATE_FILE).is_file().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Write a checkpoint via `write` (which fills the given directory with the records) atomically.
pub fn write_checkpoint(
    out_dir: &Path,
    state: &TrainerState,
    keep_last: usize,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(out_dir, state.step);
    let tmp = out_dir.join(format!(".tmp-checkpoint-{:06}-{}", state.step, std::process::id()));
    let io = |path: &Path, source| TrainError::Io { path: path.into(), source };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    write(&tmp)?;
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(tmp.join(STATE_FILE), json).map_err(|e| io(&tmp, e))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
    let all = list_checkpoints(out_dir);
    if all.len() > keep_last {
        for (_, old) in &all[..all.len() - keep_last] {
            std::fs::remove_dir_all(old).map_err(|e| io(old, e))?;
        }
    }
    Ok(final_dir)
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Io { path: path.clone(), source: e })?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path, msg: e.to_string() })
}
