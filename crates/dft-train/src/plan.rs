//! `dft plan`: the memory a run will need, from the model's config and the run config alone (no
//! weights are loaded), so that a user can size a GPU — or refuse a run that cannot fit — before
//! spending anything.
//!
//! The estimate counts what dft-rs holds during a training step:
//! - **weights**: f32 master weights; under LoRA the frozen base in f32, or in bf16 with
//!   `train.precision = "bf16-mixed"` (norms stay f32); bf16-mixed also keeps a bf16 copy of every
//!   weight a product reads (saved for its backward) — for the full model that is 2 bytes per parameter;
//! - **gradients** (f32) and **AdamW state** (two f32 moments) of the trainable parameters only;
//! - **activations** saved for the backward pass, per token and block, of the decoder as dft-rs runs it
//!   (projections, RoPE, the `[heads, seq]` attention scores and probabilities, gated MLP, residuals and
//!   norms in f32; bf16 operand copies under bf16-mixed; LoRA's `x·A`), times the batch's tokens, plus
//!   the DFT passes (LC to block i and ET to block j on their own sequences, which continue the main
//!   pass's prompt keys/values and so run on their answers only — counted as half a sequence each; the
//!   English prompt pass of the feature form, about half a sequence, at full depth);
//! - with `gradient_checkpointing`: Burn's balanced strategy recomputes the memory-bound outputs
//!   (norms, RoPE, softmax, activations, residual sums), keeping the products;
//! - the chunked cross-entropy's buffers (≤ 16M logits at a time, three buffers) and, for a trainable
//!   head, its gradient accumulation (three head-sized buffers on Flex, one elsewhere: counted as three).
//!
//! It is an estimate: the allocator's slack, the framework's workspace and fragmentation come on top
//! (docs/PERFORMANCE.md compares it with the measured peak on CPU). A run is refused only when the
//! estimate with checkpointing exceeds the given limit.

use crate::config::{Method, TrainConfig};
use dft_losses::{AuxLoss, Precision};
use dft_models::{LoraTarget, ModelConfig};

/// Bytes of each part of a training step's memory.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryPlan {
    pub params_total: u64,
    pub params_trainable: u64,
    pub weights: u64,
    pub bf16_weight_copies: u64,
    pub gradients: u64,
    pub optimizer: u64,
    /// Saved activations without gradient checkpointing.
    pub activations: u64,
    /// Saved activations with `train.gradient_checkpointing = true`.
    pub activations_checkpointed: u64,
    /// Chunked cross-entropy buffers and the head-gradient accumulation.
    pub loss_buffers: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    pub precision: Precision,
    pub lora_rank: Option<usize>,
}

const GB: f64 = 1e9;

