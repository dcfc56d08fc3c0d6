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

/// The checksum manifest of a checkpoint, written last: every other file with its size and SHA-256.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn write_manifest(dir: &Path) -> Result<()> {
    let io = |path: &Path, source| TrainError::Io { path: path.into(), source };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != MANIFEST_FILE)
        .collect();
    names.sort();
    let mut entries = Vec::new();
    for file in names {
        let p = dir.join(&file);
        let (bytes, sha256) = sha256_file(&p).map_err(|e| io(&p, e))?;
        entries.push(ManifestEntry { file, bytes, sha256 });
    }
    let path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_string_pretty(&entries).expect("manifest serialises");
    write_synced(&path, json.as_bytes()).map_err(|e| io(&path, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Check a checkpoint against its manifest: `Err(file and what is wrong)` when a file is missing,
/// has another size or another checksum. Checkpoints from before manifests (no `manifest.json`) are
/// checked for their files only.
pub fn validate_checkpoint(dir: &Path) -> std::result::Result<(), String> {
    let manifest = dir.join(MANIFEST_FILE);
    let entries: Vec<ManifestEntry> = match std::fs::read_to_string(&manifest) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: unreadable ({e})", manifest.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            for f in [STATE_FILE, "model.mpk", "optimizer.mpk"] {
                if !dir.join(f).is_file() {
                    return Err(format!("{} is missing", dir.join(f).display()));
                }
            }
            return Ok(());
        }
        Err(e) => return Err(format!("{}: {e}", manifest.display())),
    };
    for e in &entries {
        let p = dir.join(&e.file);
        let (bytes, sha) = sha256_file(&p).map_err(|err| format!("{}: {err}", p.display()))?;
        if bytes != e.bytes {
            return Err(format!("{} has {bytes} bytes, the manifest says {}", p.display(), e.bytes));
        }
        if sha != e.sha256 {
            return Err(format!("{} does not match its checksum in the manifest", p.display()));
        }
    }
    Ok(())
}

/// The newest checkpoint that passes [`validate_checkpoint`]. Each newer one that fails is reported
/// (`checkpoint N is incomplete or corrupt: <file>`) and renamed to `corrupt-checkpoint-NNNNNN` (kept,
/// never deleted, and no longer picked up).
pub fn newest_valid_checkpoint(out_dir: &Path) -> Option<(usize, PathBuf)> {
    // Every `checkpoint-NNNNNN`, also those without a state file (incomplete).
    let mut all: Vec<(usize, PathBuf)> = std::fs::read_dir(out_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("checkpoint-")?.parse::<usize>().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    all.sort();
    let mut skipped = Vec::new();
    for (step, dir) in all.into_iter().rev() {
        let valid = if dir.join(STATE_FILE).is_file() {
            validate_checkpoint(&dir)
        } else {
            Err(format!("{} is missing", dir.join(STATE_FILE).display()))
        };
        match valid {
            Ok(()) => {
                if !skipped.is_empty() {
                    eprintln!("resuming from the newest valid checkpoint instead: {} (step {step})", dir.display());
                }
                return Some((step, dir));
            }
            Err(why) => {
                eprintln!("checkpoint {step} is incomplete or corrupt: {why}");
                let aside = out_dir.join(format!("corrupt-checkpoint-{step:06}"));
                if std::fs::rename(&dir, &aside).is_ok() {
                    eprintln!("  moved to {} (kept for inspection)", aside.display());
                }
                skipped.push(step);
            }
        }
    }
    if !skipped.is_empty() {
        eprintln!("no valid checkpoint left in {}", out_dir.display());
    }
    None
}

/// Write a checkpoint via `write` (which fills the given directory with the records) atomically: into
/// `.tmp-checkpoint-NNNNNN-<pid>`, then the state, then the checksum manifest, then one rename. Needs
/// about `estimate` bytes (checked against the free space first; the newest existing checkpoint's
/// size when there is one). On failure the temporary directory is removed and earlier checkpoints are
/// untouched; a full disk is reported as such.
pub fn write_checkpoint(
    out_dir: &Path,
    state: &TrainerState,
    keep_last: usize,
    estimate: u64,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(out_dir, state.step);
    let tmp = out_dir.join(format!(".tmp-checkpoint-{:06}-{}", state.step, std::process::id()));
    let io = |path: &Path, source| TrainError::Io { path: path.into(), source };
    // The previous checkpoint's size when there is one (exact for this run), else the estimate.
    let need = list_checkpoints(out_dir).last().map(|(_, d)| dir_bytes(d)).filter(|&b| b > 0).unwrap_or(estimate);
    crate::run_dir::check_space(out_dir, need)?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    let filled = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        write(&tmp)?;
        if let Some(ms) = std::env::var("DFT_FAULT_CHECKPOINT_PAUSE_MS").ok().and_then(|s| s.parse().ok()) {
            // Fault injection (tests): hold the half-written checkpoint open long enough to be killed in.
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if std::env::var("DFT_FAULT_CHECKPOINT_ENOSPC").is_ok_and(|s| s == state.step.to_string()) {
            // Fault injection (tests, where no small file system can be mounted): the disk "fills up".
            return Err(io(&tmp.join("optimizer.mpk"), std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        let json = serde_json::to_string_pretty(state).expect("state serialises");
        let sp = tmp.join(STATE_FILE);
        write_synced(&sp, json.as_bytes()).map_err(|e| io(&sp, e))?;
        write_manifest(&tmp)
    })();
    if let Err(e) = filled {
        std::fs::remove_dir_all(&tmp).ok();
        let msg = e.to_string();
        let full = matches!(&e, TrainError::Io { source, .. } if crate::run_dir::is_no_space(source));
        return Err(if full {
            let free = crate::run_dir::free_bytes(out_dir).unwrap_or(0);
            TrainError::NoSpace { path: tmp, need, free }
        } else {
            crate::run_dir::explain_write_failure(&tmp, need, &msg, e)
        });
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
    // Keep the newest `keep_last` (the one just written always among them).
    let older: Vec<_> = list_checkpoints(out_dir).into_iter().filter(|(s, _)| *s < state.step).collect();
    if older.len() + 1 > keep_last {
        for (_, old) in &older[..older.len() + 1 - keep_last] {
            std::fs::remove_dir_all(old).map_err(|e| io(old, e))?;
        }
    }
    Ok(final_dir)
}

/// Total size of the files in a directory (not recursive).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// Where `--resume` continues from: the newest valid checkpoint ([`newest_valid_checkpoint`]) and its
/// state, after checking that `cfg` differs from the checkpoint's config only in
/// [`crate::config::RESUME_SAFE_KEYS`] (those changes are reported). `None`: no checkpoint.
pub fn resume_point(out_dir: &Path, cfg: &TrainConfig) -> Result<Option<(PathBuf, TrainerState)>> {
    let Some((_, dir)) = newest_valid_checkpoint(out_dir) else { return Ok(None) };
    let saved = read_state(&dir)?;
    let diff = crate::config::compare_for_resume(&saved.config, cfg);
    if !diff.refused.is_empty() {
        return Err(TrainError::ResumeConfig { checkpoint: dir, keys: diff.refused.join("; ") });
    }
    for k in &diff.allowed {
        eprintln!("--resume: changed {k} (allowed)");
    }
    Ok(Some((dir, saved)))
}

pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Io { path: path.clone(), source: e })?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path, msg: e.to_string() })
}
