//! Hugging Face `TrainingArguments` names in the run config.
//!
//! A run config may use transformers' names, at the top level (`learning_rate = 1e-4`, or
//! `--set learning_rate=1e-4`) or in `[train]`; they are rewritten to dft-rs's keys before the config is
//! read. Giving both spellings of one setting is an error naming both.
//!
//! | TrainingArguments | dft-rs | note |
//! |---|---|---|
//! | `learning_rate` | `train.lr` | |
//! | `output_dir` | `train.out_dir` | |
//! | `per_device_train_batch_size` | `train.batch_size` | |
//! | `gradient_accumulation_steps` | `train.grad_accum` | |
//! | `num_train_epochs` | `train.epochs` | whole numbers only |
//! | `max_steps` | `train.max_steps` | `-1` (HF's "off") → 0 |
//! | `warmup_ratio` | `train.warmup_ratio` | |
//! | `max_grad_norm` | `train.max_grad_norm` | |
//! | `save_steps` | `train.checkpoint_every` | |
//! | `save_total_limit` | `train.keep_last` | |
//! | `seed` | `train.seed` | |
//! | `eval_steps` | `train.eval_every` | |
//! | `weight_decay` | `train.weight_decay` | |
//! | `adam_beta1` / `adam_beta2` / `adam_epsilon` | `train.beta1` / `beta2` / `eps` | |
//! | `gradient_checkpointing` | `train.gradient_checkpointing` | |
//! | `logging_steps` | — | metrics are logged every step; only `1` is accepted |

use crate::error::{Result, TrainError};

/// `(HF name, dft-rs key in [train])`.
pub const ALIASES: &[(&str, &str)] = &[
    ("learning_rate", "lr"),
    ("output_dir", "out_dir"),
    ("per_device_train_batch_size", "batch_size"),
    ("gradient_accumulation_steps", "grad_accum"),
    ("num_train_epochs", "epochs"),
    ("max_steps", "max_steps"),
    ("warmup_ratio", "warmup_ratio"),
    ("max_grad_norm", "max_grad_norm"),
    ("save_steps", "checkpoint_every"),
    ("save_total_limit", "keep_last"),
    ("seed", "seed"),
    ("eval_steps", "eval_every"),
    ("weight_decay", "weight_decay"),
    ("adam_beta1", "beta1"),
    ("adam_beta2", "beta2"),
    ("adam_epsilon", "eps"),
    ("gradient_checkpointing", "gradient_checkpointing"),
];

fn bad(key: &str, msg: impl Into<String>) -> TrainError {
    TrainError::Config { key: key.into(), msg: msg.into() }
}

/// Convert an HF value to what dft-rs's key expects.
fn convert(hf: &str, v: toml::Value, where_: &str) -> Result<toml::Value> {
    Ok(match (hf, v) {
        ("num_train_epochs", toml::Value::Float(f)) if f.fract() == 0.0 && f >= 0.0 => toml::Value::Integer(f as i64),
        ("num_train_epochs", toml::Value::Float(f)) => {
            return Err(bad(
                where_,
                format!("{f} epochs: dft-rs trains whole epochs (use max_steps for a partial one)"),
            ))
        }
        ("max_steps", toml::Value::Integer(-1)) => toml::Value::Integer(0),
        (_, v) => v,
    })
}

/// Rewrite TrainingArguments names in `table` (top level or `[train]`) to dft-rs's keys.
pub fn apply(table: &mut toml::Table) -> Result<()> {
    if let Some(v) = table
        .remove("logging_steps")
        .or_else(|| table.get_mut("train").and_then(|t| t.as_table_mut()).and_then(|t| t.remove("logging_steps")))
    {
        if v.as_integer() != Some(1) {
            return Err(bad(
                "logging_steps",
                format!("{v}: dft-rs logs metrics every step (metrics.jsonl / metrics.csv); only 1 is accepted"),
            ));
        }
    }
    for (hf, ours) in ALIASES {
        let mut found: Vec<(String, toml::Value)> = Vec::new();
        if let Some(v) = table.remove(*hf) {
            found.push((hf.to_string(), v));
        }
        if hf != ours {
            if let Some(v) = table.get_mut("train").and_then(|t| t.as_table_mut()).and_then(|t| t.remove(*hf)) {
                found.push((format!("train.{hf}"), v));
            }
        }
        let Some((where_, v)) = found.pop() else { continue };
        if let Some((other, _)) = found.first() {
            return Err(bad(&where_, format!("given twice (also as `{other}`)")));
        }
        let train = table
            .entry("train")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| bad("train", "is not a section"))?;
        if train.contains_key(*ours) {
            return Err(bad(
                &format!("train.{ours}"),
                format!("given twice (also as the TrainingArguments name `{where_}`)"),
            ));
        }
        train.insert(ours.to_string(), convert(hf, v, &where_)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn hf_names_become_dft_keys() {
        let mut t = table(
            "learning_rate = 1e-4\nnum_train_epochs = 2.0\nmax_steps = -1\nsave_steps = 50\nlogging_steps = 1\n\
             [train]\nper_device_train_batch_size = 8\noutput_dir = \"runs/x\"\n",
        );
        apply(&mut t).unwrap();
        let tr = t["train"].as_table().unwrap();
        assert_eq!(tr["lr"].as_float(), Some(1e-4));
        assert_eq!(tr["epochs"].as_integer(), Some(2));
        assert_eq!(tr["max_steps"].as_integer(), Some(0));
        assert_eq!(tr["checkpoint_every"].as_integer(), Some(50));
        assert_eq!(tr["batch_size"].as_integer(), Some(8));
        assert_eq!(tr["out_dir"].as_str(), Some("runs/x"));
        assert!(!t.contains_key("learning_rate") && !tr.contains_key("per_device_train_batch_size"));
    }

    #[test]
    fn conflicts_and_unsupported_values_are_errors() {
        let e = apply(&mut table("learning_rate = 1e-4\n[train]\nlr = 2e-5\n")).unwrap_err().to_string();
        assert!(e.contains("train.lr") && e.contains("learning_rate"), "{e}");
        let e = apply(&mut table("num_train_epochs = 1.5\n")).unwrap_err().to_string();
        assert!(e.contains("num_train_epochs"), "{e}");
        let e = apply(&mut table("logging_steps = 10\n")).unwrap_err().to_string();
        assert!(e.contains("logging_steps"), "{e}");
    }
}