impl MemoryPlan {
    /// See the module docs.
    pub fn estimate(m: &ModelConfig, cfg: &TrainConfig) -> Self {
        let (h, i, l, v) =
            (m.hidden_size as u64, m.intermediate_size as u64, m.num_hidden_layers as u64, m.vocab_size as u64);
        let (nh, nkv, d) = (m.num_attention_heads as u64, m.num_key_value_heads as u64, m.head_dim as u64);
        let gemma = m.arch.is_gemma();
        let qk_norm = m.arch.has_qk_norm();
        // Parameters.
        let proj = |t: LoraTarget| -> (u64, u64) {
            match t {
                LoraTarget::Q => (h, nh * d),
                LoraTarget::K | LoraTarget::V => (h, nkv * d),
                LoraTarget::O => (nh * d, h),
                LoraTarget::Gate | LoraTarget::Up => (h, i),
                LoraTarget::Down => (i, h),
            }
        };
        let block_matrices: u64 = LoraTarget::ALL.iter().map(|&t| proj(t).0 * proj(t).1).sum();
        let block_norms = h * if gemma { 4 } else { 2 } + if qk_norm { 2 * d } else { 0 };
        let embed = v * h;
        let head = if m.tie_word_embeddings { 0 } else { v * h };
        let matrices = l * block_matrices + embed + head;
        let norms = l * block_norms + h;
        let total = matrices + norms;
        let bf16 = cfg.train.precision == Precision::Bf16Mixed;

        let (trainable, weights, copies) = match &cfg.lora {
            None => (total, 4 * total, if bf16 { 2 * matrices } else { 0 }),
            Some(spec) => {
                let r = spec.rank as u64;
                let adapters: u64 = l * spec.targets.iter().map(|&t| r * (proj(t).0 + proj(t).1)).sum::<u64>();
                let saved: u64 = spec
                    .modules_to_save
                    .iter()
                    .map(|s| match s {
                        dft_models::SavedModule::LmHead => head,
                        dft_models::SavedModule::EmbedTokens => embed,
                    })
                    .sum();
                let frozen_matrices = matrices - saved;
                let base = if bf16 { 2 * frozen_matrices } else { 4 * frozen_matrices } + 4 * norms;
                (adapters + saved, base + 4 * (adapters + saved), if bf16 { 2 * (adapters + saved) } else { 0 })
            }
        };

        // Activations (elements per token and block).
        let t = cfg.data.max_len as u64;
        let (qd, kvd) = (nh * d, nkv * d);
        let norms_out = h * if gemma { 4 } else { 2 } + if qk_norm { qd + kvd } else { 0 };
        let rope = 2 * (qd + kvd); // rotated halves and the roped q, k
        let products = (qd + 2 * kvd) /* q, k, v */ + (qd + 2 * kvd) /* head-major copies */ + qd /* attention out */
            + h /* o */ + 2 * i /* gate, up */ + h /* down */;
        let scores = nh * t; // scores; the probabilities are another nh * t
        let memory_bound = norms_out + rope + nh * t /* probs */ + i /* act·up */ + 2 * h /* residual sums */;
        let lora_rows: u64 = cfg.lora.as_ref().map_or(0, |s| {
            s.targets.len() as u64 * s.rank as u64 + if s.dropout > 0.0 { s.targets.len() as u64 * h } else { 0 }
        });
        let bf16_operands = if bf16 { 3 * h + qd + 2 * h + i + qd + kvd + nh * t + kvd } else { 0 };
        let per_token_block = 4 * (products + scores + memory_bound + lora_rows) + 2 * bf16_operands;
        let per_token_block_ckpt = 4 * (products + scores + lora_rows) + 2 * bf16_operands;
        // Depth-equivalents of the passes one step runs.
        let mut depth = l as f64;
        if cfg.method.name == Method::Dft {
            let layer = |c: crate::config::LayerChoice| match c {
                crate::config::LayerChoice::Index(k) => k as f64,
                crate::config::LayerChoice::Auto(_) => l as f64 / 2.0,
            };
            // The LC/ET passes continue the main pass's prompt keys and values (shared prefix), so they run
            // on their answers only: counted as half a sequence each.
            if cfg.method.lc == AuxLoss::Logits {
                depth += 0.5 * layer(cfg.method.lc_layer);
            }
            if cfg.method.et == AuxLoss::Logits {
                depth += 0.5 * layer(cfg.method.et_layer);
            }
            if cfg.method.lc == AuxLoss::Feature || cfg.method.et == AuxLoss::Feature {
                depth += 0.5 * l as f64;
            }
        }
        let tokens = (cfg.train.batch_size as u64 * t) as f64;
        let embed_act = tokens * 4.0 * h as f64 * 2.0;
        let activations = (tokens * depth * per_token_block as f64 + embed_act) as u64;
        let activations_checkpointed = (tokens * depth * per_token_block_ckpt as f64 + embed_act) as u64;
        let chunk = (16u64 << 20).min(cfg.train.batch_size as u64 * t * v).max(256 * v);
        let head_trainable = match &cfg.lora {
            None => true,
            Some(s) => !s.modules_to_save.is_empty(),
        };
        let loss_buffers = 3 * 4 * chunk + if head_trainable { 3 * 4 * v * h } else { 0 };
        MemoryPlan {
            params_total: total,
            params_trainable: trainable,
            weights,
            bf16_weight_copies: copies,
            gradients: 4 * trainable,
            optimizer: 8 * trainable,
            activations,
            activations_checkpointed,
            loss_buffers,
            batch_size: cfg.train.batch_size,
            seq_len: cfg.data.max_len,
            precision: cfg.train.precision,
            lora_rank: cfg.lora.as_ref().map(|s| s.rank),
        }
    }

    /// Everything but the activations.
    pub fn fixed(&self) -> u64 {
        self.weights + self.bf16_weight_copies + self.gradients + self.optimizer + self.loss_buffers
    }

    pub fn total(&self, checkpointing: bool) -> u64 {
        self.fixed() + if checkpointing { self.activations_checkpointed } else { self.activations }
    }

    /// A readable table (GB = 10⁹ bytes).
    pub fn table(&self) -> String {
        let g = |b: u64| format!("{:.2}", b as f64 / GB);
        let mut s = String::new();
        s += &format!(
            "parameters: {} total, {} trainable ({:.2}%){}; precision {}; batch {} × {} tokens\n\n",
            self.params_total,
            self.params_trainable,
            100.0 * self.params_trainable as f64 / self.params_total.max(1) as f64,
            self.lora_rank.map(|r| format!(", LoRA r = {r}")).unwrap_or_default(),
            self.precision,
            self.batch_size,
            self.seq_len
        );
        s += "| part | GB |\n|---|---:|\n";
        for (name, b) in [
            ("weights", self.weights),
            ("bf16 weight copies (saved for backward)", self.bf16_weight_copies),
            ("gradients", self.gradients),
            ("AdamW state", self.optimizer),
            ("loss buffers", self.loss_buffers),
            ("activations", self.activations),
            ("activations with gradient checkpointing", self.activations_checkpointed),
        ] {
            s += &format!("| {name} | {} |\n", g(b));
        }
        s += &format!("| **total** | **{}** |\n", g(self.total(false)));
        s += &format!("| **total with gradient checkpointing** | **{}** |\n", g(self.total(true)));
        s
    }
}

/// Parse `24GB`, `80GiB`, `500MB` (decimal and binary units) into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().map_err(|_| format!("`{text}` is not a size like 24GB or 80GiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (use B, KB, MB, GB, GiB, …)")),
    };
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("`{text}` is not a size"));
    }
    Ok((n * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;

    fn cfg(extra: &[&str]) -> TrainConfig {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut o = vec![
            format!("model.path={:?}", root.join("configs/models/llama-2-7b.json").display().to_string()),
            format!("data.train={:?}", root.join("data/alpaca_en_zh/train.json").display().to_string()),
            format!("data.eval={:?}", root.join("data/alpaca_en_zh/heldout.json").display().to_string()),
        ];
        o.extend(extra.iter().map(|s| s.to_string()));
        TrainConfig::load(None, &o).unwrap()
    }

    fn llama7b() -> ModelConfig {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/models/llama-2-7b.json");
        ModelConfig::from_hf_json_file(&p).unwrap()
    }

    #[test]
    fn parameter_counts_are_the_known_ones() {
        // Llama-2-7B: 6,738,415,616 parameters (the HF checkpoint's count).
        let p = MemoryPlan::estimate(&llama7b(), &cfg(&[]));
        assert_eq!(p.params_total, 6_738_415_616);
        assert_eq!(p.params_trainable, p.params_total);
        // Full f32 AdamW: 16 bytes per parameter before activations.
        assert_eq!(p.weights + p.gradients + p.optimizer, 16 * p.params_total);
        // LoRA r = 16 on every projection: 39,976,960 adapter parameters (PEFT's count).
        let p = MemoryPlan::estimate(&llama7b(), &cfg(&["lora.rank=16"]));
        assert_eq!(p.params_trainable, 39_976_960);
    }

    #[test]
    fn bf16_base_halves_the_frozen_weights_and_checkpointing_saves() {
        let f = MemoryPlan::estimate(&llama7b(), &cfg(&["lora.rank=16"]));
        let b = MemoryPlan::estimate(&llama7b(), &cfg(&["lora.rank=16", "train.precision=\"bf16-mixed\""]));
        assert!(b.weights < f.weights * 6 / 10, "{} vs {}", b.weights, f.weights);
        assert!(f.activations_checkpointed < f.activations);
        // More tokens, more activations; longer sequences grow the scores quadratically.
        let long = MemoryPlan::estimate(&llama7b(), &cfg(&["lora.rank=16", "data.max_len=1024"]));
        assert!(long.activations > 2 * f.activations);
    }

    #[test]
    fn the_papers_settings() {
        // Llama-2-7B full f32 fine-tuning needs > 100 GB: no single GPU.
        let full = MemoryPlan::estimate(&llama7b(), &cfg(&["train.batch_size=1", "data.max_len=512"]));
        assert!(full.total(true) > 100_000_000_000);
        // LoRA r = 16 on a bf16 base, DFT-logits at 1 × 512 with checkpointing: under 24 GB.
        let lora = MemoryPlan::estimate(
            &llama7b(),
            &cfg(&["train.batch_size=1", "data.max_len=512", "lora.rank=16", "train.precision=\"bf16-mixed\""]),
        );
        assert!(lora.total(true) < 24_000_000_000, "{}", lora.table());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("24GB").unwrap(), 24_000_000_000);
        assert_eq!(parse_bytes("80 GiB").unwrap(), 80 << 30);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
